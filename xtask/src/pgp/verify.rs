//! StageX signature verification with sequoia (pure Rust) and the quorum rule:
//! at least N distinct maintainer keys made a good signature over this digest
//! of this repository.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use sequoia_openpgp as openpgp;
use serde::Serialize;

use openpgp::armor;
use openpgp::cert::{Cert, CertParser};
use openpgp::parse::stream::{
    MessageLayer, MessageStructure, VerificationError, VerificationHelper, VerifierBuilder,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::KeyHandle;

use super::lookaside::SignatureFile;
use super::payload::{self, PayloadForm};

/// The maintainer certificates we trust, from a folder of key files.
pub struct Keyring {
    pub certs: Vec<Cert>,
    /// What was left out and why, for people to read.
    pub notes: Vec<String>,
}

impl Keyring {
    /// Every `*.asc`, `*.pgp`, `*.gpg` and `*.key` file in `dir` (armored or binary,
    /// one or more certificates each) whose primary fingerprint is on the
    /// folder's trust list (`fingerprints.tsv`); without a list, every one.
    pub fn load(dir: &Path) -> Result<Keyring> {
        let pins = super::keys::load_pins(dir)?;
        let mut notes = Vec::new();
        if pins.is_none() {
            notes.push(format!(
                "no {} in {}: every key file there is trusted",
                super::keys::TRUST_LIST,
                dir.display()
            ));
        }
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the keyring folder {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        paths.sort();
        let mut certs: Vec<Cert> = Vec::new();
        for path in paths {
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(extension, "asc" | "pgp" | "gpg" | "key") {
                continue;
            }
            for cert in CertParser::from_file(&path)
                .with_context(|| format!("{} is not an OpenPGP key file", path.display()))?
            {
                let cert = cert
                    .with_context(|| format!("{}: a certificate does not parse", path.display()))?;
                let fingerprint = cert.fingerprint().to_hex();
                if let Some(pins) = &pins {
                    if !pins.iter().any(|pin| pin.fingerprint == fingerprint) {
                        notes.push(format!(
                            "ignored {}: key {fingerprint} is not in {}",
                            path.display(),
                            super::keys::TRUST_LIST
                        ));
                        continue;
                    }
                }
                if cert.is_tsk() {
                    bail!(
                        "{} holds secret key material: the keyring takes public keys only (gpg --export, not --export-secret-keys)",
                        path.display()
                    );
                }
                match certs
                    .iter_mut()
                    .find(|c| c.fingerprint() == cert.fingerprint())
                {
                    Some(existing) => *existing = existing.clone().merge_public(cert)?,
                    None => certs.push(cert),
                }
            }
        }
        if certs.is_empty() {
            bail!(
                "no trusted public keys (*.asc, *.pgp, *.gpg) in {}{}",
                dir.display(),
                notes.iter().map(|n| format!("; {n}")).collect::<String>()
            );
        }
        Ok(Keyring { certs, notes })
    }
}

/// What one signature file proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    pub file: String,
    /// Fingerprint (or key ID) of the key that made the signature.
    pub signer: Option<String>,
    /// Fingerprint of that key's primary key: the maintainer.
    pub primary: Option<String>,
    /// Signature creation date (UTC, `YYYY-MM-DD`).
    pub created: Option<String>,
    pub form: Option<PayloadForm>,
    pub counted: bool,
    /// Why it does not count.
    pub reason: Option<String>,
}

/// The verdicts for one digest and whether they meet the threshold.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct QuorumReport {
    pub repository: String,
    pub digest: String,
    pub threshold: usize,
    pub signers: Vec<String>,
    pub met: bool,
    pub verdicts: Vec<Verdict>,
}

