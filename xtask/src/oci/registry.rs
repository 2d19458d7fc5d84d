//! The one registry client (oci-client underneath): plain HTTP for loopback
//! registries only, credentials from the environment or the docker config
//! (never from argv), transient failures retried, one client per registry for
//! a whole run.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::manifest::{check_digest, check_media_type, MANIFEST_TYPES};

pub const USERNAME_ENV: &str = "XTASK_REGISTRY_USERNAME";
pub const PASSWORD_ENV: &str = "XTASK_REGISTRY_PASSWORD";

/// Registries reached over plain HTTP: loopback only.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(host, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                host
            } else {
                registry
            }
        })
        .unwrap_or(registry);
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A reference as oci-client takes it, parsed with our own grammar (oci-spec's
/// parser compiles a large regex on first use) and normalised as Docker does:
/// no registry means Docker Hub, whose one-component names live in `library/`.
pub fn parse_reference(text: &str) -> Result<Reference> {
    let parsed = super::reference::ImageRef::parse(text)?;
    let registry = match parsed.registry.as_deref() {
        None | Some("index.docker.io") => "docker.io".to_string(),
        Some(other) => other.to_string(),
    };
    let repository = if registry == "docker.io" && !parsed.repository.contains('/') {
        format!("library/{}", parsed.repository)
    } else {
        parsed.repository
    };
    Ok(match (parsed.tag, parsed.digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (tag, None) => {
            Reference::with_tag(registry, repository, tag.unwrap_or_else(|| "latest".into()))
        }
    })
}

/// The same repository, addressed by `digest`.
pub fn by_digest(reference: &Reference, digest: &str) -> Result<Reference> {
    super::manifest::check_digest(digest)?;
    Ok(reference.clone_with_digest(digest.to_string()))
}

/// A client for one registry, with its credentials.
pub struct Registry {
    pub client: Client,
    pub auth: RegistryAuth,
    pub host: String,
    scheme: &'static str,
    /// Whether `/v2/` answered with a challenge: credentials (or a token) are
    /// needed, and oci-client handles them. Without one, oci-client would ask
    /// `/v2/` again before every request of ours that names credentials, so
    /// manifests are read with plain requests instead.
    challenged: bool,
}

/// Manifests larger than this are refused (containers/image's own limit).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

impl Registry {
    /// A client for `host` (`registry.example.com[:port]`), logged in.
    pub async fn connect(host: &str) -> Result<Registry> {
        crate::http::init_tls();
        let loopback = is_loopback(host);
        let protocol = if loopback {
            ClientProtocol::HttpsExcept(vec![host.to_string()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            // One streamed PUT per blob: no 4 MiB PATCH round trips, no buffering.
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        });
        let auth = credentials(host)?;
        let scheme = if loopback { "http" } else { "https" };
        let challenged = challenges(scheme, host).await?;
        if challenged {
            client.store_auth_if_needed(host, &auth).await;
        }
        Ok(Registry {
            client,
            auth,
            host: host.to_string(),
            scheme,
            challenged,
        })
    }

    /// The digest a reference resolves to, or `None` when the registry has no such manifest.
    pub async fn manifest_digest(&self, reference: &Reference) -> Result<Option<String>> {
        if !self.challenged {
            return self.plain_manifest_digest(reference).await;
        }
        let what = format!("HEAD {}", reference.whole());
        let result = retry_transient(&what, || {
            self.client.fetch_manifest_digest(reference, &self.auth)
        })
        .await;
        match result {
            Ok(digest) => Ok(Some(digest)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(anyhow::Error::new(error).context(what)),
        }
    }

    /// The manifest's bytes as served (callers check them against a digest).
    pub async fn pull_manifest(&self, reference: &Reference) -> Result<bytes::Bytes> {
        if !self.challenged {
            let response = self.plain_manifest(reqwest::Method::GET, reference).await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                bail!("GET {}: no such manifest", reference.whole());
            }
            return read_bounded(response, MAX_MANIFEST_BYTES).await;
        }
        let (bytes, _) = with_retries(&format!("GET manifest {}", reference.whole()), || {
            self.client
                .pull_manifest_raw(reference, &self.auth, MANIFEST_TYPES)
        })
        .await?;
        Ok(bytes)
    }

    fn manifest_url(&self, reference: &Reference) -> String {
        let pin = reference.digest().or(reference.tag()).unwrap_or("latest");
        format!(
            "{}://{}/v2/{}/manifests/{pin}",
            self.scheme,
            self.host,
            reference.repository()
        )
    }

    /// A manifest request to a registry that needs no credentials.
    async fn plain_manifest(
        &self,
        method: reqwest::Method,
        reference: &Reference,
    ) -> Result<reqwest::Response> {
        let url = self.manifest_url(reference);
        let response = send_with_retries(&format!("{method} {url}"), || {
            crate::http::client().map(|http| {
                http.request(method.clone(), &url)
                    .header(reqwest::header::ACCEPT, MANIFEST_TYPES.join(", "))
                    .timeout(Duration::from_secs(60))
            })
        })
        .await?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(response)
        } else {
            bail!("{method} {url}: HTTP {status}")
        }
    }

    async fn plain_manifest_digest(&self, reference: &Reference) -> Result<Option<String>> {
        let response = self
            .plain_manifest(reqwest::Method::HEAD, reference)
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        match header {
            Some(digest) => {
                check_digest(&digest).with_context(|| {
                    format!("HEAD {}: Docker-Content-Digest", reference.whole())
                })?;
                Ok(Some(digest))
            }
            // No digest header: the digest of what a GET serves.
            None => {
                let bytes = self.pull_manifest(reference).await?;
                Ok(Some(format!("sha256:{}", crate::hash::hex_sha256(&bytes))))
            }
        }
    }

    /// Put manifest bytes unchanged under `reference` (a tag or their digest).
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        bytes: &bytes::Bytes,
        media_type: &str,
    ) -> Result<()> {
        check_media_type(media_type)?;
        let header: reqwest::header::HeaderValue = media_type
            .parse()
            .with_context(|| format!("media type `{}`", media_type.escape_debug()))?;
        with_retries(&format!("PUT manifest {}", reference.whole()), || {
            self.client
                .push_manifest_raw(reference, bytes.clone(), header.clone())
        })
        .await?;
        Ok(())
    }

    pub async fn blob_exists(&self, reference: &Reference, digest: &str) -> Result<bool> {
        with_retries(&format!("HEAD blob {digest}"), || {
            self.client.blob_exists(reference, digest)
        })
        .await
    }
}

