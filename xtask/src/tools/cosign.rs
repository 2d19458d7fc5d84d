//! cosign: signatures and SBOM attestations of pushed images, by digest, with
//! the project's key pair. Plans are data (snapshot-tested per cosign major
//! version); secrets reach cosign only through its environment:
//!
//! - the key's password as `COSIGN_PASSWORD`;
//! - a private key given as PEM in `COSIGN_KEY` as `--key env://COSIGN_KEY`
//!   (cosign reads it from its environment), a key file by path;
//! - registry credentials in a docker config of its own ([`ScopedDockerConfig`]):
//!   only those of the registry being signed in, so cosign can send nothing
//!   to any other host.
//!
//! Without a transparency log (`--no-tlog`, for internal registries): cosign
//! up to 2.5 says `--tlog-upload=false` when signing and
//! `--insecure-ignore-tlog=true` when verifying. cosign 3 takes its services
//! from a signing config (fetched through TUF by default) and refuses
//! `--tlog-upload=false` beside it, so it is given
//! `--use-signing-config=false --tlog-upload=false`, which builds a config
//! without a log (cosign 2.6 accepts the same); 3.0.0 to 3.0.2 ignored the
//! flag and uploaded anyway, and are refused.
//!
//! Where signatures are stored is pinned for every version: Kyverno's
//! `type: Cosign` verifier reads only the legacy tags `sha256-<hex>.sig` and
//! `.att` beside the image. cosign up to 2.5 writes nothing else; 2.6 and 3
//! have `--new-bundle-format` (default true from 3.0: Sigstore bundles as OCI
//! referrers, or a `sha256-<hex>` tag where the registry has no referrers
//! API), so they are given `--new-bundle-format=false`, and, since a signing
//! config goes with the new format, `--use-signing-config=false` (their
//! legacy log flags then apply). `publish` checks the tags after signing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;

use super::process::{Cmd, Env};
use crate::oci::registry::ChildAuth;

/// The environment variable holding the key's password.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";
/// The environment variable that may hold the private key itself (PEM).
pub const KEY_ENV: &str = "COSIGN_KEY";

/// How an installed cosign takes its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// cosign up to 2.5: `--tlog-upload=false`, signatures under `sha256-<hex>.sig` tags.
    V2,
    /// cosign 2.6 and 3.x: signing configs and the bundle format exist (both
    /// on by default from 3.0): `--new-bundle-format=false
    /// --use-signing-config=false`, and `--tlog-upload=false` without a log.
    SigningConfig,
}

/// `(major, minor, patch)`.
pub type Version = (u64, u64, u64);

/// The installed cosign: how it takes flags, and its version when it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    pub generation: Generation,
    pub version: Option<Version>,
}

/// A cosign version from `cosign version` (`GitVersion:    v2.5.0`), when
/// it has one (distribution builds may say `devel`).
pub fn parse_version(text: &str) -> Option<Version> {
    let version = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("GitVersion:"))?
        .trim()
        .strip_prefix('v')?;
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

impl Generation {
    /// From the version when it has one, else from whether cosign accepts
    /// `--use-signing-config` (cobra parses flags before `--help`, so
    /// `cosign sign --use-signing-config=false --help` fails where the flag
    /// does not exist).
    pub fn from_probes(version: Option<Version>, knows_signing_config: bool) -> Generation {
        match version {
            Some((major, minor, _)) if major > 2 || (major == 2 && minor >= 6) => {
                Generation::SigningConfig
            }
            Some(_) => Generation::V2,
            None if knows_signing_config => Generation::SigningConfig,
            None => Generation::V2,
        }
    }

    pub fn detect(env: &Env) -> Result<Installed> {
        let mut version = Cmd::new("cosign");
        version.arg("version").envs(env);
        let version = version.output()?;
        let version = parse_version(&String::from_utf8_lossy(&version.stdout));
        let mut probe = Cmd::new("cosign");
        probe
            .args(["sign", "--use-signing-config=false", "--help"])
            .envs(env);
        let knows = probe.try_output()?.status.success();
        Ok(Installed {
            generation: Generation::from_probes(version, knows),
            version,
        })
    }
}

