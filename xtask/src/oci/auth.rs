//! Registry credentials, scoped: which secret may go to which host.
//!
//! - A registry gets credentials only when they were configured for its host:
//!   the `auths` of the docker config, matched by host as docker and skopeo
//!   match them, or one pair of environment variables per role: the
//!   `XTASK_REGISTRY_*` pair for the registry we push and mirror *to*, the
//!   `XTASK_SOURCE_REGISTRY_*` pair for the one we mirror *from*.
//! - A host the docker config gives a credential helper (`credHelpers`, or
//!   `credsStore` for every host) is asked of that helper, for that host
//!   only, through the process runner the tools layer registers
//!   ([`use_credential_helpers`]); its `auths` entry is the fallback.
//! - A token realm is named by the registry, which also chooses the service
//!   and scope the token is for: it gets the *registry's* credentials (never
//!   those configured for the realm's own host, which would mint a token for
//!   that host and hand it to the registry), and only when it is on the
//!   registry's own host or is that registry's realm in [`TOKEN_REALMS`];
//!   never over plain HTTP off loopback. Everywhere else tokens are asked for
//!   anonymously.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;

use super::reference::DOCKER_HUB_API;

/// Whose credentials a registry client carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The registry images are read from (mirror's upstream).
    Source,
    /// The registry images are written to (push, mirror's target).
    Target,
}

pub const TARGET_USERNAME_ENV: &str = "XTASK_REGISTRY_USERNAME";
pub const TARGET_PASSWORD_ENV: &str = "XTASK_REGISTRY_PASSWORD";
pub const SOURCE_USERNAME_ENV: &str = "XTASK_SOURCE_REGISTRY_USERNAME";
pub const SOURCE_PASSWORD_ENV: &str = "XTASK_SOURCE_REGISTRY_PASSWORD";

/// A user name and password; the password never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// Where credentials come from: the environment and a docker config file.
#[derive(Debug, Clone)]
pub struct CredentialSource {
    pub target: Option<Credentials>,
    pub source: Option<Credentials>,
    pub docker_config: PathBuf,
}

impl CredentialSource {
    /// This process's environment and `$DOCKER_CONFIG/config.json` (or
    /// `~/.docker/config.json`).
    pub fn from_environment() -> CredentialSource {
        CredentialSource::from_variables(&|name| std::env::var_os(name))
    }

    /// Only the docker config's entries, each for its own host: what a
    /// command that only reads (verify) may use, whatever the environment's
    /// pairs say.
    pub fn docker_config_only() -> CredentialSource {
        CredentialSource::from_environment().without_pairs()
    }

    /// [`CredentialSource::from_environment`] with the variables `var` reads
    /// (a test's own, not the process's).
    fn from_variables(var: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> CredentialSource {
        let text = |name: &str| var(name).and_then(|value| value.into_string().ok());
        let pair = |user: &str, password: &str| match (text(user), text(password)) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            _ => None,
        };
        let docker_config = match var("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => PathBuf::from(var("HOME").unwrap_or_default()).join(".docker/config.json"),
        };
        CredentialSource {
            target: pair(TARGET_USERNAME_ENV, TARGET_PASSWORD_ENV),
            source: pair(SOURCE_USERNAME_ENV, SOURCE_PASSWORD_ENV),
            docker_config,
        }
    }

    /// The same docker config, without the environment's pairs.
    fn without_pairs(self) -> CredentialSource {
        CredentialSource {
            target: None,
            source: None,
            ..self
        }
    }

    /// Credentials for `host` in `role`: the role's environment pair, else the
    /// docker config's entry for exactly this host, else none.
    pub fn for_host(&self, host: &str, role: Role) -> Result<Option<Credentials>> {
        let from_environment = match role {
            Role::Target => &self.target,
            Role::Source => &self.source,
        };
        if let Some(credentials) = from_environment {
            return Ok(Some(credentials.clone()));
        }
        from_docker_config(&self.docker_config, host)
    }
}

/// Asks `docker-credential-<helper> get` for a server's credentials. The
/// process runner lives in a layer above this one, which registers it once
/// at start-up.
pub type HelperRunner = fn(helper: &str, server: &str) -> Result<Option<Credentials>>;

static HELPER_RUNNER: std::sync::OnceLock<HelperRunner> = std::sync::OnceLock::new();

