//! What a StageX signature says: the signed JSON payload, in either of the two
//! forms StageX has published.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::oci::reference::{is_sha256_hex, ImageRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadForm {
    /// containers/image "simple signing": an object, type `atomic container signature`,
    /// digest `sha256:<hex>`.
    SimpleSigning,
    /// StageX up to release 2025.06: an array of one object, type
    /// `pgp container image signature`, bare hex digest, no tag.
    StagexLegacy,
}

impl std::fmt::Display for PayloadForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PayloadForm::SimpleSigning => "simple-signing",
            PayloadForm::StagexLegacy => "stagex-legacy",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub form: PayloadForm,
    /// `docker-reference` as signed: `stagex/core-musl:1.2.5`.
    pub reference: String,
    /// The repository it names, normalised: `stagex/core-musl`.
    pub repository: String,
    /// Lowercase hex of the manifest digest.
    pub digest_hex: String,
}

/// The signed JSON, read as containers/image reads it: exactly the known
/// keys in `critical` and its sections (an unknown or repeated key is an
/// error, not ignored), `optional` free-form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed {
    critical: Critical,
    #[serde(default)]
    #[allow(dead_code)] // read so that a repeated `optional` is refused too
    optional: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: Image,
    identity: Identity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    reference: String,
}

pub fn parse(bytes: &[u8]) -> Result<Payload> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    // Deserialised straight from the bytes: a map in between would keep the
    // last of two equal keys without a word.
    let (signed, form) = match first {
        Some(b'{') => (
            serde_json::from_slice::<Signed>(bytes).context("the signed payload")?,
            PayloadForm::SimpleSigning,
        ),
        Some(b'[') => {
            let mut items: Vec<Signed> =
                serde_json::from_slice(bytes).context("the signed payload")?;
            if items.len() != 1 {
                bail!(
                    "the signed payload is an array of {} objects; expected one",
                    items.len()
                );
            }
            (items.remove(0), PayloadForm::StagexLegacy)
        }
        _ => bail!("the signed payload is neither a JSON object nor an array"),
    };
    let critical = signed.critical;
    let expected_kind = match form {
        PayloadForm::SimpleSigning => "atomic container signature",
        PayloadForm::StagexLegacy => "pgp container image signature",
    };
    if critical.kind != expected_kind {
        bail!(
            "payload type `{}` does not belong to its form (expected `{expected_kind}`)",
            critical.kind
        );
    }
    let digest = critical.image.digest;
    let digest_hex = match form {
        PayloadForm::SimpleSigning => digest
            .strip_prefix("sha256:")
            .with_context(|| format!("digest `{digest}` is not `sha256:<hex>`"))?,
        PayloadForm::StagexLegacy => digest.strip_prefix("sha256:").unwrap_or(&digest),
    }
    .to_string();
    if !is_sha256_hex(&digest_hex) {
        bail!("digest `{digest}` is not a sha256 digest (64 lowercase hex characters)");
    }
    let reference = critical.identity.reference;
    let named = ImageRef::parse(&reference)?;
    if let Some(pinned) = named.digest_hex() {
        if pinned != digest_hex {
            bail!("docker-reference `{reference}` names another digest than the signed one");
        }
    }
    Ok(Payload {
        form,
        repository: named.signed_repository(),
        reference,
        digest_hex,
    })
}

/// `docker.io/stagex/core-musl:1.2.5` → `stagex/core-musl`: the repository a
/// signature names, Docker Hub's spellings folded into one.
pub fn repository_of(reference: &str) -> Result<String> {
    Ok(ImageRef::parse(reference)?.signed_repository())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";

    #[test]
    fn simple_signing() {
        let text = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"stagex/core-musl:1.2.5"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"atomic container signature"}},"optional":{{}}}}"#
        );
        let payload = parse(text.as_bytes()).unwrap();
        assert_eq!(payload.form, PayloadForm::SimpleSigning);
        assert_eq!(payload.repository, "stagex/core-musl");
        assert_eq!(payload.digest_hex, HEX);
    }

    #[test]
    fn stagex_legacy_from_the_real_index() {
        // A payload exactly as decoded in shared/stagex/signatures/*/INDEX.tsv.
        let text = r#"[{"critical":{"identity":{"docker-reference":"stagex/grep"},"image":{"docker-manifest-digest":"589465adc0125128c21534eb560299c335a41935e0ce182a632f4b739bf25c60"},"type":"pgp container image signature"},"optional":null}]"#;
        let payload = parse(text.as_bytes()).unwrap();
        assert_eq!(payload.form, PayloadForm::StagexLegacy);
        assert_eq!(payload.repository, "stagex/grep");
        assert_eq!(
            payload.digest_hex,
            "589465adc0125128c21534eb560299c335a41935e0ce182a632f4b739bf25c60"
        );
    }

    /// What containers/image refuses, refused here too.
    #[test]
    fn laxities_are_refused() {
        let good = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x:1"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"atomic container signature"}},"optional":{{"creator":"x"}}}}"#
        );
        assert!(parse(good.as_bytes()).is_ok());
        let cases = [
            // the digest repeated, the second one wins in a map
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x"}},"image":{{"docker-manifest-digest":"sha256:{HEX}","docker-manifest-digest":"sha256:{}"}},"type":"atomic container signature"}}}}"#,
                "b".repeat(64)
            ),
            // an unknown key inside critical
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"atomic container signature","extra":1}}}}"#
            ),
            // an unknown top-level key
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"atomic container signature"}},"surprise":true}}"#
            ),
            // uppercase hex
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x"}},"image":{{"docker-manifest-digest":"sha256:{}"}},"type":"atomic container signature"}}}}"#,
                HEX.to_ascii_uppercase()
            ),
            // a reference that pins another digest
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x@sha256:{}"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"atomic container signature"}}}}"#,
                "c".repeat(64)
            ),
        ];
        for case in cases {
            assert!(parse(case.as_bytes()).is_err(), "accepted: {case}");
        }
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"[]").is_err());
        let swapped = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"pgp container image signature"}}}}"#
        );
        assert!(parse(swapped.as_bytes()).is_err());
        let bare = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x"}},"image":{{"docker-manifest-digest":"{HEX}"}},"type":"atomic container signature"}}}}"#
        );
        assert!(parse(bare.as_bytes()).is_err());
    }
}