/// cosign 3.0.0 to 3.0.2 ignore `--tlog-upload=false` and upload to the
/// public log anyway (sigstore/cosign#4503): refused for `--no-tlog`.
pub fn ignores_no_tlog(version: Option<Version>) -> bool {
    matches!(version, Some((3, 0, patch)) if patch <= 2)
}

/// Where the private key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateKey {
    File(PathBuf),
    /// PEM in `COSIGN_KEY`, which the caller passes as a secret.
    Environment,
}

impl PrivateKey {
    fn argument(&self) -> String {
        match self {
            PrivateKey::File(path) => path.display().to_string(),
            PrivateKey::Environment => format!("env://{KEY_ENV}"),
        }
    }
}

/// What an attestation says its predicate is: an SBOM, or the SLSA provenance.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PredicateKind {
    Spdxjson,
    Cyclonedx,
    /// SLSA provenance v1 (`cargo xtask provenance`).
    Slsaprovenance1,
}

impl PredicateKind {
    pub fn name(self) -> &'static str {
        match self {
            PredicateKind::Spdxjson => "spdxjson",
            PredicateKind::Cyclonedx => "cyclonedx",
            PredicateKind::Slsaprovenance1 => "slsaprovenance1",
        }
    }

    /// The in-toto `predicateType` cosign writes for it.
    pub fn predicate_type(self) -> &'static str {
        match self {
            PredicateKind::Spdxjson => "https://spdx.dev/Document",
            PredicateKind::Cyclonedx => "https://cyclonedx.org/bom",
            PredicateKind::Slsaprovenance1 => "https://slsa.dev/provenance/v1",
        }
    }
}

/// How signing runs: which cosign, which key, with or without the log.
#[derive(Debug, Clone)]
pub struct Signing {
    pub generation: Generation,
    pub key: PrivateKey,
    pub tlog: bool,
}

impl Signing {
    /// Where the signature goes (the legacy tags), and whether to the log.
    fn upload_flags(&self) -> Vec<&'static str> {
        match (self.generation, self.tlog) {
            (Generation::V2, true) => vec![],
            (Generation::V2, false) => vec!["--tlog-upload=false"],
            (Generation::SigningConfig, true) => {
                vec!["--new-bundle-format=false", "--use-signing-config=false"]
            }
            (Generation::SigningConfig, false) => vec![
                "--new-bundle-format=false",
                "--use-signing-config=false",
                "--tlog-upload=false",
            ],
        }
    }

    /// `cosign sign` of one image by digest.
    pub fn sign(&self, reference: &str) -> Cmd {
        let mut command = Cmd::new("cosign");
        command
            .arg("sign")
            .arg("--key")
            .arg(self.key.argument())
            .args(self.upload_flags())
            .arg("--yes")
            .arg(reference);
        command
    }

    /// `cosign attest` of an SBOM to one image by digest.
    pub fn attest(&self, reference: &str, predicate: &Path, kind: PredicateKind) -> Cmd {
        let mut command = Cmd::new("cosign");
        command
            .arg("attest")
            .arg("--key")
            .arg(self.key.argument())
            .arg("--type")
            .arg(kind.name())
            .arg("--predicate")
            .arg(predicate)
            // One attestation per predicate type and digest.
            .arg("--replace")
            .args(self.upload_flags())
            .arg("--yes")
            .arg(reference);
        command
    }

    /// `cosign public-key`: the public half of the private key, to compare
    /// with the committed one before anything is pushed.
    pub fn public_key(&self) -> Cmd {
        let mut command = Cmd::new("cosign");
        command
            .arg("public-key")
            .arg("--key")
            .arg(self.key.argument());
        command
    }
}