/// Register the credential-helper runner (once, at start-up).
pub fn use_credential_helpers(runner: HelperRunner) {
    let _ = HELPER_RUNNER.set(runner);
}

/// The helper the docker config names for `wanted` (a [`config_host`]):
/// its `credHelpers` entry for that host, else its `credsStore`.
fn helper_for<'j>(json: &'j serde_json::Value, wanted: &str) -> Option<&'j str> {
    json.get("credHelpers")
        .and_then(|helpers| helpers.as_object())
        .and_then(|helpers| {
            helpers
                .iter()
                .find(|(key, _)| config_host(key) == wanted)
                .and_then(|(_, name)| name.as_str())
        })
        .or_else(|| json.get("credsStore").and_then(|store| store.as_str()))
        .filter(|name| !name.is_empty())
}

/// Registries whose token realm is on another host, and that host: the only
/// realms off a registry's own host that receive its credentials. (Docker
/// Hub's registry sends clients to auth.docker.io; GitLab.com's to gitlab.com.)
pub const TOKEN_REALMS: &[(&str, &str)] = &[
    (DOCKER_HUB_API, "auth.docker.io"),
    ("registry.gitlab.com", "gitlab.com"),
];

/// What the token realm `realm` may receive when `registry` (whose
/// credentials are `registry_credentials`) sends us there: those credentials
/// when the realm is on the registry's own `host[:port]` or is its realm in
/// [`TOKEN_REALMS`], over https (or plain HTTP on loopback); otherwise
/// nothing, and the token is asked for anonymously.
pub fn for_realm(
    registry: &str,
    registry_credentials: Option<&Credentials>,
    realm: &reqwest::Url,
) -> Option<Credentials> {
    let realm_host = host_of(realm)?;
    if !crate::http::url_allowed(realm, false) {
        return None;
    }
    let its_realm = realm_host == registry
        || TOKEN_REALMS
            .iter()
            .any(|&(r, h)| r == registry && h == realm_host);
    its_realm.then(|| registry_credentials.cloned()).flatten()
}

/// `host[:port]` of a URL.
pub fn host_of(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The docker config key for `host`: Docker Hub's hosts all share the key
/// docker writes for it.
fn config_host(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_API.to_string(),
        other => other.to_string(),
    }
}

