//! HTTP for everything (registries, token realms, lookaside stores,
//! keyservers): rustls with the ring provider, one client per process and
//! redirect policy. (aws-lc-rs, rustls' default provider, costs ~30 s of C
//! compilation per cold build; each client made loads the system's CA bundle,
//! so there are as few as possible.)
//!
//! Where a request may go is one rule, applied to the first URL by the caller
//! ([`url_allowed`]) and to every redirect by the client: `https://` anywhere,
//! plain `http://` to loopback only (anywhere only where the user said so, for
//! one client), never from `https://` back to `http://`.

use std::sync::{Once, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};

/// Install the TLS provider; call before any HTTPS client is made.
pub fn init_tls() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Redirects followed before we give up.
const MAX_REDIRECTS: usize = 10;

/// Whether `host` (`name`, `127.0.0.1`, `[::1]`, with or without `:port`) is
/// this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
            .is_some_and(|ip| ip.is_loopback())
}

/// Whether a request may go to `url`: `https://` anywhere, `http://` to
/// loopback only unless `plain_http_anywhere`, no other scheme. The scheme is
/// compared as parsed (`HTTP://` is `http://`).
pub fn url_allowed(url: &reqwest::Url, plain_http_anywhere: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => plain_http_anywhere || url.host_str().is_some_and(is_loopback_host),
        _ => false,
    }
}

/// Why a redirect was not followed (the cause under reqwest's "error
/// following redirect").
#[derive(Debug)]
pub struct RedirectRefused(pub String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// Why the redirect to `to` (after `previous`, the first URL first) is not
/// followed, or `None` when it is: [`url_allowed`] for every hop, and no hop
/// from https back to http: a server may not send us where we would not
/// have gone ourselves.
fn redirect_refusal(
    to: &reqwest::Url,
    previous: &[reqwest::Url],
    plain_http_anywhere: bool,
) -> Option<String> {
    let from = previous.last().map(|u| u.to_string()).unwrap_or_default();
    let downgrade = to.scheme() == "http" && previous.iter().any(|u| u.scheme() == "https");
    if previous.len() > MAX_REDIRECTS {
        Some(format!(
            "more than {MAX_REDIRECTS} redirects, the last to {to}"
        ))
    } else if downgrade {
        Some(format!(
            "{from} redirected to {to}: refused, https:// is never followed to plain http://"
        ))
    } else if !url_allowed(to, plain_http_anywhere) {
        Some(format!(
            "{from} redirected to {to}: refused, plain http:// (and any other scheme than https://) is followed to loopback only"
        ))
    } else {
        None
    }
}

fn redirect_policy(plain_http_anywhere: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match redirect_refusal(attempt.url(), attempt.previous(), plain_http_anywhere) {
            Some(message) => attempt.error(RedirectRefused(message)),
            None => attempt.follow(),
        }
    })
}

fn build(plain_http_anywhere: bool) -> Result<reqwest::Client> {
    init_tls();
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(redirect_policy(plain_http_anywhere))
        .build()?)
}

/// The process's HTTP client: connections time out after 10 s (callers set a
/// whole-request timeout per request, see [`timeouts`]); redirects only where
/// [`url_allowed`] says.
pub fn client() -> Result<&'static reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = build(false)?;
    Ok(CLIENT.get_or_init(|| client))
}

/// [`client`], but following redirects to plain http:// anywhere (never from
/// https://): for a store the user named with `--insecure-lookaside`.
pub fn client_allowing_plain_http() -> Result<&'static reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = build(true)?;
    Ok(CLIENT.get_or_init(|| client))
}

/// Seconds (fractions allowed) a request without a streamed body may take,
/// and the headers of one with; default 60.
pub const REQUEST_TIMEOUT_ENV: &str = "XTASK_HTTP_REQUEST_TIMEOUT";
/// Seconds (fractions allowed) a streamed body may go without a byte moving
/// before it counts as stalled; default 60.
pub const IDLE_TIMEOUT_ENV: &str = "XTASK_HTTP_IDLE_TIMEOUT";

/// How long registry requests may wait, from the environment (tests set tiny
/// values to reach the limits without waiting for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A whole request without a streamed body; the headers of one with.
    pub request: Duration,
    /// No byte moved on a streamed body (read or sent) for this long: stalled.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            request: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// [`Timeouts`] as [`REQUEST_TIMEOUT_ENV`] and [`IDLE_TIMEOUT_ENV`] set them.
pub fn timeouts() -> Result<Timeouts> {
    timeouts_from(|name| std::env::var(name).ok())
}

