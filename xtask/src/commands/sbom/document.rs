//! What we know an image is made of, before it is written as SPDX or
//! CycloneDX: the image, the StageX packages (and images of ours) it was built
//! from, and every regular file of its final filesystem with the package that
//! put it there. Pure: the same inputs give the same document.

use std::collections::BTreeMap;

use super::attribution::{FinalStage, Source};
use crate::model::catalog::Image;
use crate::model::cpes::CpeMap;
use crate::oci::reference::ImageRef;
use crate::oci::rootfs::Rootfs;
use crate::records::build::BuildRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub image: String,
    /// `sha256:<hex>` of the image manifest.
    pub digest: String,
    /// SOURCE_DATE_EPOCH of the build: the document's creation time.
    pub created: u64,
    pub tool_version: String,
    pub packages: Vec<Package>,
    pub files: Vec<File>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PackageKind {
    /// A StageX package whose files are in the image.
    Contained,
    /// A StageX package used only to build (a compiler stage).
    BuildTool,
    /// An image of this repository the image is built on.
    OurImage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Unique within the document: the package or image name.
    pub name: String,
    pub kind: PackageKind,
    /// The pinned version tag, when there is one.
    pub version: Option<String>,
    /// `sha256:<hex>` of the package's (or image's) manifest.
    pub digest: String,
    pub purl: String,
    pub cpe: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative to the image's root, no leading `./`.
    pub path: String,
    pub sha256: String,
    pub sha1: String,
    pub size: u64,
    /// The package whose layer left this file, when one did.
    pub from: Option<String>,
}

/// `pkg:oci/<name>@sha256%3A<hex>[?repository_url=…][&tag=…]`, per the purl spec.
pub fn oci_purl(
    name: &str,
    digest: &str,
    repository_url: Option<&str>,
    tag: Option<&str>,
) -> String {
    let mut purl = format!("pkg:oci/{name}@{}", digest.replace(':', "%3A"));
    let mut qualifiers = Vec::new();
    if let Some(url) = repository_url {
        qualifiers.push(format!("repository_url={url}"));
    }
    if let Some(tag) = tag {
        qualifiers.push(format!("tag={tag}"));
    }
    if !qualifiers.is_empty() {
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
    }
    purl
}

/// Everything the document is made from.
pub struct Inputs<'a> {
    pub image: &'a Image,
    pub record: &'a BuildRecord,
    pub rootfs: &'a Rootfs,
    /// One source per layer (see [`super::attribution`]).
    pub layers: &'a [Source],
    pub cpes: &'a CpeMap,
    /// Versions the release lists, by package.
    pub versions: &'a BTreeMap<String, String>,
}

pub fn document(inputs: &Inputs) -> Document {
    let Inputs {
        image,
        record,
        rootfs,
        layers,
        cpes,
        versions,
    } = inputs;
    // Where each StageX image was pulled from: the build record's own
    // references (a `--registry` mirror included), else the Containerfile's.
    let pulled_from: BTreeMap<String, String> = record
        .stagex_inputs
        .iter()
        .filter_map(|text| ImageRef::parse(text).ok())
        .map(|reference| (reference.name().to_string(), reference.repository_url()))
        .collect();
    // Contained: the final stage starts from it or copies from it, read from
    // the Containerfile (not from how well the history matched). When the
    // final stage cannot be read, every input counts as contained: a package
    // is never left out of a scan on a guess.
    let contained = FinalStage::of(image).map(|stage| stage.packages());
    let mut packages: BTreeMap<String, Package> = BTreeMap::new();
    for (input, package) in image.stagex_inputs() {
        let Some(digest) = input.reference.digest.clone() else {
            continue;
        };
        let version = input
            .reference
            .tag
            .clone()
            .filter(|tag| tag != "latest")
            .or_else(|| versions.get(package).cloned());
        let kind = match &contained {
            Some(contained) if !contained.contains(package) => PackageKind::BuildTool,
            _ => PackageKind::Contained,
        };
        packages.insert(
            package.to_string(),
            Package {
                name: package.to_string(),
                kind,
                cpe: cpes.cpe(package, version.as_deref()),
                purl: oci_purl(
                    package,
                    &digest,
                    Some(
                        &pulled_from
                            .get(package)
                            .cloned()
                            .unwrap_or_else(|| input.reference.repository_url()),
                    ),
                    version.as_deref(),
                ),
                version,
                digest,
            },
        );
    }
    for built_on in &record.built_on {
        packages.insert(
            built_on.image.clone(),
            Package {
                name: built_on.image.clone(),
                kind: PackageKind::OurImage,
                version: None,
                digest: built_on.manifest_digest.clone(),
                purl: oci_purl(&built_on.image, &built_on.manifest_digest, None, None),
                cpe: None,
            },
        );
    }
    let files = rootfs
        .files()
        .filter_map(|(path, entry)| {
            let from = match layers.get(entry.layer) {
                Some(Source::Package(package)) | Some(Source::OurImage(package)) => {
                    packages.contains_key(package).then(|| package.clone())
                }
                _ => None,
            };
            Some(File {
                path: path.clone(),
                sha256: entry.sha256.clone()?,
                sha1: entry.sha1.clone()?,
                size: entry.size,
                from,
            })
        })
        .collect();
    Document {
        image: record.image.clone(),
        digest: record.manifest_digest.clone(),
        created: record.source_date_epoch,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        packages: packages.into_values().collect(),
        files,
    }
}

/// The sha256 of a rendered document (compact JSON, keys sorted): what its
/// namespace or serial number is derived from, before either is set.
pub fn content_hash(value: &serde_json::Value) -> String {
    crate::hash::hex_sha256(&serde_json::to_vec(value).unwrap_or_default())
}

impl Document {
    /// The image's own purl.
    pub fn purl(&self) -> String {
        oci_purl(&self.image, &self.digest, None, None)
    }

    pub fn digest_hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_follow_the_spec() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            oci_purl(
                "core-musl",
                &digest,
                Some("docker.io/stagex/core-musl"),
                Some("1.2.5")
            ),
            format!(
                "pkg:oci/core-musl@sha256%3A{}?repository_url=docker.io/stagex/core-musl&tag=1.2.5",
                "ab".repeat(32)
            )
        );
        assert_eq!(
            oci_purl("base", &digest, None, None),
            format!("pkg:oci/base@sha256%3A{}", "ab".repeat(32))
        );
    }
}
