//! `cargo xtask keys fetch`: the maintainer keys of the trust list
//! (`keys/fingerprints.tsv`), fetched from a VKS keyserver (and WKD), accepted
//! only when the primary fingerprint is the pinned one, reduced to the public
//! key with its own signatures, written as `keys/<FINGERPRINT>.asc`, with
//! what changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sequoia_openpgp as openpgp;
use serde::Serialize;

use super::args::JsonArg;
use crate::error::fail;
use crate::model::settings;
use crate::oci::registry::get_small_file;
use crate::pgp::keys::{self, Pin};
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;

/// Fetch the pinned maintainer keys (keys/fingerprints.tsv) and report what changed.
#[derive(Debug, Args)]
pub struct Keys {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Fetch every pinned key from a keyserver (and WKD), write keys/<FINGERPRINT>.asc.
    Fetch(Fetch),
}

#[derive(Debug, Args)]
struct Fetch {
    /// A keyserver speaking VKS (`/vks/v1/by-fingerprint/<FPR>`).
    #[arg(long, value_name = "URL", default_value = "https://keys.openpgp.org")]
    keyserver: String,
    /// Also ask each maintainer's WKD (e-mail from keys/MAINTAINERS.toml) when
    /// the keyserver has no usable key.
    #[arg(long)]
    wkd: bool,
    /// Where WKD is asked, `{domain}` standing for the address's domain.
    #[arg(long, value_name = "URL", default_value = "https://{domain}")]
    wkd_base: String,
    /// The keyring folder (default: keys/).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    json: JsonArg,
}

/// What happened to one pinned key.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Fetched {
    pub maintainer: String,
    pub fingerprint: String,
    /// `new`, `updated`, `unchanged`, `refused` or `unavailable`.
    pub outcome: &'static str,
    pub from: Option<String>,
    pub details: Vec<String>,
}

/// A key is at most this large (a keyserver that sends more is refused).
const MAX_KEY_BYTES: usize = 1 << 20;

impl Keys {
    pub fn run(self, root: &Path) -> Result<()> {
        let Action::Fetch(fetch) = self.action;
        let dir = fetch
            .dir
            .clone()
            .unwrap_or_else(|| root.join(settings::KEYS_DIR));
        let pins = keys::load_pins(&dir)?.with_context(|| {
            format!(
                "{}: no {}: pin each maintainer's full fingerprint there first",
                dir.display(),
                keys::TRUST_LIST
            )
        })?;
        // A stand-in domain shows where the WKD base sends us; each real URL
        // is checked again before it is asked, and every redirect too.
        let wkd_sample = fetch.wkd_base.replace("{domain}", "example.org");
        for (option, base) in [
            ("--keyserver", fetch.keyserver.as_str()),
            ("--wkd-base", wkd_sample.as_str()),
        ] {
            check_source(base).context(option)?;
        }
        let emails = maintainer_emails(&dir.join("MAINTAINERS.toml"));
        let results = crate::oci::registry::block_on(async {
            let mut results = Vec::new();
            for pin in &pins {
                results.push(fetch.one(&dir, pin, &emails).await);
            }
            results
        })?;
        for result in &results {
            crate::ui::say!(
                "{:<11} {} {:<20} {}{}",
                result.outcome,
                result.fingerprint,
                result.maintainer,
                result.details.join("; "),
                result
                    .from
                    .as_deref()
                    .map(|from| format!(" (from {from})"))
                    .unwrap_or_default()
            );
        }
        fetch.json.write("keys-fetch", &[], &results)?;
        let refused: Vec<&str> = results
            .iter()
            .filter(|r| r.outcome == "refused")
            .map(|r| r.maintainer.as_str())
            .collect();
        if !refused.is_empty() {
            return fail(format!(
                "keys fetch: refused keys for {}",
                refused.join(", ")
            ));
        }
        if results.iter().any(|r| r.outcome == "unavailable") {
            bail!("keys fetch: some keys could not be fetched (see above)");
        }
        Ok(())
    }
}