/// [`timeouts`] with the variables read through `lookup`.
fn timeouts_from(lookup: impl Fn(&str) -> Option<String>) -> Result<Timeouts> {
    let mut timeouts = Timeouts::default();
    for (name, field) in [
        (REQUEST_TIMEOUT_ENV, &mut timeouts.request),
        (IDLE_TIMEOUT_ENV, &mut timeouts.idle),
    ] {
        let Some(value) = lookup(name) else {
            continue;
        };
        let seconds: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
            .with_context(|| {
                format!("{name}=`{value}` is not a number of seconds above 0 (unset it for 60)")
            })?;
        *field = Duration::from_secs_f64(seconds);
    }
    Ok(timeouts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "LOCALHOST",
            "127.1.2.3",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "registry.example.com",
            "127.example.com:443",
            "192.0.2.2:80",
            "[::2]",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    /// Guards the https→http rule of redirects: a hop back to plain http://
    /// is refused even to loopback (where plain http:// is otherwise
    /// allowed) and even with plain http:// allowed anywhere; an http:// hop
    /// after http:// only, and https:// after either, are followed.
    /// Ten redirects are followed, the eleventh is not.
    #[test]
    fn redirects_end_after_ten() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let chain: Vec<reqwest::Url> = (0..=MAX_REDIRECTS)
            .map(|i| url(&format!("https://store.example.com/{i}")))
            .collect();
        let next = url("https://store.example.com/next");
        assert_eq!(
            redirect_refusal(&next, &chain[..MAX_REDIRECTS], false),
            None
        );
        let refused = redirect_refusal(&next, &chain, false).unwrap();
        assert!(refused.starts_with("more than 10 redirects"), "{refused}");
    }

    /// The timeouts come from the environment, in seconds (fractions
    /// allowed); anything but a number above 0 and below 1e9 is refused,
    /// naming the variable; unset is 60.
    #[test]
    fn timeouts_are_read_strictly_from_the_environment() {
        let with = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            timeouts_from(move |name| {
                pairs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            })
        };
        assert_eq!(with(&[]).unwrap(), Timeouts::default());
        let set = with(&[(REQUEST_TIMEOUT_ENV, " 2.5 "), (IDLE_TIMEOUT_ENV, "0.2")]).unwrap();
        assert_eq!(set.request, Duration::from_millis(2500));
        assert_eq!(set.idle, Duration::from_millis(200));
        for bad in ["0", "-1", "1e9", "1e10", "inf", "NaN", "soon", ""] {
            let error = with(&[(IDLE_TIMEOUT_ENV, bad)]).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("{IDLE_TIMEOUT_ENV}=`{bad}`")),
                "{error}"
            );
        }
        assert!(with(&[(IDLE_TIMEOUT_ENV, "999999999")]).is_ok());
    }

    #[test]
    fn a_redirect_never_goes_from_https_back_to_http() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let https = [url("https://store.example.com/sigs/x")];
        for anywhere in [false, true] {
            let refused = redirect_refusal(&url("http://127.0.0.1:9/x"), &https, anywhere)
                .unwrap_or_else(|| panic!("followed (anywhere: {anywhere})"));
            assert!(
                refused.contains("refused, https:// is never followed to plain http://"),
                "{refused}"
            );
        }
        // Two hops: https, then an https that sends us to http.
        let two = [https[0].clone(), url("https://cdn.example.com/x")];
        assert!(redirect_refusal(&url("HTTP://localhost:9/x"), &two, true).is_some());
        let plain = [url("http://127.0.0.1:8/x")];
        assert_eq!(
            redirect_refusal(&url("http://127.0.0.1:9/x"), &plain, false),
            None
        );
        assert_eq!(
            redirect_refusal(&url("https://cdn.example.com/x"), &https, false),
            None
        );
        assert_eq!(
            redirect_refusal(&url("https://cdn.example.com/x"), &plain, false),
            None
        );
    }

    #[test]
    fn plain_http_is_for_loopback_whatever_the_spelling() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(url_allowed(&url("https://192.0.2.2/x"), false));
        assert!(url_allowed(&url("http://127.0.0.1:9/x"), false));
        assert!(url_allowed(&url("HTTP://[::1]:9/x"), false));
        assert!(!url_allowed(&url("HTTP://192.0.2.2:9/x"), false));
        assert!(!url_allowed(&url("http://192.0.2.2/x"), false));
        assert!(url_allowed(&url("http://192.0.2.2/x"), true));
        assert!(!url_allowed(&url("file:///etc/passwd"), true));
        assert!(!url_allowed(&url("ftp://127.0.0.1/x"), true));
    }
}
