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

    /// Only a missing trust list means "none": one that cannot be read (not
    /// text, not a file) is an error, never a keyring without pins.
    #[test]
    fn an_unreadable_trust_list_is_an_error_not_an_absent_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_pins(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(TRUST_LIST), b"alice\t\xff\xfe\n").unwrap();
        let error = load_pins(dir.path()).unwrap_err();
        assert!(format!("{error:#}").contains(TRUST_LIST), "{error:#}");
        std::fs::remove_file(dir.path().join(TRUST_LIST)).unwrap();
        std::fs::create_dir(dir.path().join(TRUST_LIST)).unwrap();
        assert!(load_pins(dir.path()).is_err());
    }

    /// A pin needs all 40 characters and hex in each: short or not hex, it
    /// is refused, naming the line.
    #[test]
    fn trust_list_fingerprints_are_full_and_hex() {
        let dir = tempfile::tempdir().unwrap();
        let full = "6B61ECD76088748C70590D55E90A401336C8AAA9";
        for (fingerprint, line) in [(&full[..39], 2), (&full.replace('6', "G")[..], 2)] {
            std::fs::write(
                dir.path().join(TRUST_LIST),
                format!("# maintainer\tfingerprint\twhere\nalice\t{fingerprint}\thttps://keys\n"),
            )
            .unwrap();
            let error = load_pins(dir.path()).unwrap_err().to_string();
            assert!(
                error.contains(&format!("{TRUST_LIST}:{line}: `{fingerprint}`")),
                "{error}"
            );
        }
        std::fs::write(
            dir.path().join(TRUST_LIST),
            format!("alice\t{}\thttps://keys\n", full.to_lowercase()),
        )
        .unwrap();
        assert_eq!(load_pins(dir.path()).unwrap().unwrap()[0].fingerprint, full);
    }

    /// The committed key is found under its own fingerprint and under no
    /// other.
    #[test]
    fn a_certificate_is_found_only_under_its_fingerprint() {
        let full = "6B61ECD76088748C70590D55E90A401336C8AAA9";
        let keys = crate::files::project_root().join("keys");
        let bytes = std::fs::read(keys.join(format!("{full}.asc"))).unwrap();
        let cert = certificate_for(&bytes, full).unwrap().unwrap();
        assert_eq!(cert.fingerprint().to_hex(), full);
        let other = full.replace('A', "B");
        assert!(certificate_for(&bytes, &other).unwrap().is_none());
    }

    /// What a person is told: a new key's subkeys and expiry; of a held key,
    /// a new subkey, a moved expiry, a revocation (once); of the same key,
    /// nothing.
    #[test]
    fn changes_name_new_subkeys_a_moved_expiry_and_a_revocation() {
        use openpgp::types::ReasonForRevocation;
        let policy = StandardPolicy::new();
        let day = std::time::Duration::from_secs(86_400);
        let (alice, revocation) = openpgp::cert::CertBuilder::new()
            .add_userid("alice <alice@example.com>")
            .set_creation_time(std::time::SystemTime::now() - 2 * day)
            .set_validity_period(100 * day)
            .add_signing_subkey()
            .add_signing_subkey()
            .generate()
            .unwrap();
        let first = alice.keys().subkeys().next().unwrap().key().fingerprint();
        let second = alice.keys().subkeys().nth(1).unwrap().key().fingerprint();
        let held = alice
            .clone()
            .retain_subkeys(|k| k.key().fingerprint() == first);
        let expires = expiry(&held, &policy).unwrap();
        assert_eq!(
            changes(None, &alice),
            [
                "new key, 2 subkey(s)".to_string(),
                format!("expires {expires}")
            ]
        );
        assert!(changes(Some(&held), &held).is_empty());
        assert_eq!(
            changes(Some(&held), &alice),
            [format!("new subkey {}", second.to_hex())]
        );

        let mut signer = alice
            .primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap()
            .into_keypair()
            .unwrap();
        let later = std::time::SystemTime::now() + 300 * day;
        let extension = held
            .set_expiration_time(&policy, None, &mut signer, Some(later))
            .unwrap();
        let (extended, _) = held.clone().insert_packets(extension).unwrap();
        let moved = expiry(&extended, &policy).unwrap();
        assert_ne!(moved, expires);
        assert_eq!(
            changes(Some(&held), &extended),
            [format!("expiry {expires} → {moved}")]
        );

        let (revoked, _) = held.clone().insert_packets(revocation).unwrap();
        let reason = held
            .revoke(
                &mut signer,
                ReasonForRevocation::KeyCompromised,
                b"lost laptop",
            )
            .unwrap();
        let (revoked_with_reason, _) = held.clone().insert_packets(reason).unwrap();
        assert_eq!(
            changes(Some(&held), &revoked),
            ["REVOKED (No reason specified: Unspecified)".to_string()]
        );
        assert_eq!(
            changes(Some(&held), &revoked_with_reason),
            ["REVOKED (Key material has been compromised: lost laptop)".to_string()]
        );
        assert!(changes(Some(&revoked), &revoked_with_reason).is_empty());
        assert_eq!(
            changes(None, &revoked_with_reason)[2],
            "REVOKED (Key material has been compromised: lost laptop)"
        );
    }

    #[test]
    fn vks_urls_name_the_fingerprint_under_the_keyserver() {
        assert_eq!(
            vks_url("https://keys.openpgp.org/", "6B61ECD76088748C70590D55E90A401336C8AAA9"),
            "https://keys.openpgp.org/vks/v1/by-fingerprint/6B61ECD76088748C70590D55E90A401336C8AAA9"
        );
    }

    /// z-base-32's own examples, whose last group is partial (a SHA-1
    /// digest, 160 bits, never has one).
    #[test]
    fn zbase32_pads_a_partial_last_group() {
        assert_eq!(zbase32(&[0xf0, 0xbf, 0xc7]), "6n9hq");
        assert_eq!(zbase32(&[0xd4, 0x7a, 0x04]), "4t7ye");
        assert_eq!(zbase32(&[0x00]), "yy");
        assert_eq!(zbase32(&[0xff]), "9h");
    }

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