impl Fetch {
    async fn one(&self, dir: &Path, pin: &Pin, emails: &[(String, String)]) -> Fetched {
        let mut result = Fetched {
            maintainer: pin.maintainer.clone(),
            fingerprint: pin.fingerprint.clone(),
            outcome: "unavailable",
            from: None,
            details: Vec::new(),
        };
        let mut sources = vec![keys::vks_url(&self.keyserver, &pin.fingerprint)];
        if self.wkd {
            let email = emails
                .iter()
                .find(|(id, _)| pin.fingerprint.ends_with(id.as_str()))
                .map(|(_, email)| email);
            match email.map(|email| keys::wkd_url(&self.wkd_base, email)) {
                Some(Ok(url)) => sources.push(url),
                Some(Err(error)) => result.details.push(format!("WKD: {error:#}")),
                None => result
                    .details
                    .push("WKD: no e-mail for this key in MAINTAINERS.toml".into()),
            }
        }
        for url in sources {
            let bytes = match download(&url).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    result.details.push(format!("{url}: no key"));
                    continue;
                }
                Err(error) => {
                    result.details.push(format!("{error:#}"));
                    continue;
                }
            };
            result.details.clear();
            result.from = Some(url.clone());
            match accept(dir, pin, &bytes) {
                Ok((outcome, changes)) => {
                    result.outcome = outcome;
                    result.details = changes;
                }
                Err(error) => {
                    result.outcome = "refused";
                    result.details = vec![format!("{error:#}")];
                }
            }
            return result;
        }
        result
    }
}

/// Keys come over https:// (plain http:// from loopback only), as parsed:
/// `HTTP://` is plain HTTP too.
fn check_source(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    if !crate::http::url_allowed(&parsed, false) {
        bail!("`{url}`: keys are fetched over https:// (plain http:// on loopback only)");
    }
    Ok(())
}

/// A key file's bytes; `None` when the server has none (404).
async fn download(url: &str) -> Result<Option<Vec<u8>>> {
    check_source(url)?;
    get_small_file(
        crate::http::client()?,
        url,
        Duration::from_secs(30),
        MAX_KEY_BYTES,
    )
    .await
}

/// Keep the pinned certificate from `bytes`, reduced, and say what changed.
fn accept(dir: &Path, pin: &Pin, bytes: &[u8]) -> Result<(&'static str, Vec<String>)> {
    let Some(cert) = keys::certificate_for(bytes, &pin.fingerprint)? else {
        let offered: Vec<String> = openpgp::cert::CertParser::from_bytes(bytes)?
            .filter_map(|c| c.ok().map(|c| c.fingerprint().to_hex()))
            .collect();
        bail!(
            "no key with primary fingerprint {} was sent (offered: {})",
            pin.fingerprint,
            if offered.is_empty() {
                "nothing".into()
            } else {
                offered.join(", ")
            }
        );
    };
    let cert = keys::minimal(&cert)?;
    let path = dir.join(format!("{}.asc", pin.fingerprint));
    let old = match std::fs::read(&path) {
        Ok(old) => keys::certificate_for(&old, &pin.fingerprint)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    // What we hold merged with what came: a keyserver may omit a revocation we had.
    let merged = match &old {
        Some(old) => keys::minimal(&old.clone().merge_public(cert)?)?,
        None => cert,
    };
    let changes = keys::changes(old.as_ref(), &merged);
    let armored = merged.armored().to_vec()?;
    let outcome = match &old {
        None => "new",
        Some(_) if changes.is_empty() => "unchanged",
        Some(_) => "updated",
    };
    if std::fs::read(&path).ok().as_deref() != Some(armored.as_slice()) {
        crate::files::write_atomically(&path, &armored)?;
    }
    Ok((outcome, changes))
}

/// (key id suffix, e-mail) of each person in StageX's MAINTAINERS.toml.
fn maintainer_emails(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let (mut email, mut id): (Option<String>, Option<String>) = (None, None);
    let value = |line: &str| {
        line.split_once('=')
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
    };
    for line in text.lines().chain(std::iter::once("[end]")) {
        let line = line.trim();
        if line.starts_with('[') {
            if let (Some(email), Some(id)) = (email.take(), id.take()) {
                found.push((id.to_ascii_uppercase(), email));
            }
        } else if line.starts_with("email") {
            email = value(line);
        } else if line.starts_with("keyoxide") {
            id = value(line).and_then(|url| url.rsplit('/').next().map(str::to_string));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_come_from_maintainers_toml() {
        let path = crate::files::project_root().join("keys/MAINTAINERS.toml");
        let emails = maintainer_emails(&path);
        assert!(emails
            .iter()
            .any(|(id, email)| id == "E90A401336C8AAA9" && email == "stagex@lance.vick.house"));
    }
}
