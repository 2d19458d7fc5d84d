//! The one oci-client wrapper: plain HTTP for loopback registries, credentials
//! from the environment or the docker config (never from argv), retries.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

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

pub fn parse_reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>()
        .with_context(|| format!("`{text}` is not a valid image reference"))
}

/// A client for one registry, with its credentials.
pub struct Registry {
    pub client: Client,
    pub auth: RegistryAuth,
    registry: String,
}

impl Registry {
    /// A client for the registry of `reference`.
    pub fn for_reference(reference: &Reference) -> Result<Registry> {
        let registry = reference.resolve_registry().to_string();
        let protocol = if is_loopback(&registry) {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
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
        let auth = credentials(&registry)?;
        Ok(Registry {
            client,
            auth,
            registry,
        })
    }

    /// Hand the credentials to the client before the first request.
    pub async fn login(&self) {
        self.client
            .store_auth_if_needed(&self.registry, &self.auth)
            .await;
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

fn credentials_from(config: &std::path::Path, registry: &str) -> Result<RegistryAuth> {
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

/// Errors worth another try: throttling, server errors, dropped connections.
pub fn is_transient(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
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

/// Run `attempt` up to 5 times, backing off 0.2 s, 0.4 s, … on transient
/// errors; the last error is returned as it is.
pub async fn retry_transient<T, F, Fut>(
    what: &str,
    mut attempt: F,
) -> std::result::Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(error) if tries < 5 && is_transient(&error) => {
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
}
