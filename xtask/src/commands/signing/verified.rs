//! What cosign's verify commands print, read strictly: a signature counts
//! only when its claims name the digest we asked about, an attestation only
//! when its in-toto subject is that digest and its predicate the type (and,
//! when given, the very SBOM) expected.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::tools::cosign::PredicateKind;

/// What `verify` proved, for people and `--json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Verified {
    pub reference: String,
    pub digest: String,
    pub public_key: String,
    /// sha256 of the public key (its DER), to compare with the one docs/publishing-and-signing.md records.
    pub key_sha256: String,
    pub signatures: usize,
    pub attestations: Vec<AttestationVerified>,
    /// Whether transparency log entries were required.
    pub tlog: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AttestationVerified {
    pub predicate_type: String,
    /// sha256 of the predicate as attested (its JSON, keys sorted).
    pub predicate_sha256: String,
    /// The SBOM file it was compared with, when one was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// For a provenance: what was checked beyond the signature (its image,
    /// and that its StageX dependencies are the Containerfile's pins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    /// The predicate as attested (all of them equal), for the checks after.
    #[serde(skip)]
    #[schemars(skip)]
    pub predicate: serde_json::Value,
}

impl Verified {
    pub fn render(&self) -> String {
        let mut text = format!(
            "verified {}: {} signature(s) by {} (key sha256:{}){}\n",
            self.reference,
            self.signatures,
            self.public_key,
            self.key_sha256,
            if self.tlog {
                ""
            } else {
                ", transparency log not checked"
            }
        );
        for attestation in &self.attestations {
            text.push_str(&format!(
                "  attestation {}: predicate sha256:{}",
                attestation.predicate_type, attestation.predicate_sha256
            ));
            if let Some(file) = &attestation.equals {
                text.push_str(&format!(", equal to {file}"));
            }
            if let Some(checked) = &attestation.provenance {
                text.push_str(&format!("; {checked}"));
            }
            text.push('\n');
        }
        text
    }
}

/// sha256 of a PEM public key's DER bytes.
pub fn key_fingerprint(pem: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(pem).context("the public key is not PEM text")?;
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("the public key is not PEM (its body is not base64)")?;
    if der.is_empty() {
        bail!("the public key file holds no key");
    }
    Ok(crate::hash::hex_sha256(&der))
}