/// How verifying runs.
#[derive(Debug, Clone)]
pub struct Verifying {
    pub generation: Generation,
    pub public_key: PathBuf,
    pub tlog: bool,
}

impl Verifying {
    /// Where to look (the legacy tags, like Kyverno), and whether the log counts.
    fn log_flags(&self) -> Vec<&'static str> {
        let mut flags = match self.generation {
            Generation::V2 => vec![],
            Generation::SigningConfig => vec!["--new-bundle-format=false"],
        };
        if !self.tlog {
            flags.push("--insecure-ignore-tlog=true");
        }
        flags
    }

    /// `cosign verify`: the signature's claims as JSON on stdout.
    pub fn verify(&self, reference: &str) -> Cmd {
        let mut command = Cmd::new("cosign");
        command
            .arg("verify")
            .arg("--key")
            .arg(&self.public_key)
            .args(self.log_flags())
            .arg("--output")
            .arg("json")
            .arg(reference);
        command
    }

    /// `cosign verify-attestation`: one DSSE envelope per line on stdout.
    pub fn verify_attestation(&self, reference: &str, kind: PredicateKind) -> Cmd {
        let mut command = Cmd::new("cosign");
        command
            .arg("verify-attestation")
            .arg("--key")
            .arg(&self.public_key)
            .arg("--type")
            .arg(kind.name())
            .args(self.log_flags())
            .arg(reference);
        command
    }
}

/// `cosign triangulate`: where cosign keeps the signatures (or attestations)
/// of an image.
pub fn triangulate(reference: &str, attestations: bool) -> Cmd {
    let mut command = Cmd::new("cosign");
    command
        .arg("triangulate")
        .arg("--type")
        .arg(if attestations {
            "attestation"
        } else {
            "signature"
        })
        .arg(reference);
    command
}

/// `cosign generate-key-pair`, writing `<prefix>.key` and `<prefix>.pub`
/// (password from `COSIGN_PASSWORD`).
pub fn generate_key_pair(prefix: &Path) -> Cmd {
    let mut command = Cmd::new("cosign");
    command
        .arg("generate-key-pair")
        .arg("--output-key-prefix")
        .arg(prefix);
    command
}

/// A docker config folder for one cosign run, holding what may reach one
/// registry and nothing else: a bearer token our client minted (never a
/// password cosign could hand to a token realm of the registry's choosing),
/// or the registry's own basic credentials when it asks for basic auth. It
/// goes away with this value.
pub struct ScopedDockerConfig {
    dir: tempfile::TempDir,
}

impl ScopedDockerConfig {
    pub fn new(host: &str, auth: &ChildAuth) -> Result<ScopedDockerConfig> {
        let dir = tempfile::tempdir().context("a scratch folder for cosign's docker config")?;
        let key = if host == crate::oci::reference::DOCKER_HUB_API {
            "https://index.docker.io/v1/".to_string()
        } else {
            host.to_string()
        };
        let mut auths = serde_json::Map::new();
        match auth {
            ChildAuth::None => {}
            ChildAuth::Basic(credentials) => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", credentials.username, credentials.password));
                auths.insert(key, serde_json::json!({ "auth": token }));
            }
            ChildAuth::Token(token) => {
                auths.insert(key, serde_json::json!({ "registrytoken": token }));
            }
        }
        let config = serde_json::json!({ "auths": auths });
        write_private(
            &dir.path().join("config.json"),
            &serde_json::to_vec(&config)?,
        )?;
        Ok(ScopedDockerConfig { dir })
    }

    /// Point `command` at this config.
    pub fn apply(&self, command: &mut Cmd) {
        command.env("DOCKER_CONFIG", self.dir.path().display().to_string());
    }
}

