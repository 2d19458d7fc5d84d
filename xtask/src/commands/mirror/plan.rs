//! Which references to mirror, from where to where: pure.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::oci::reference::ImageRef;

/// One reference to mirror, planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MirrorItem {
    /// The identity StageX signs: `stagex/core-musl`.
    pub repository: String,
    pub digest_hex: String,
    pub tag: Option<String>,
    /// `docker.io/stagex/core-musl@sha256:…`
    pub source: String,
    /// `registry.internal/stagex/core-musl:1.2.5` (or `@sha256:…` without a tag).
    pub target: String,
}

/// Every StageX reference pinned in the Containerfiles, once each.
pub fn pinned_references(catalog: &Catalog) -> Vec<ImageRef> {
    let mut seen = BTreeMap::new();
    for image in &catalog.images {
        for (input, _) in image.stagex_inputs() {
            seen.insert(input.reference.to_string(), input.reference.clone());
        }
    }
    seen.into_values().collect()
}

/// Source and target of each reference; the signed identity is always
/// `stagex/<package>`, wherever the image is pulled from.
pub fn plan(references: &[ImageRef], from: &str, to: &str) -> Result<Vec<MirrorItem>> {
    let from = from.trim_end_matches('/');
    let to = to.trim_end_matches('/');
    if to.is_empty() {
        bail!("--to-prefix: name the internal registry prefix, e.g. registry.internal/stagex");
    }
    let mut items = Vec::new();
    for reference in references {
        let Some(digest_hex) = reference.digest_hex() else {
            bail!("`{reference}` is not pinned by digest: mirror only what signatures can be checked for (REF@sha256:<hex>)");
        };
        let name = reference.name();
        let target = match &reference.tag {
            Some(tag) => format!("{to}/{name}:{tag}"),
            None => format!("{to}/{name}@sha256:{digest_hex}"),
        };
        // Both ends must be valid references before anything is fetched.
        ImageRef::parse(&target)?;
        let source = format!("{from}/{name}@sha256:{digest_hex}");
        ImageRef::parse(&source)?;
        items.push(MirrorItem {
            repository: format!("{}/{name}", settings::STAGEX_NAMESPACE),
            digest_hex: digest_hex.to_string(),
            tag: reference.tag.clone(),
            source,
            target,
        });
    }
    items.sort_by(|a, b| a.target.cmp(&b.target));
    items.dedup();
    Ok(items)
}

pub fn render_plan(items: &[MirrorItem], lookaside: &str) -> String {
    let mut out = format!("signatures from {lookaside}\n");
    for item in items {
        out.push_str(&format!(
            "verify {}@sha256:{}\n  copy {}\n    to {}\n",
            item.repository, item.digest_hex, item.source, item.target
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_mirror_plan() {
        let catalog = Catalog::load(&crate::files::project_root()).unwrap();
        let references = pinned_references(&catalog);
        let items = plan(
            &references,
            settings::UPSTREAM_REGISTRY_PREFIX,
            "registry.internal/stagex",
        )
        .unwrap();
        assert!(items
            .iter()
            .all(|i| i.repository.starts_with("stagex/core-")
                || i.repository.starts_with("stagex/pallet-")
                || i.repository.starts_with("stagex/user-")));
        insta::assert_snapshot!(render_plan(&items, settings::UPSTREAM_LOOKASIDE));
    }

    #[test]
    fn unpinned_references_are_refused() {
        let reference = ImageRef::parse("stagex/core-musl:1.2.5").unwrap();
        let error = plan(&[reference], "docker.io/stagex", "r.internal/stagex").unwrap_err();
        assert!(
            error.to_string().contains("not pinned by digest"),
            "{error}"
        );
    }
}
