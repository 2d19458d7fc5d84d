//! HTTP for everything that is not oci-client's own traffic (registry pings,
//! lookaside stores): one client per process, rustls with the ring provider.
//! (aws-lc-rs, rustls' default provider, costs ~30 s of C compilation per cold
//! build; each client made loads the system's CA bundle, so there is one.)

use std::sync::{Once, OnceLock};
use std::time::Duration;

use anyhow::Result;

/// Install the TLS provider; call before any HTTPS client is made.
pub fn init_tls() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The process's HTTP client: connections time out after 10 s; callers set a
/// whole-request timeout per request.
pub fn client() -> Result<&'static reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    init_tls();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    Ok(CLIENT.get_or_init(|| client))
}
