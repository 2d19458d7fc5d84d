//! Maintainer keys pinned by fingerprint: the trust list
//! (`keys/fingerprints.tsv`), certificates reduced to what verification needs,
//! what changed between two copies of a key, and where to fetch one (a VKS
//! keyserver, or WKD).

use std::path::Path;

use anyhow::{bail, Context, Result};
use sequoia_openpgp as openpgp;

use openpgp::cert::Cert;
use openpgp::packet::Packet;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::RevocationStatus;

/// The trust list's file name, in the keyring folder.
pub const TRUST_LIST: &str = "fingerprints.tsv";

/// One maintainer's pinned primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub maintainer: String,
    /// 40 uppercase hex characters.
    pub fingerprint: String,
    /// Where the fingerprint was read.
    pub source: String,
}

/// The trust list of a keyring folder; `None` when it has none.
pub fn load_pins(dir: &Path) -> Result<Option<Vec<Pin>>> {
    let path = dir.join(TRUST_LIST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let mut pins = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let columns: Vec<&str> = line.split('\t').collect();
        let [maintainer, fingerprint, source, ..] = columns.as_slice() else {
            bail!(
                "{}:{}: expected `maintainer<TAB>fingerprint<TAB>where it was read`",
                path.display(),
                index + 1
            );
        };
        if fingerprint.len() != 40 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "{}:{}: `{fingerprint}` is not a full (40 hex characters) fingerprint",
                path.display(),
                index + 1
            );
        }
        pins.push(Pin {
            maintainer: maintainer.to_string(),
            fingerprint: fingerprint.to_ascii_uppercase(),
            source: source.to_string(),
        });
    }
    Ok(Some(pins))
}

/// The certificate of `fingerprint` among the parsed `bytes`; `None` when
/// they hold none with exactly that primary key.
pub fn certificate_for(bytes: &[u8], fingerprint: &str) -> Result<Option<Cert>> {
    let mut found = None;
    for cert in openpgp::cert::CertParser::from_bytes(bytes)? {
        let cert = cert?;
        if cert.fingerprint().to_hex() == fingerprint {
            found = Some(match found {
                Some(earlier) => Cert::merge_public(earlier, cert)?,
                None => cert,
            });
        }
    }
    Ok(found)
}

/// The public primary key, its own signatures and revocations, its user IDs
/// and subkeys with their self-signatures: nothing a third party added, no
/// secret material. A user ID or subkey without a self-signature that
/// verifies (sequoia hands out only those) is not the key holder's:
/// another key's subkey with that key's binding appended to a certificate
/// is dropped, not kept and reported as new.
pub fn minimal(cert: &Cert) -> Result<Cert> {
    let mut packets: Vec<Packet> = Vec::new();
    let primary = cert.primary_key();
    packets.push(primary.key().clone().role_into_primary().into());
    packets.extend(
        primary
            .bundle()
            .self_signatures()
            .cloned()
            .map(Packet::from),
    );
    packets.extend(
        primary
            .bundle()
            .self_revocations()
            .cloned()
            .map(Packet::from),
    );
    for userid in cert.userids() {
        if userid.bundle().self_signatures().next().is_none() {
            continue;
        }
        packets.push(userid.userid().clone().into());
        packets.extend(userid.bundle().self_signatures().cloned().map(Packet::from));
        packets.extend(
            userid
                .bundle()
                .self_revocations()
                .cloned()
                .map(Packet::from),
        );
    }
    for subkey in cert.keys().subkeys() {
        if subkey.bundle().self_signatures().next().is_none() {
            continue;
        }
        packets.push(subkey.key().clone().into());
        packets.extend(subkey.bundle().self_signatures().cloned().map(Packet::from));
        packets.extend(
            subkey
                .bundle()
                .self_revocations()
                .cloned()
                .map(Packet::from),
        );
    }
    Ok(Cert::from_packets(packets.into_iter())?.strip_secret_key_material())
}