fn from_docker_config(config: &Path, host: &str) -> Result<Option<Credentials>> {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", config.display())),
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", config.display()))?;
    let wanted = config_host(host);
    if let Some(helper) = helper_for(&json, &wanted) {
        let runner = HELPER_RUNNER.get().with_context(|| {
            format!(
                "{} names the credential helper `{helper}` for {host}, and none can be run here",
                config.display()
            )
        })?;
        // Docker asks helpers for Docker Hub under the key docker writes.
        let server = if wanted == DOCKER_HUB_API {
            "https://index.docker.io/v1/"
        } else {
            host
        };
        if let Some(found) = runner(helper, server)
            .with_context(|| format!("{}: credential helper `{helper}`", config.display()))?
        {
            return Ok(Some(found));
        }
    }
    let Some(auths) = json.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let Some((key, entry)) = auths.iter().find(|(key, _)| config_host(key) == wanted) else {
        return Ok(None);
    };
    if let (Some(username), Some(password)) = (
        entry.get("username").and_then(|v| v.as_str()),
        entry.get("password").and_then(|v| v.as_str()),
    ) {
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some((username, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        bail!(
            "{}: auths.{key}.auth is not base64 of `user:password`",
            config.display()
        );
    };
    Ok(Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// What `/v2/` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Nothing: the registry answers anonymous requests.
    None,
    Basic,
    Bearer {
        realm: reqwest::Url,
        service: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` value: `Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"`.
pub fn parse_challenge(header: &str) -> Result<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut parameters = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .with_context(|| format!("unclosed quote in `{header}`"))?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            },
        };
        parameters.push((name.trim().to_ascii_lowercase(), value.to_string()));
        rest = after.trim_start_matches([',', ' ']);
    }
    let parameter = |name: &str| {
        parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Ok(Challenge::Basic),
        "bearer" => {
            let realm = parameter("realm").context("a Bearer challenge without a realm")?;
            let realm = reqwest::Url::parse(&realm)
                .with_context(|| format!("the token realm `{realm}` is not a URL"))?;
            if !matches!(realm.scheme(), "https" | "http") {
                bail!("the token realm `{realm}` is not HTTP(S)");
            }
            Ok(Challenge::Bearer {
                realm,
                service: parameter("service"),
            })
        }
        other => bail!("unsupported authentication scheme `{other}` in `{header}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, json: &str) -> CredentialSource {
        let path = dir.join("config.json");
        std::fs::write(&path, json).unwrap();
        CredentialSource {
            target: None,
            source: None,
            docker_config: path,
        }
    }

    fn user(name: &str) -> Option<Credentials> {
        Some(Credentials {
            username: name.into(),
            password: "pass".into(),
        })
    }

    /// Each role's pair only when both its variables are set; the docker
    /// config from `DOCKER_CONFIG`, else under `HOME`; a reading command
    /// drops both pairs.
    #[test]
    fn the_environment_gives_each_role_its_pair_and_the_docker_config() {
        let variables = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| std::ffi::OsString::from(value))
            }
        };
        let all = CredentialSource::from_variables(&variables(&[
            (TARGET_USERNAME_ENV, "pusher"),
            (TARGET_PASSWORD_ENV, "push-secret"),
            (SOURCE_USERNAME_ENV, "reader"),
            (SOURCE_PASSWORD_ENV, "read-secret"),
            ("DOCKER_CONFIG", "/etc/docker-config"),
            ("HOME", "/home/ci"),
        ]));
        assert_eq!(
            all.target,
            Some(Credentials {
                username: "pusher".into(),
                password: "push-secret".into()
            })
        );
        assert_eq!(
            all.source.as_ref().map(|c| c.username.as_str()),
            Some("reader")
        );
        assert_eq!(
            all.docker_config,
            Path::new("/etc/docker-config/config.json")
        );
        let read_only = all.without_pairs();
        assert_eq!((read_only.target, read_only.source), (None, None));
        assert_eq!(
            read_only.docker_config,
            Path::new("/etc/docker-config/config.json")
        );

        let half = CredentialSource::from_variables(&variables(&[
            (TARGET_USERNAME_ENV, "pusher"),
            (SOURCE_PASSWORD_ENV, "read-secret"),
            ("HOME", "/home/ci"),
        ]));
        assert_eq!((half.target, half.source), (None, None));
        assert_eq!(
            half.docker_config,
            Path::new("/home/ci/.docker/config.json")
        );
    }

    /// Only a missing docker config means "no credentials": one that cannot
    /// be read is an error naming it, not an anonymous pull.
    #[test]
    fn an_unreadable_docker_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("config.json");
        assert_eq!(
            from_docker_config(&missing, "registry.example").unwrap(),
            None
        );
        std::fs::create_dir(&missing).unwrap();
        let error = from_docker_config(&missing, "registry.example").unwrap_err();
        assert!(
            format!("{error:#}").contains(&missing.display().to_string()),
            "{error:#}"
        );
    }

    /// A credential's `Debug` names the user and never shows the password.
    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", user("deployer").unwrap());
        assert_eq!(shown, "Credentials(deployer, ***)");
    }

    /// credHelpers for one host, credsStore for the rest, auths behind both;
    /// the helper is asked only for the host being connected to.
    #[test]
    fn credential_helpers_answer_for_their_hosts() {
        fn runner(helper: &str, server: &str) -> Result<Option<Credentials>> {
            Ok(match (helper, server) {
                ("ecr-login", "123.dkr.ecr.example:443") => Some(Credentials {
                    username: "AWS".into(),
                    password: format!("from-{helper}"),
                }),
                ("desktop", "registry.example.com") => Some(Credentials {
                    username: "desk".into(),
                    password: format!("from-{helper}"),
                }),
                _ => None,
            })
        }
        use_credential_helpers(runner);
        let dir = tempfile::tempdir().unwrap();
        let source = config(
            dir.path(),
            r#"{"credHelpers":{"123.dkr.ecr.example:443":"ecr-login"},"credsStore":"desktop","auths":{"other.example":{"auth":"dXNlcjpwYXNz"}}}"#,
        );
        let get = |host: &str| source.for_host(host, Role::Source).unwrap();
        assert_eq!(
            get("123.dkr.ecr.example:443").unwrap().password,
            "from-ecr-login"
        );
        assert_eq!(
            get("registry.example.com").unwrap().password,
            "from-desktop"
        );
        // The store has nothing for it: the auths entry is used.
        assert_eq!(get("other.example").unwrap().username, "user");
        assert_eq!(get("nothing.example"), None);
    }

    #[test]
    fn docker_config_entries_match_by_host_only() {
        let dir = tempfile::tempdir().unwrap();
        // dXNlcjpwYXNz = user:pass
        let source = config(
            dir.path(),
            r#"{"auths":{"https://registry.example.com":{"auth":"dXNlcjpwYXNz"},"https://index.docker.io/v1/":{"username":"hub","password":"pass"}}}"#,
        );
        assert_eq!(
            source
                .for_host("registry.example.com", Role::Target)
                .unwrap(),
            user("user")
        );
        assert_eq!(
            source.for_host("other.example.com", Role::Target).unwrap(),
            None
        );
        assert_eq!(
            source
                .for_host("registry.example.com:5000", Role::Source)
                .unwrap(),
            None
        );
        assert_eq!(
            source.for_host(DOCKER_HUB_API, Role::Source).unwrap(),
            user("hub")
        );
        let missing = CredentialSource {
            docker_config: dir.path().join("none.json"),
            ..source.clone()
        };
        assert_eq!(
            missing
                .for_host("registry.example.com", Role::Target)
                .unwrap(),
            None
        );
    }

    #[test]
    fn environment_pairs_belong_to_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = config(dir.path(), "{}");
        source.target = user("internal");
        assert_eq!(
            source
                .for_host("anywhere.example.com", Role::Target)
                .unwrap(),
            user("internal")
        );
        assert_eq!(source.for_host("docker.io", Role::Source).unwrap(), None);
        source.source = user("upstream");
        assert_eq!(
            source.for_host("docker.io", Role::Source).unwrap(),
            user("upstream")
        );
    }

    /// A realm gets the registry's own credentials on the registry's host or
    /// as its listed realm, nothing elsewhere: not even credentials configured
    /// for the realm's host, which would mint that host's token for the
    /// registry that named the realm.
    #[test]
    fn realms_get_the_registrys_credentials_only_where_they_belong() {
        let ours = user("registry-user");
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let realm = |registry: &str, realm: &str| for_realm(registry, ours.as_ref(), &url(realm));
        assert_eq!(realm("r.example.com", "https://r.example.com/token"), ours);
        assert_eq!(
            realm("r.example.com", "https://evil.example.com/token"),
            None
        );
        assert_eq!(realm("evil.example.com", "https://ghcr.io/token"), None);
        assert_eq!(realm(DOCKER_HUB_API, "https://auth.docker.io/token"), ours);
        assert_eq!(
            realm("registry.gitlab.com", "https://gitlab.com/jwt/auth"),
            ours
        );
        assert_eq!(realm("r.example.com", "https://auth.docker.io/token"), None);
        assert_eq!(
            realm("r.example.com", "http://r.example.com/token"),
            None,
            "plain HTTP"
        );
        assert_eq!(
            realm("r.example.com", "HTTP://r.example.com/token"),
            None,
            "plain HTTP, however spelt"
        );
        assert_eq!(realm("127.0.0.1:5000", "http://127.0.0.1:5000/token"), ours);
        assert_eq!(
            realm("127.0.0.1:5000", "http://127.0.0.1:5001/token"),
            None,
            "another port is another host"
        );
        assert_eq!(
            for_realm("r.example.com", None, &url("https://r.example.com/t")),
            None
        );
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\"").unwrap(),
            Challenge::Basic
        );
        let bearer = parse_challenge(
            "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/x:pull\"",
        )
        .unwrap();
        assert_eq!(
            bearer,
            Challenge::Bearer {
                realm: reqwest::Url::parse("https://auth.docker.io/token").unwrap(),
                service: Some("registry.docker.io".into()),
            }
        );
        assert!(parse_challenge("Bearer service=\"x\"").is_err());
        assert!(parse_challenge("Bearer realm=\"file:///etc/passwd\"").is_err());
        assert!(parse_challenge("Negotiate abc").is_err());
    }
}