/// Verify every signature file for `repository@sha256:digest_hex`.
pub fn verify_quorum(
    files: &[SignatureFile],
    keyring: &Keyring,
    repository: &str,
    digest_hex: &str,
    threshold: usize,
) -> QuorumReport {
    let policy = StandardPolicy::new();
    let mut signers: Vec<String> = Vec::new();
    let mut verdicts = Vec::new();
    for file in files {
        let mut verdict = verify_one(&file.bytes, keyring, &policy, repository, digest_hex);
        verdict.file = file.name.clone();
        // A verdict counts only with the primary key that made it.
        let counted_by = verdict.primary.clone().filter(|_| verdict.counted);
        verdict.counted = counted_by.is_some();
        if let Some(primary) = counted_by {
            if signers.contains(&primary) {
                verdict.counted = false;
                verdict.reason = Some(format!(
                    "key {primary} already counted: one key counts once"
                ));
            } else {
                signers.push(primary);
            }
        }
        verdicts.push(verdict);
    }
    QuorumReport {
        repository: repository.to_string(),
        digest: format!("sha256:{digest_hex}"),
        threshold,
        met: signers.len() >= threshold,
        signers,
        verdicts,
    }
}

fn refused(reason: String) -> Verdict {
    Verdict {
        file: String::new(),
        signer: None,
        primary: None,
        created: None,
        form: None,
        counted: false,
        reason: Some(reason),
    }
}

/// A signed payload larger than this is refused unread: a simple-signing
/// payload is under 4 KiB, and a compressed message can unpack to gigabytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 10;

/// The binary OpenPGP message in `bytes`: binary input as it is, armored
/// input only as a `BEGIN PGP MESSAGE` block, dearmored here. Sequoia's
/// verifier, given armored bytes, skips any text before the armor and reads
/// the cleartext signature framework, whose text is not what was signed byte
/// for byte; given binary bytes it does neither.
fn inline_message(bytes: &[u8]) -> std::result::Result<Cow<'_, [u8]>, String> {
    const CLEARTEXT: &str =
        "a cleartext-signed message: StageX signatures are inline signed messages (gpg --sign)";
    // Sequoia knows the framework by exactly this text in its header line,
    // wherever the line is (after junk, after a binary-looking first byte).
    let marker = b"BEGIN PGP SIGNED MESSAGE";
    if bytes.windows(marker.len()).any(|w| w == marker) {
        return Err(CLEARTEXT.into());
    }
    // Every OpenPGP packet header has its top bit set; armor is text.
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        return Ok(Cow::Borrowed(bytes));
    }
    // The whole input is at most a lookaside signature (1 MiB): its armor
    // decodes to less.
    let mut reader = armor::Reader::from_bytes(bytes, armor::ReaderMode::Tolerant(None));
    let mut binary = Vec::new();
    if let Err(error) = reader.read_to_end(&mut binary) {
        return Err(format!("not an OpenPGP signed message: {error}"));
    }
    match reader.kind() {
        Some(armor::Kind::Message) => Ok(Cow::Owned(binary)),
        // A cleartext framework whose header is spelt so that we missed
        // it shows up as its signature block.
        Some(armor::Kind::Signature) => Err(format!(
            "{CLEARTEXT}; this is an armored signature block (cleartext or detached)"
        )),
        Some(kind) => Err(format!(
            "not an OpenPGP signed message: an armored {kind:?} block"
        )),
        None => Err("not an OpenPGP signed message: no armor".into()),
    }
}