/// What is different in `new` from `old` (or that it is new), for a person.
pub fn changes(old: Option<&Cert>, new: &Cert) -> Vec<String> {
    let policy = StandardPolicy::new();
    let Some(old) = old else {
        let mut summary = vec![format!(
            "new key, {} subkey(s)",
            new.keys().subkeys().count()
        )];
        summary.extend(expiry(new, &policy).map(|e| format!("expires {e}")));
        summary.extend(revocation(new, &policy));
        return summary;
    };
    let mut changes = Vec::new();
    for subkey in new.keys().subkeys() {
        let fingerprint = subkey.key().fingerprint();
        if !old
            .keys()
            .subkeys()
            .any(|k| k.key().fingerprint() == fingerprint)
        {
            changes.push(format!("new subkey {}", fingerprint.to_hex()));
        }
    }
    let (before, after) = (expiry(old, &policy), expiry(new, &policy));
    if before != after {
        changes.push(format!(
            "expiry {} → {}",
            before.as_deref().unwrap_or("never"),
            after.as_deref().unwrap_or("never")
        ));
    }
    if revocation(old, &policy).is_none() {
        changes.extend(revocation(new, &policy));
    }
    changes
}

/// The primary key's expiry date (its latest self-signature says it).
fn expiry(cert: &Cert, policy: &StandardPolicy) -> Option<String> {
    let valid = cert.with_policy(policy, None).ok()?;
    valid
        .primary_key()
        .key_expiration_time()
        .map(|time| super::verify::date(Some(time)))
}

fn revocation(cert: &Cert, policy: &StandardPolicy) -> Option<String> {
    match cert.revocation_status(policy, None) {
        RevocationStatus::Revoked(signatures) => {
            let reason = signatures
                .first()
                .and_then(|s| s.reason_for_revocation())
                .map(|(code, text)| format!("{code}: {}", String::from_utf8_lossy(text)))
                .unwrap_or_else(|| "no reason given".into());
            Some(format!("REVOKED ({reason})"))
        }
        _ => None,
    }
}

/// The VKS URL of a fingerprint on `keyserver`.
pub fn vks_url(keyserver: &str, fingerprint: &str) -> String {
    format!(
        "{}/vks/v1/by-fingerprint/{fingerprint}",
        keyserver.trim_end_matches('/')
    )
}

/// The WKD "direct" URL of an e-mail address below `base` (normally
/// `https://<domain>`): the local part, lower-cased, SHA-1 hashed and z-base-32
/// encoded.
pub fn wkd_url(base: &str, email: &str) -> Result<String> {
    let (local, domain) = email
        .rsplit_once('@')
        .with_context(|| format!("`{email}` is not an e-mail address"))?;
    let mut hash = openpgp::types::HashAlgorithm::SHA1.context()?.for_digest();
    hash.update(local.to_lowercase().as_bytes());
    let digest = hash.into_digest()?;
    let base = base.replace("{domain}", domain);
    Ok(format!(
        "{}/.well-known/openpgpkey/hu/{}?l={}",
        base.trim_end_matches('/'),
        zbase32(&digest),
        local
    ))
}

/// z-base-32, as WKD uses it.
fn zbase32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the WKD draft (section 3.1).
    #[test]
    fn wkd_urls_follow_the_draft() {
        assert_eq!(
            wkd_url("https://example.org", "Joe.Doe@Example.ORG").unwrap(),
            "https://example.org/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
        assert!(wkd_url("https://x", "no-at-sign").is_err());
    }

    #[test]
    fn the_repository_trust_list_names_the_committed_key() {
        let keys = crate::files::project_root().join("keys");
        let pins = load_pins(&keys).unwrap().unwrap();
        assert_eq!(pins.len(), 5);
        assert!(pins
            .iter()
            .any(|p| p.fingerprint == "6B61ECD76088748C70590D55E90A401336C8AAA9"));
    }
}