#[derive(Deserialize)]
struct Claims {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: ClaimedImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct ClaimedImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// How many verified signatures `cosign verify --output json` printed for
/// `digest`; any claim about another digest, or none at all, is an error.
pub fn signatures(stdout: &[u8], digest: &str) -> Result<usize> {
    let claims: Vec<Claims> = serde_json::from_slice(stdout)
        .context("cosign verify printed no JSON list of signature claims")?;
    if claims.is_empty() {
        bail!("cosign verify printed no signature");
    }
    for claim in &claims {
        if claim.critical.kind != "cosign container image signature" {
            bail!("a signature claims type `{}`", claim.critical.kind);
        }
        if claim.critical.image.digest != digest {
            bail!(
                "a verified signature is for {}, not {digest}",
                claim.critical.image.digest
            );
        }
    }
    Ok(claims.len())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload_type: String,
    payload: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    predicate_type: String,
    subject: Vec<Subject>,
    predicate: serde_json::Value,
}

#[derive(Deserialize)]
struct Subject {
    digest: std::collections::BTreeMap<String, String>,
}

/// The attestation of `kind` for `digest` among the DSSE envelopes
/// `cosign verify-attestation` printed (one per line). Every attestation of
/// that type counts, not the last one printed: with `expected` (a file name
/// and its JSON) each predicate must equal that SBOM; without, they must all
/// say the same (two different SBOMs for one digest is no answer).
pub fn attestation(
    stdout: &[u8],
    digest: &str,
    kind: PredicateKind,
    expected: Option<&(String, serde_json::Value)>,
) -> Result<AttestationVerified> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let text = std::str::from_utf8(stdout).context("cosign printed something that is not UTF-8")?;
    let mut predicates: Vec<serde_json::Value> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let envelope: Envelope =
            serde_json::from_str(line).context("cosign printed a line that is no DSSE envelope")?;
        if envelope.payload_type != "application/vnd.in-toto+json" {
            bail!(
                "an attestation's payload is `{}`, not in-toto",
                envelope.payload_type
            );
        }
        let payload = base64::engine::general_purpose::STANDARD
            .decode(envelope.payload.trim())
            .context("an attestation's payload is not base64")?;
        let statement: Statement = serde_json::from_slice(&payload)
            .context("an attestation's payload is not an in-toto statement")?;
        if !statement
            .subject
            .iter()
            .any(|s| s.digest.get("sha256").map(String::as_str) == Some(hex))
        {
            bail!("a verified attestation's subject is not {digest}");
        }
        if statement.predicate_type == kind.predicate_type() {
            predicates.push(statement.predicate);
        }
    }
    let Some(first) = predicates.first() else {
        bail!(
            "no verified attestation has predicate type {}",
            kind.predicate_type()
        );
    };
    match expected {
        Some((file, sbom)) => {
            if let Some(other) = predicates.iter().position(|p| p != sbom) {
                bail!(
                    "the attested {} predicate{} is not {file}",
                    kind.name(),
                    if predicates.len() > 1 {
                        format!(" (#{} of {})", other + 1, predicates.len())
                    } else {
                        String::new()
                    }
                );
            }
        }
        None => {
            if predicates.iter().any(|p| p != first) {
                bail!(
                    "{} {} attestations with different predicates: name the SBOM that must hold (--sbom FILE)",
                    predicates.len(),
                    kind.name()
                );
            }
        }
    }
    let sorted = serde_json::to_vec(first)?;
    Ok(AttestationVerified {
        predicate_type: kind.predicate_type().to_string(),
        predicate_sha256: crate::hash::hex_sha256(&sorted),
        equals: expected.map(|(file, _)| file.clone()),
        provenance: None,
        predicate: first.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:1fbc8fa4d0d0effd14c49d80e7073f315ab7f318edf835ab6d105b9178803216";

    /// cosign 2.5's own output for a signature made here (test-env).
    const VERIFY_OUTPUT: &str = r#"[{"critical":{"identity":{"docker-reference":"127.0.0.1:42065/exp/busybox"},"image":{"docker-manifest-digest":"sha256:1fbc8fa4d0d0effd14c49d80e7073f315ab7f318edf835ab6d105b9178803216"},"type":"cosign container image signature"},"optional":null}]"#;

    /// cosign 2.5's verify-attestation line for `{"spdxVersion":"SPDX-2.3","name":"x"}`.
    const ATTESTATION_OUTPUT: &str = r#"{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSIsInByZWRpY2F0ZVR5cGUiOiJodHRwczovL3NwZHguZGV2L0RvY3VtZW50Iiwic3ViamVjdCI6W3sibmFtZSI6IjEyNy4wLjAuMTo0MjA2NS9leHAvYnVzeWJveCIsImRpZ2VzdCI6eyJzaGEyNTYiOiIxZmJjOGZhNGQwZDBlZmZkMTRjNDlkODBlNzA3M2YzMTVhYjdmMzE4ZWRmODM1YWI2ZDEwNWI5MTc4ODAzMjE2In19XSwicHJlZGljYXRlIjp7Im5hbWUiOiJ4Iiwic3BkeFZlcnNpb24iOiJTUERYLTIuMyJ9fQ==","signatures":[{"keyid":"","sig":"MEUCIQC4b0abTKmRK7vZ4mgzH8XSNwEYfZ62dW90XYQl0rk6AgIgBz9uryhDuXKZT2DbIWBnCthiQ/sWodVztlrZjxr3zCM="}]}"#;

    #[test]
    fn signatures_must_name_the_digest() {
        assert_eq!(signatures(VERIFY_OUTPUT.as_bytes(), DIGEST).unwrap(), 1);
        let other = format!("sha256:{}", "0".repeat(64));
        let error = signatures(VERIFY_OUTPUT.as_bytes(), &other).unwrap_err();
        assert!(error.to_string().contains("is for sha256:1fbc"), "{error}");
        assert!(signatures(b"[]", DIGEST).is_err());
        assert!(signatures(b"not json", DIGEST).is_err());
    }

    #[test]
    fn an_attestation_must_be_for_the_digest_and_the_sbom() {
        let sbom = serde_json::json!({"spdxVersion": "SPDX-2.3", "name": "x"});
        let expected = ("sbom.spdx.json".to_string(), sbom);
        let found = attestation(
            ATTESTATION_OUTPUT.as_bytes(),
            DIGEST,
            PredicateKind::Spdxjson,
            Some(&expected),
        )
        .unwrap();
        assert_eq!(found.predicate_type, "https://spdx.dev/Document");
        assert_eq!(found.equals.as_deref(), Some("sbom.spdx.json"));
        let other_sbom = (
            "other.json".to_string(),
            serde_json::json!({"spdxVersion": "SPDX-2.3", "name": "y"}),
        );
        let error = attestation(
            ATTESTATION_OUTPUT.as_bytes(),
            DIGEST,
            PredicateKind::Spdxjson,
            Some(&other_sbom),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the attested spdxjson predicate is not other.json"
        );
        let other = format!("sha256:{}", "0".repeat(64));
        assert!(attestation(
            ATTESTATION_OUTPUT.as_bytes(),
            &other,
            PredicateKind::Spdxjson,
            None
        )
        .is_err());
        let error = attestation(
            ATTESTATION_OUTPUT.as_bytes(),
            DIGEST,
            PredicateKind::Cyclonedx,
            None,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("https://cyclonedx.org/bom"),
            "{error}"
        );
    }

    #[test]
    fn fingerprints_are_of_the_der() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAEC\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            key_fingerprint(pem.as_bytes()).unwrap(),
            crate::hash::hex_sha256(&[0, 1, 2])
        );
        assert!(
            key_fingerprint(b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n").is_err()
        );
    }

    /// What people read after a verify: the signatures and key, whether the
    /// log was checked, then each attestation with what it equals.
    #[test]
    fn a_verification_reads_as_what_it_proved() {
        let attestation = |equals: Option<&str>, provenance: Option<&str>| AttestationVerified {
            predicate_type: "https://spdx.dev/Document".into(),
            predicate_sha256: "ab".into(),
            equals: equals.map(str::to_string),
            provenance: provenance.map(str::to_string),
            predicate: serde_json::Value::Null,
        };
        let verified = Verified {
            reference: "r/x@sha256:1".into(),
            digest: "sha256:1".into(),
            public_key: "cosign.pub".into(),
            key_sha256: "cd".into(),
            signatures: 2,
            attestations: vec![
                attestation(Some("sbom.spdx.json"), None),
                attestation(None, Some("of `base`")),
            ],
            tlog: false,
        };
        assert_eq!(
            verified.render(),
            "verified r/x@sha256:1: 2 signature(s) by cosign.pub (key sha256:cd), transparency log not checked\n  attestation https://spdx.dev/Document: predicate sha256:ab, equal to sbom.spdx.json\n  attestation https://spdx.dev/Document: predicate sha256:ab; of `base`\n"
        );
        let logged = Verified {
            tlog: true,
            attestations: Vec::new(),
            ..verified
        };
        assert_eq!(
            logged.render(),
            "verified r/x@sha256:1: 2 signature(s) by cosign.pub (key sha256:cd)\n"
        );
    }
}