/// One inline-signed message: cryptography first, then what the payload says.
pub fn verify_one(
    bytes: &[u8],
    keyring: &Keyring,
    policy: &StandardPolicy,
    repository: &str,
    digest_hex: &str,
) -> Verdict {
    let message = match inline_message(bytes) {
        Ok(message) => message,
        Err(reason) => return refused(reason),
    };
    let helper = Helper {
        certs: &keyring.certs,
        outcome: None,
    };
    // Sequoia holds back up to the buffer size to verify before it releases
    // data: one byte over our limit is all it needs to hold.
    let built = VerifierBuilder::from_bytes(&message[..]).and_then(|b| {
        b.buffer_size(MAX_PAYLOAD_BYTES + 1)
            .with_policy(policy, None, helper)
    });
    let mut verifier = match built {
        Ok(verifier) => verifier,
        Err(error) => return refused(format!("not an OpenPGP signed message: {error}")),
    };
    let mut payload_bytes = Vec::new();
    if let Err(error) = (&mut verifier)
        .take(MAX_PAYLOAD_BYTES as u64 + 1)
        .read_to_end(&mut payload_bytes)
    {
        return refused(format!("the signed message does not read: {error}"));
    }
    if payload_bytes.len() > MAX_PAYLOAD_BYTES {
        return refused(format!(
            "the signed payload is larger than {MAX_PAYLOAD_BYTES} bytes: refused unread (a signature payload is under 4 KiB; a compressed message can unpack to gigabytes)"
        ));
    }
    let outcome = verifier.into_helper().outcome.unwrap_or(Outcome::Refused {
        signer: None,
        created: None,
        reason: "the message carries no signature".into(),
    });
    let (signer, primary, created) = match outcome {
        Outcome::Good {
            signer,
            primary,
            created,
        } => (signer, primary, created),
        Outcome::Refused {
            signer,
            created,
            reason,
        } => {
            return Verdict {
                signer,
                created,
                ..refused(reason)
            }
        }
    };
    let mut verdict = Verdict {
        file: String::new(),
        signer: Some(signer),
        primary: Some(primary),
        created: Some(created),
        form: None,
        counted: false,
        reason: None,
    };
    let payload = match payload::parse(&payload_bytes) {
        Ok(payload) => payload,
        Err(error) => {
            verdict.reason = Some(format!("payload: {error:#}"));
            return verdict;
        }
    };
    verdict.form = Some(payload.form);
    let wanted_repository =
        payload::repository_of(repository).unwrap_or_else(|_| repository.to_string());
    if payload.digest_hex != digest_hex.to_ascii_lowercase() {
        verdict.reason = Some(format!(
            "signs digest sha256:{}, not the requested sha256:{digest_hex}",
            payload.digest_hex
        ));
    } else if payload.repository != wanted_repository {
        verdict.reason = Some(format!(
            "signs repository {}, not the requested {wanted_repository}",
            payload.repository
        ));
    } else {
        verdict.counted = true;
    }
    verdict
}

enum Outcome {
    Good {
        signer: String,
        primary: String,
        created: String,
    },
    Refused {
        signer: Option<String>,
        created: Option<String>,
        reason: String,
    },
}

