//! What a StageX signature says: the signed JSON payload, in either of the two
//! forms StageX has published.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::oci::reference::{is_sha256_hex, ImageRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

/// The signed JSON, read as containers/image reads it: exactly the keys
/// `critical` and `optional`, exactly the known keys in `critical` and its
/// sections (an unknown or repeated key is an error, not ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed {
    critical: Critical,
    // A plain field of a type read as an option would be `null` when
    // missing; through `deserialize_with` a missing one is an error.
    #[serde(deserialize_with = "Optional::deserialize")]
    optional: Optional,
}

/// `optional` as containers/image reads it (`strictUnmarshalJSON`): present,
/// an object whose keys each come once, `creator` a string and `timestamp` an
/// integer when they are there, other keys ignored. StageX's legacy payloads
/// all say `"optional":null`: that form alone may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Optional {
    Null,
    Object,
}

impl<'de> Deserialize<'de> for Optional {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_option(OptionalVisitor)
    }
}

struct OptionalVisitor;

impl<'de> serde::de::Visitor<'de> for OptionalVisitor {
    type Value = Optional;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("`optional`: an object")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Optional, E> {
        Ok(Optional::Null)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Optional, E> {
        Ok(Optional::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, inner: D) -> Result<Optional, D::Error> {
        inner.deserialize_map(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Optional, A::Error> {
        use serde::de::Error as _;
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "creator" => {
                    map.next_value::<String>()
                        .map_err(|e| A::Error::custom(format!("`optional.creator`: {e}")))?;
                }
                "timestamp" => {
                    let number: serde_json::Number = map
                        .next_value()
                        .map_err(|e| A::Error::custom(format!("`optional.timestamp`: {e}")))?;
                    let integral = number.is_i64()
                        || number
                            .as_f64()
                            .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.2e18);
                    if !integral {
                        return Err(A::Error::custom(format!(
                            "`optional.timestamp` is {number}, not an integer"
                        )));
                    }
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!(
                    "`optional` has the key `{key}` twice"
                )));
            }
        }
        Ok(Optional::Object)
    }
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
    if form == PayloadForm::SimpleSigning && signed.optional == Optional::Null {
        bail!("`optional` is null: containers/image requires an object (only StageX's legacy array form says null)");
    }
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