/// Whether `GET /v2/` answers 401 (the registry wants credentials or a token).
async fn challenges(scheme: &str, host: &str) -> Result<bool> {
    let http = crate::http::client()?;
    let url = format!("{scheme}://{host}/v2/");
    let mut tries = 0;
    let response = loop {
        tries += 1;
        match http.get(&url).timeout(Duration::from_secs(30)).send().await {
            Ok(response)
                if tries < ATTEMPTS
                    && (response.status().is_server_error()
                        || response.status().as_u16() == 429) => {}
            Ok(response) => break response,
            Err(error) if tries < ATTEMPTS && (error.is_connect() || error.is_timeout()) => {}
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("GET {url}: the registry does not answer"))
            }
        }
        tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(tries - 1)).await;
    };
    match response.status().as_u16() {
        200 => Ok(false),
        401 => Ok(true),
        status => bail!("GET {url} answered HTTP {status}: not a registry (distribution API v2)"),
    }
}

/// Send a request (built anew for each try), retrying throttling, server
/// errors and dropped connections as [`retry_transient`] does.
async fn send_with_retries(
    what: &str,
    request: impl Fn() -> Result<reqwest::RequestBuilder>,
) -> Result<reqwest::Response> {
    let mut delay = FIRST_BACKOFF;
    let mut tries = 0;
    loop {
        tries += 1;
        let outcome = request()?.send().await;
        let retry = match &outcome {
            Ok(response) => {
                response.status().is_server_error() || response.status().as_u16() == 429
            }
            Err(error) => error.is_connect() || error.is_timeout() || error.is_request(),
        };
        if !retry || tries >= ATTEMPTS {
            return outcome.with_context(|| format!("{what}: no answer"));
        }
        let why = match &outcome {
            Ok(response) => format!("HTTP {}", response.status()),
            Err(error) => error.to_string(),
        };
        eprintln!("  {what}: {why}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

/// A response body, refused once it grows past `limit` bytes.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<bytes::Bytes> {
    let url = response.url().to_string();
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        bail!("{url}: the answer is larger than {limit} bytes");
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        if body.len() + chunk.len() > limit {
            bail!("{url}: the answer is larger than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// One client per registry host for a whole run: clients keep their tokens and
/// connections, and making one (TLS roots, the `/v2/` question) is not free.
#[derive(Default)]
pub struct Registries {
    // Held across the connect, so that a host is connected to once.
    clients: tokio::sync::Mutex<BTreeMap<String, Arc<Registry>>>,
}

impl Registries {
    pub async fn get(&self, reference: &Reference) -> Result<Arc<Registry>> {
        let host = reference.resolve_registry().to_string();
        let mut clients = self.clients.lock().await;
        if let Some(registry) = clients.get(&host) {
            return Ok(registry.clone());
        }
        let registry = Arc::new(Registry::connect(&host).await?);
        clients.insert(host, registry.clone());
        Ok(registry)
    }
}

/// Run registry work on a current-thread runtime: async stays inside here.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

/// Credentials for `registry`: `XTASK_REGISTRY_USERNAME`/`_PASSWORD`, else the
/// `auths` entry of `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`),
/// else anonymous.
pub fn credentials(registry: &str) -> Result<RegistryAuth> {
    if let (Ok(user), Ok(password)) = (std::env::var(USERNAME_ENV), std::env::var(PASSWORD_ENV)) {
        return Ok(RegistryAuth::Basic(user, password));
    }
    credentials_from(&docker_config_path(), registry)
}

fn credentials_from(config: &Path, registry: &str) -> Result<RegistryAuth> {
    let Ok(text) = std::fs::read_to_string(config) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", config.display()))?;
    let auths = json.get("auths").and_then(|a| a.as_object());
    let entry = auths.and_then(|auths| {
        auths.iter().find(|(key, _)| {
            let key = key
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            key.split('/').next() == Some(registry)
        })
    });
    let Some((_, entry)) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .with_context(|| format!("{}: auths.{registry}.auth is not base64", config.display()))?;
    let decoded = String::from_utf8(decoded)?;
    let Some((user, password)) = decoded.split_once(':') else {
        bail!(
            "{}: auths.{registry}.auth is not `user:password`",
            config.display()
        );
    };
    Ok(RegistryAuth::Basic(user.to_string(), password.to_string()))
}

fn docker_config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".docker/config.json")
        }
    }
}

pub fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

/// Errors worth another try: throttling, server errors, dropped connections.
pub fn is_transient(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        // A request whose body stream failed: that failure decides.
        OciDistributionError::RequestError(error) if body_error(error).is_some() => {
            body_error(error).is_some_and(is_transient)
        }
        OciDistributionError::RequestError(error) => {
            error.is_connect()
                || error.is_timeout()
                || error.is_request()
                || error.is_body()
                || error
                    .status()
                    .is_some_and(|s| s.as_u16() == 429 || s.is_server_error())
        }
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// The error our own body stream raised inside a failed request, if any.
pub fn body_error(error: &reqwest::Error) -> Option<&OciDistributionError> {
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        if let Some(ours) = current.downcast_ref::<OciDistributionError>() {
            return Some(ours);
        }
        cause = current.source();
    }
    None
}

/// How often a transient failure is tried again, and the first pause.
pub const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Run `attempt` up to [`ATTEMPTS`] times, backing off 0.2 s, 0.4 s, … on
/// transient errors; the last error is returned as it is.
pub async fn retry_transient<T, F, Fut>(
    what: &str,
    mut attempt: F,
) -> std::result::Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
{
    let mut delay = FIRST_BACKOFF;
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(error) if tries < ATTEMPTS && is_transient(&error) => {
                eprintln!("  {what}: {error}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// `retry_transient`, with `what` as the error's context.
pub async fn with_retries<T, F, Fut>(what: &str, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
{
    retry_transient(what, attempt)
        .await
        .map_err(|error| anyhow::Error::new(error).context(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("127.example.com:443"));
    }

    /// Our parse agrees with oci-spec's own on what matters to a request.
    #[test]
    fn references_are_normalised_as_docker_does() {
        for text in [
            "busybox",
            "stagex/core-musl:1.2.5",
            "docker.io/stagex/core-musl@sha256:816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096",
            "127.0.0.1:5000/a/b:c",
            "localhost:5000/x@sha256:816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096",
            "registry.example.com/p/q:1@sha256:816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096",
        ] {
            let ours = parse_reference(text).unwrap();
            let theirs: Reference = text.parse().unwrap();
            assert_eq!(ours.whole(), theirs.whole(), "{text}");
            assert_eq!(ours.resolve_registry(), theirs.resolve_registry(), "{text}");
            assert_eq!(ours.repository(), theirs.repository(), "{text}");
        }
        assert!(parse_reference("Upper/case").is_err());
    }

    #[test]
    fn credentials_come_from_the_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"https://registry.example.com":{"auth":"dXNlcjpwYXNz"}}}"#,
        )
        .unwrap();
        let config = dir.path().join("config.json");
        let auth = credentials_from(&config, "registry.example.com").unwrap();
        let other = credentials_from(&config, "other.example.com").unwrap();
        assert!(matches!(auth, RegistryAuth::Basic(ref u, ref p) if u == "user" && p == "pass"));
        assert!(matches!(other, RegistryAuth::Anonymous));
    }

    /// 503, 429, then success: two retries, the value of the third try.
    #[test]
    fn transient_errors_are_retried_then_the_answer_kept() {
        let tries = std::cell::Cell::new(0);
        let answer = block_on(retry_transient("GET x", || {
            tries.set(tries.get() + 1);
            let result = match tries.get() {
                1 => Err(OciDistributionError::ServerError {
                    code: 503,
                    url: "u".into(),
                    message: "busy".into(),
                }),
                2 => Err(OciDistributionError::ServerError {
                    code: 429,
                    url: "u".into(),
                    message: "slow down".into(),
                }),
                _ => Ok(42),
            };
            async move { result }
        }))
        .unwrap();
        assert_eq!((answer.unwrap(), tries.get()), (42, 3));

        tries.set(0);
        let refused = block_on(retry_transient("GET y", || {
            tries.set(tries.get() + 1);
            async {
                Err::<(), _>(OciDistributionError::ServerError {
                    code: 403,
                    url: "u".into(),
                    message: "no".into(),
                })
            }
        }))
        .unwrap();
        assert!(refused.is_err());
        assert_eq!(tries.get(), 1, "a 403 is not retried");
    }
}