struct Helper<'a> {
    certs: &'a [Cert],
    outcome: Option<Outcome>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.to_vec())
    }

    /// Record the first good signature, else the first failure; never fail
    /// here, so that the payload can still be read and reported.
    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for result in results {
                let outcome = match result {
                    Ok(good) => Outcome::Good {
                        signer: good.ka.key().fingerprint().to_hex(),
                        primary: good.ka.cert().fingerprint().to_hex(),
                        created: date(good.sig.signature_creation_time()),
                    },
                    Err(error) => failure(&error),
                };
                let is_good = matches!(outcome, Outcome::Good { .. });
                if self.outcome.is_none() || is_good {
                    self.outcome = Some(outcome);
                }
                if is_good {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn failure(error: &VerificationError) -> Outcome {
    match error {
        VerificationError::MissingKey { sig } => Outcome::Refused {
            signer: sig.get_issuers().first().map(|h| h.to_hex()),
            created: Some(date(sig.signature_creation_time())),
            reason: format!(
                "unknown key {}: not in the keyring",
                sig.get_issuers()
                    .first()
                    .map(|h| h.to_hex())
                    .unwrap_or_else(|| "(no issuer)".into())
            ),
        },
        VerificationError::UnboundKey { sig, cert, error } => Outcome::Refused {
            signer: sig.get_issuers().first().map(|h| h.to_hex()),
            created: Some(date(sig.signature_creation_time())),
            reason: format!(
                "key of {} was not valid when the signature was made: {error}",
                cert.fingerprint().to_hex()
            ),
        },
        VerificationError::BadKey { sig, ka, error } => Outcome::Refused {
            signer: Some(ka.key().fingerprint().to_hex()),
            created: Some(date(sig.signature_creation_time())),
            reason: format!(
                "key {} (primary {}) was not valid when the signature was made: {error}",
                ka.key().fingerprint().to_hex(),
                ka.cert().fingerprint().to_hex()
            ),
        },
        VerificationError::BadSignature { sig, ka, error } => Outcome::Refused {
            signer: Some(ka.key().fingerprint().to_hex()),
            created: Some(date(sig.signature_creation_time())),
            reason: format!("bad signature: {error}"),
        },
        VerificationError::MalformedSignature { error, .. } => Outcome::Refused {
            signer: None,
            created: None,
            reason: format!("malformed signature: {error}"),
        },
        other => Outcome::Refused {
            signer: None,
            created: None,
            reason: format!("unusable signature: {other}"),
        },
    }
}

/// `YYYY-MM-DD` (UTC) of a time; `unknown` without one.
pub fn date(time: Option<SystemTime>) -> String {
    match time.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(since) => crate::time::date(since.as_secs()),
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::lookaside::SignatureFile;
    use crate::pgp::payload::PayloadForm;
    use std::time::Duration;

    const LANCE_SUBKEY: &str = "67553FBDA46BB71ABD2E0B0B8E47A1EC35A1551D";
    const LANCE_PRIMARY: &str = "6B61ECD76088748C70590D55E90A401336C8AAA9";
    /// The copy of Lance Vick's key in keys/ expired on this day.
    const LANCE_EXPIRY: &str = "2024-07-20";

    /// Every real signature in the test data, against the real key with
    /// threshold 1: Lance's signatures made before his key copy expired
    /// (February to April 2024) count; those made after it (September 2024 on,
    /// all of 2025: he had renewed the key, our copy predates that) do not; and
    /// everyone else's key is unknown here. The dates
    /// and signers come from gpg's own reading (INDEX.tsv), so this also checks
    /// that sequoia reads each message as gpg did.
    #[test]
    fn real_stagex_signatures_against_the_real_key() {
        let root = crate::files::project_root();
        let keyring = Keyring::load(&root.join("keys")).unwrap();
        let data = root.join("xtask/tests/testdata/stagex-signatures");
        let mut counted = 0;
        let mut expired = 0;
        let mut unknown = 0;
        for set in ["matching-pinned-refs", "release-2025.06.0"] {
            let index = std::fs::read_to_string(data.join(set).join("INDEX.tsv")).unwrap();
            for row in index.lines().skip(1) {
                let columns: Vec<&str> = row.split('\t').collect();
                let (package, digest, file, signer, created) =
                    (columns[0], columns[1], columns[2], columns[3], columns[4]);
                let path = data
                    .join(set)
                    .join("signatures/stagex")
                    .join(format!("{package}@sha256={digest}"))
                    .join(file);
                let files = [SignatureFile {
                    name: file.to_string(),
                    bytes: std::fs::read(&path).unwrap(),
                }];
                let repository = format!("stagex/{package}");
                let report = verify_quorum(&files, &keyring, &repository, digest, 1);
                let verdict = &report.verdicts[0];
                assert_eq!(verdict.created.as_deref(), Some(created), "{row}");
                assert_eq!(verdict.signer.as_deref(), Some(signer), "{row}");
                let reason = verdict.reason.clone().unwrap_or_default();
                if signer == LANCE_SUBKEY && created < LANCE_EXPIRY {
                    assert!(report.met && verdict.counted, "{row}: {reason}");
                    assert_eq!(verdict.primary.as_deref(), Some(LANCE_PRIMARY));
                    assert_eq!(verdict.form, Some(PayloadForm::StagexLegacy));
                    counted += 1;
                } else if signer == LANCE_SUBKEY {
                    assert!(!report.met, "{row}");
                    assert!(
                        reason.contains("was not valid when the signature was made"),
                        "{row}: {reason}"
                    );
                    expired += 1;
                } else {
                    assert!(!report.met, "{row}");
                    assert!(reason.starts_with("unknown key"), "{row}: {reason}");
                    unknown += 1;
                }
            }
        }
        assert_eq!((counted, expired), (76, 46 + 338));
        assert!(unknown > 200, "{unknown}");
    }

    /// The cleartext framework is refused wherever sequoia would find it;
    /// armor is taken only as a `BEGIN PGP MESSAGE` block, binary as it is.
    #[test]
    fn only_inline_messages_reach_the_verifier() {
        let cleartext = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{}\n-----BEGIN PGP SIGNATURE-----\n\nwnUEARYKAB0WIQQ=\n-----END PGP SIGNATURE-----\n";
        for prefix in [&b""[..], b"junk line\n", b"\xff\n", b"  \n\n"] {
            let input = [prefix, &cleartext[..]].concat();
            let error = inline_message(&input).unwrap_err();
            assert!(error.starts_with("a cleartext-signed message"), "{error}");
        }
        let binary = [0xa3u8, 0x01, 0x02];
        assert!(matches!(inline_message(&binary), Ok(Cow::Borrowed(_))));
        let error = inline_message(b"this is not an OpenPGP message").unwrap_err();
        assert!(
            error.starts_with("not an OpenPGP signed message"),
            "{error}"
        );
        let key =
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEZ\n-----END PGP PUBLIC KEY BLOCK-----\n";
        let error = inline_message(key).unwrap_err();
        assert!(
            error.starts_with("not an OpenPGP signed message"),
            "{error}"
        );
    }

    /// A payload of exactly the limit is read and counts; one byte more is
    /// refused for its size (sequoia's buffer and our read both hold it).
    #[test]
    fn a_payload_of_exactly_the_limit_counts_and_one_byte_more_is_refused() {
        use openpgp::serialize::stream::{Armorer, LiteralWriter, Message, Signer};
        use std::io::Write as _;
        let (cert, _) = openpgp::cert::CertBuilder::new()
            .add_userid("maintainer <m@example.com>")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let policy = StandardPolicy::new();
        let keypair = || {
            cert.keys()
                .unencrypted_secret()
                .with_policy(&policy, None)
                .for_signing()
                .next()
                .unwrap()
                .key()
                .clone()
                .into_keypair()
                .unwrap()
        };
        let digest = "a".repeat(64);
        let signed = |size: usize| {
            let head = format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x:1"}},"image":{{"docker-manifest-digest":"sha256:{digest}"}},"type":"atomic container signature"}},"optional":{{"creator":""#
            );
            let tail = r#""}}"#;
            let payload = format!("{head}{}{tail}", "p".repeat(size - head.len() - tail.len()));
            assert_eq!(payload.len(), size);
            let mut bytes = Vec::new();
            let message = Message::new(&mut bytes);
            let message = Armorer::new(message)
                .kind(openpgp::armor::Kind::Message)
                .build()
                .unwrap();
            let message = Signer::new(message, keypair()).unwrap().build().unwrap();
            let mut literal = LiteralWriter::new(message).build().unwrap();
            literal.write_all(payload.as_bytes()).unwrap();
            literal.finalize().unwrap();
            bytes
        };
        let keyring = Keyring {
            certs: vec![cert.clone().strip_secret_key_material()],
            notes: Vec::new(),
        };
        let at_limit = verify_one(
            &signed(MAX_PAYLOAD_BYTES),
            &keyring,
            &policy,
            "stagex/x",
            &digest,
        );
        assert!(at_limit.counted, "{:?}", at_limit.reason);
        let over = verify_one(
            &signed(MAX_PAYLOAD_BYTES + 1),
            &keyring,
            &policy,
            "stagex/x",
            &digest,
        );
        assert!(!over.counted);
        assert!(
            over.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("the signed payload is larger than 65536 bytes")),
            "{:?}",
            over.reason
        );
    }

    /// With a trust list, only listed keys load, whatever else is listed;
    /// a key split over two files is one certificate; a file of another
    /// kind is not read.
    #[test]
    fn only_listed_keys_load_and_a_key_in_two_files_is_one() {
        use openpgp::serialize::SerializeInto;
        let generate = |name: &str| {
            openpgp::cert::CertBuilder::new()
                .add_userid(format!("{name} <{name}@example.com>"))
                .add_signing_subkey()
                .add_signing_subkey()
                .generate()
                .unwrap()
                .0
                .strip_secret_key_material()
        };
        let (listed, unlisted) = (generate("listed"), generate("unlisted"));
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, cert: &Cert| {
            std::fs::write(dir.path().join(name), cert.armored().to_vec().unwrap()).unwrap();
        };
        let first = listed.keys().subkeys().next().unwrap().key().fingerprint();
        write(
            "listed.asc",
            &listed
                .clone()
                .retain_subkeys(|k| k.key().fingerprint() == first),
        );
        write(
            "listed-more.gpg",
            &listed
                .clone()
                .retain_subkeys(|k| k.key().fingerprint() != first),
        );
        write("unlisted.asc", &unlisted);
        write("notes.txt", &unlisted);
        std::fs::write(
            dir.path().join(super::super::keys::TRUST_LIST),
            format!(
                "Listed\t{}\ttest\nAbsent\t{}\ttest\n",
                listed.fingerprint().to_hex(),
                "A".repeat(40)
            ),
        )
        .unwrap();
        let keyring = Keyring::load(dir.path()).unwrap();
        assert_eq!(keyring.certs.len(), 1);
        assert_eq!(keyring.certs[0].fingerprint(), listed.fingerprint());
        assert_eq!(keyring.certs[0].keys().subkeys().count(), 2);
        assert_eq!(keyring.notes.len(), 1, "{:?}", keyring.notes);
        assert!(
            keyring.notes[0].starts_with("ignored "),
            "{:?}",
            keyring.notes
        );
        assert!(
            keyring.notes[0].contains("unlisted.asc"),
            "{:?}",
            keyring.notes
        );
    }

    /// Guards the `is_tsk` refusal of Keyring::load: a key file holding the
    /// secret key is refused whole, naming the file, though its public half
    /// would be a valid key; the same key exported public only loads.
    #[test]
    fn secret_key_material_in_the_keyring_is_refused() {
        use openpgp::serialize::SerializeInto;
        let (cert, _) = openpgp::cert::CertBuilder::new()
            .add_userid("maintainer <m@example.com>")
            .add_signing_subkey()
            .generate()
            .unwrap();
        assert!(cert.is_tsk());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maintainer.asc");
        std::fs::write(&path, cert.as_tsk().armored().to_vec().unwrap()).unwrap();
        let error = Keyring::load(dir.path())
            .err()
            .expect("a secret key was loaded");
        assert_eq!(
            error.to_string(),
            format!(
                "{} holds secret key material: the keyring takes public keys only (gpg --export, not --export-secret-keys)",
                path.display()
            )
        );
        std::fs::write(&path, cert.armored().to_vec().unwrap()).unwrap();
        let keyring = Keyring::load(dir.path()).unwrap();
        assert_eq!(keyring.certs.len(), 1);
        assert!(!keyring.certs[0].is_tsk());
    }

    #[test]
    fn an_empty_keyring_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = Keyring::load(dir.path()).err().unwrap();
        assert!(
            error.to_string().contains("no trusted public keys"),
            "{error}"
        );
    }

    #[test]
    fn dates() {
        let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(date(at(1_713_114_769)), "2024-04-14");
        assert_eq!(date(None), "unknown");
    }
}