    /// A simple-signing payload with these `critical` contents and this
    /// `optional`, as raw JSON text.
    fn signed(critical: &str, optional: &str) -> String {
        format!(r#"{{"critical":{{{critical}}},"optional":{optional}}}"#)
    }

    fn critical(reference: &str, digest: &str) -> String {
        format!(
            r#""identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"atomic container signature""#
        )
    }

    /// What containers/image refuses, refused here too.
    #[test]
    fn laxities_are_refused() {
        let good_critical = critical("stagex/x:1", &format!("sha256:{HEX}"));
        for optional in [
            r#"{}"#,
            r#"{"creator":"x"}"#,
            r#"{"creator":"x","timestamp":1700000000,"other":[1,{"a":2}]}"#,
            r#"{"timestamp":1.7e9}"#,
        ] {
            let good = signed(&good_critical, optional);
            assert!(parse(good.as_bytes()).is_ok(), "refused: {good}");
        }
        let cases = [
            // the digest repeated, the second one wins in a map
            signed(
                &format!(
                    r#""identity":{{"docker-reference":"stagex/x"}},"image":{{"docker-manifest-digest":"sha256:{HEX}","docker-manifest-digest":"sha256:{}"}},"type":"atomic container signature""#,
                    "b".repeat(64)
                ),
                "{}",
            ),
            // an unknown key inside critical
            signed(&format!("{good_critical},\"extra\":1"), "{}"),
            // a repeated key inside critical
            signed(
                &format!("{good_critical},\"type\":\"atomic container signature\""),
                "{}",
            ),
            // an unknown top-level key
            format!(r#"{{"critical":{{{good_critical}}},"optional":{{}},"surprise":true}}"#),
            // `optional` missing, repeated, null, or not an object
            format!(r#"{{"critical":{{{good_critical}}}}}"#),
            format!(r#"{{"critical":{{{good_critical}}},"optional":{{}},"optional":{{}}}}"#),
            signed(&good_critical, "null"),
            signed(&good_critical, "5"),
            signed(&good_critical, r#""x""#),
            signed(&good_critical, "[]"),
            // inside `optional`: a repeated key, a creator that is no string,
            // a timestamp that is no integer
            signed(&good_critical, r#"{"creator":"a","creator":"b"}"#),
            signed(&good_critical, r#"{"other":1,"other":2}"#),
            signed(&good_critical, r#"{"creator":5}"#),
            signed(&good_critical, r#"{"timestamp":1.5}"#),
            signed(&good_critical, r#"{"timestamp":"1700000000"}"#),
            // uppercase hex
            signed(
                &critical("stagex/x", &format!("sha256:{}", HEX.to_ascii_uppercase())),
                "{}",
            ),
            // a reference that pins another digest
            signed(
                &critical(
                    &format!("stagex/x@sha256:{}", "c".repeat(64)),
                    &format!("sha256:{HEX}"),
                ),
                "{}",
            ),
        ];
        for case in cases {
            assert!(parse(case.as_bytes()).is_err(), "accepted: {case}");
        }
        let error = parse(signed(&good_critical, r#"{"creator":"a","creator":"b"}"#).as_bytes())
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("`optional` has the key `creator` twice"),
            "{error:#}"
        );
        let missing = format!(r#"{{"critical":{{{good_critical}}}}}"#);
        let error = parse(missing.as_bytes()).unwrap_err();
        assert!(
            format!("{error:#}").contains("missing field `optional`"),
            "{error:#}"
        );
    }

    /// StageX's legacy form keeps its `"optional":null`, and is as strict as
    /// the other otherwise.
    #[test]
    fn the_legacy_form_alone_may_say_null() {
        let legacy = |optional: &str| {
            format!(
                r#"[{{"critical":{{"identity":{{"docker-reference":"stagex/grep"}},"image":{{"docker-manifest-digest":"{HEX}"}},"type":"pgp container image signature"}},"optional":{optional}}}]"#
            )
        };
        assert!(parse(legacy("null").as_bytes()).is_ok());
        assert!(parse(legacy("{}").as_bytes()).is_ok());
        for bad in ["5", r#"{"creator":"a","creator":"b"}"#] {
            assert!(parse(legacy(bad).as_bytes()).is_err(), "{bad}");
        }
        let error = parse(legacy(r#""x""#).as_bytes()).unwrap_err();
        assert!(
            format!("{error:#}")
                .contains(r#"invalid type: string "x", expected `optional`: an object"#),
            "{error:#}"
        );
        // A timestamp is an integer within i64's range, however it is spelt.
        assert!(parse(legacy(r#"{"timestamp":9.1e18}"#).as_bytes()).is_ok());
        assert!(parse(legacy(r#"{"timestamp":9.2e18}"#).as_bytes()).is_err());
        let missing = format!(
            r#"[{{"critical":{{"identity":{{"docker-reference":"stagex/grep"}},"image":{{"docker-manifest-digest":"{HEX}"}},"type":"pgp container image signature"}}}}]"#
        );
        assert!(parse(missing.as_bytes()).is_err());
    }

    /// The forms as reports name them.
    #[test]
    fn forms_are_named_as_in_reports() {
        assert_eq!(PayloadForm::SimpleSigning.to_string(), "simple-signing");
        assert_eq!(PayloadForm::StagexLegacy.to_string(), "stagex-legacy");
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert!(parse(b"not json").is_err());
        assert!(parse(b"[]").is_err());
        let swapped = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"stagex/x"}},"image":{{"docker-manifest-digest":"sha256:{HEX}"}},"type":"pgp container image signature"}},"optional":{{}}}}"#
        );
        let error = parse(swapped.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("does not belong"), "{error:#}");
        let bare = signed(&critical("stagex/x", HEX), "{}");
        let error = parse(bare.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("is not `sha256:<hex>`"),
            "{error:#}"
        );
    }
}