/// A file only its owner can read, created so from the start.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str =
        "registry.internal/stagex/base@sha256:1fbc8fa4d0d0effd14c49d80e7073f315ab7f318edf835ab6d105b9178803216";

    #[test]
    fn the_generation_comes_from_the_version_or_the_probe() {
        assert_eq!(
            parse_version("GitVersion:    v2.5.0\nGitCommit: x\n"),
            Some((2, 5, 0))
        );
        assert_eq!(
            parse_version("GitVersion:    v3.0.4-rc.1\n"),
            Some((3, 0, 4))
        );
        assert_eq!(parse_version("GitVersion:    devel\n"), None);
        assert_eq!(parse_version(" ____\ncosign\n"), None);
        assert_eq!(
            Generation::from_probes(Some((2, 5, 0)), false),
            Generation::V2
        );
        assert_eq!(
            Generation::from_probes(Some((2, 6, 1)), true),
            Generation::SigningConfig
        );
        assert_eq!(
            Generation::from_probes(Some((3, 0, 4)), true),
            Generation::SigningConfig
        );
        // Debian's build says `devel`: the probe tells.
        assert_eq!(Generation::from_probes(None, false), Generation::V2);
        assert_eq!(
            Generation::from_probes(None, true),
            Generation::SigningConfig
        );
        assert!(ignores_no_tlog(Some((3, 0, 2))));
        assert!(!ignores_no_tlog(Some((3, 0, 3))));
        assert!(!ignores_no_tlog(Some((2, 5, 0))));
        assert!(!ignores_no_tlog(None));
    }

    /// The exact command lines, per generation, with and without the log.
    #[test]
    fn plans() {
        let mut lines = Vec::new();
        for generation in [Generation::V2, Generation::SigningConfig] {
            for tlog in [true, false] {
                for key in [
                    PrivateKey::File("/keys/cosign.key".into()),
                    PrivateKey::Environment,
                ] {
                    let signing = Signing {
                        generation,
                        key: key.clone(),
                        tlog,
                    };
                    lines.push(format!("# {generation:?}, tlog {tlog}, key {key:?}"));
                    lines.push(signing.sign(REF).display());
                    lines.push(
                        signing
                            .attest(
                                REF,
                                Path::new("out/base/sbom.spdx.json"),
                                PredicateKind::Spdxjson,
                            )
                            .display(),
                    );
                    lines.push(
                        signing
                            .attest(
                                REF,
                                Path::new("/tmp/x/provenance.predicate.json"),
                                PredicateKind::Slsaprovenance1,
                            )
                            .display(),
                    );
                }
                let verifying = Verifying {
                    generation,
                    public_key: "cosign.pub".into(),
                    tlog,
                };
                lines.push(verifying.verify(REF).display());
                lines.push(
                    verifying
                        .verify_attestation(REF, PredicateKind::Cyclonedx)
                        .display(),
                );
                lines.push(
                    verifying
                        .verify_attestation(REF, PredicateKind::Slsaprovenance1)
                        .display(),
                );
            }
        }
        lines.push(triangulate(REF, true).display());
        lines.push(generate_key_pair(Path::new("/home/me/.config/x/cosign")).display());
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn the_scoped_docker_config_holds_a_token_or_the_hosts_own_credentials() {
        let read = |config: &ScopedDockerConfig| {
            let path = config.dir.path().join("config.json");
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::read_to_string(&path).unwrap()
        };
        let token = ScopedDockerConfig::new("r.example", &ChildAuth::Token("t0k".into())).unwrap();
        assert_eq!(
            read(&token),
            r#"{"auths":{"r.example":{"registrytoken":"t0k"}}}"#
        );
        let none = ScopedDockerConfig::new("r.example", &ChildAuth::None).unwrap();
        assert_eq!(read(&none), r#"{"auths":{}}"#);
        let hub = ScopedDockerConfig::new(
            crate::oci::reference::DOCKER_HUB_API,
            &ChildAuth::Basic(crate::oci::auth::Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
        )
        .unwrap();
        assert_eq!(
            read(&hub),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#
        );
        let mut command = Cmd::new("cosign");
        token.apply(&mut command);
        assert!(command.plan().contains("DOCKER_CONFIG="));
    }
}
