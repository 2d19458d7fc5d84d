//! Pins, judged and moved, pure: every StageX pin of the catalog, its state
//! against what a release list or a registry says now, and the Containerfile
//! text with the chosen pins rewritten (nothing else on the line touched).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::model::catalog::Catalog;
use crate::model::release::Release;

/// One package as the Containerfiles pin it, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Pin {
    pub package: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: String,
    /// `file:line` of every place that pins it so.
    pub places: Vec<String>,
    pub images: Vec<String>,
}

/// What the source of truth says of a pin now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum State {
    Current,
    Outdated {
        #[serde(rename = "new_tag")]
        tag: Option<String>,
        #[serde(rename = "new_digest")]
        digest: String,
    },
    /// Not in the release list, or the tag is gone from the registry.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Judged {
    #[serde(flatten)]
    pub pin: Pin,
    #[serde(flatten)]
    pub state: State,
}

/// Every distinct StageX pin (package, tag, digest) of the catalog.
pub fn pins(catalog: &Catalog) -> Vec<Pin> {
    let mut found: BTreeMap<(String, Option<String>, String), Pin> = BTreeMap::new();
    for image in &catalog.images {
        for (input, package) in image.stagex_inputs() {
            let Some(digest) = input.reference.digest.clone() else {
                continue;
            };
            let key = (
                package.to_string(),
                input.reference.tag.clone(),
                digest.clone(),
            );
            let pin = found.entry(key).or_insert_with(|| Pin {
                package: package.to_string(),
                tag: input.reference.tag.clone(),
                digest,
                places: Vec::new(),
                images: Vec::new(),
            });
            pin.places
                .push(format!("{}:{}", image.containerfile_path(), input.line));
            if !pin.images.contains(&image.name) {
                pin.images.push(image.name.clone());
            }
        }
    }
    found.into_values().collect()
}

/// A pin against a release list: the package's digest (and version) there.
pub fn against_release(pin: &Pin, release: &Release) -> State {
    match release.package(&pin.package) {
        None => State::Missing,
        Some(package) => {
            let digest = format!("sha256:{}", package.digest);
            // A list without versions (StageX's own *.txt) judges by digest.
            let version_holds = package.version.is_none() || package.version == pin.tag;
            if digest == pin.digest && version_holds {
                State::Current
            } else {
                State::Outdated {
                    tag: package.version.clone(),
                    digest,
                }
            }
        }
    }
}

/// A pin against the digest its tag resolves to on a registry (`None`: the
/// tag is not there).
pub fn against_registry(pin: &Pin, resolved: Option<&str>) -> State {
    match resolved {
        None => State::Missing,
        Some(digest) if digest == pin.digest => State::Current,
        Some(digest) => State::Outdated {
            tag: pin.tag.clone(),
            digest: digest.to_string(),
        },
    }
}

/// `/package[:tag]@sha256:<hex>`, as a Containerfile writes a pin after its
/// registry prefix.
fn written(package: &str, tag: Option<&str>, digest: &str) -> String {
    match tag {
        Some(tag) => format!("/{package}:{tag}@{digest}"),
        None => format!("/{package}@{digest}"),
    }
}

/// `text` (a Containerfile at `path`) with `pin` moved to `tag`/`digest` on
/// each of its lines; the count of lines changed. A line that names the pin
/// but not as expected is an error, not a guess.
pub fn rewrite(
    path: &str,
    text: &str,
    pin: &Pin,
    tag: Option<&str>,
    digest: &str,
) -> Result<(String, usize)> {
    let old = written(&pin.package, pin.tag.as_deref(), &pin.digest);
    let new = written(&pin.package, tag, digest);
    let lines: Vec<usize> = pin
        .places
        .iter()
        .filter_map(|place| place.strip_prefix(&format!("{path}:")))
        .filter_map(|line| line.parse().ok())
        .collect();
    let mut changed = 0;
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if lines.contains(&(index + 1)) {
            if line.matches(&old).count() != 1 {
                bail!(
                    "{path}:{}: expected `{old}` once on this line: edit it by hand, or rerun `cargo xtask pins check`",
                    index + 1
                );
            }
            out.push_str(&line.replacen(&old, &new, 1));
            changed += 1;
        } else {
            out.push_str(line);
        }
    }
    Ok((out, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(tag: Option<&str>) -> Pin {
        Pin {
            package: "core-musl".into(),
            tag: tag.map(str::to_string),
            digest: format!("sha256:{}", "a".repeat(64)),
            places: vec!["base/Containerfile:3".into()],
            images: vec!["base".into()],
        }
    }

    #[test]
    fn only_the_pin_moves_comments_and_layout_stay() {
        let text = format!(
            "# base: musl\nARG STAGEX_REGISTRY=stagex\nFROM ${{STAGEX_REGISTRY}}/core-musl:1.2.5@sha256:{} AS musl  # the libc\nCOPY --from=musl . /\n",
            "a".repeat(64)
        );
        let new = format!("sha256:{}", "b".repeat(64));
        let (out, changed) = rewrite(
            "base/Containerfile",
            &text,
            &pin(Some("1.2.5")),
            Some("1.2.6"),
            &new,
        )
        .unwrap();
        assert_eq!(changed, 1);
        assert_eq!(
            out,
            text.replace(
                &format!("core-musl:1.2.5@sha256:{}", "a".repeat(64)),
                &format!("core-musl:1.2.6@{new}")
            )
        );
        // A line that no longer says what the pin says is refused.
        let error = rewrite("base/Containerfile", &text, &pin(None), None, &new).unwrap_err();
        assert!(
            error.to_string().contains("base/Containerfile:3"),
            "{error}"
        );
    }

    #[test]
    fn states() {
        let current = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            against_registry(&pin(Some("1.2.5")), Some(&current)),
            State::Current
        );
        assert_eq!(against_registry(&pin(Some("1.2.5")), None), State::Missing);
        assert_eq!(
            against_registry(&pin(Some("1.2.5")), Some("sha256:b")),
            State::Outdated {
                tag: Some("1.2.5".into()),
                digest: "sha256:b".into()
            }
        );
    }
}
