//! What a StageX signature says: the signed JSON payload, in either of the two
//! forms StageX has published.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::oci::reference::ImageRef;

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

pub fn parse(bytes: &[u8]) -> Result<Payload> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).context("the signed payload is not JSON")?;
    let (object, form) = match &value {
        serde_json::Value::Object(_) => (&value, PayloadForm::SimpleSigning),
        serde_json::Value::Array(items) if items.len() == 1 => {
            (&items[0], PayloadForm::StagexLegacy)
        }
        serde_json::Value::Array(items) => {
            bail!(
                "the signed payload is an array of {} objects; expected one",
                items.len()
            )
        }
        _ => bail!("the signed payload is neither an object nor an array"),
    };
    let critical = object
        .get("critical")
        .context("the signed payload has no `critical` section")?;
    let kind = critical["type"].as_str().unwrap_or_default();
    let expected_kind = match form {
        PayloadForm::SimpleSigning => "atomic container signature",
        PayloadForm::StagexLegacy => "pgp container image signature",
    };
    if kind != expected_kind {
        bail!("payload type `{kind}` does not belong to its form (expected `{expected_kind}`)");
    }
    let reference = critical["identity"]["docker-reference"]
        .as_str()
        .context("the signed payload has no critical.identity.docker-reference")?
        .to_string();
    let digest = critical["image"]["docker-manifest-digest"]
        .as_str()
        .context("the signed payload has no critical.image.docker-manifest-digest")?;
    let digest_hex = match form {
        PayloadForm::SimpleSigning => digest
            .strip_prefix("sha256:")
            .with_context(|| format!("digest `{digest}` is not `sha256:<hex>`"))?,
        PayloadForm::StagexLegacy => digest.strip_prefix("sha256:").unwrap_or(digest),
    }
    .to_ascii_lowercase();
    if digest_hex.len() != 64 || !digest_hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("digest `{digest}` is not a sha256 digest");
    }
    Ok(Payload {
        form,
        repository: repository_of(&reference)?,
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
