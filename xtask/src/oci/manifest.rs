//! OCI (and Docker v2) manifest types, read strictly: every digest is checked
//! against the `sha256:<64 lowercase hex>` grammar and every media type is a
//! plain token, so that nothing read from an archive or a registry can become
//! a path, a URL or a header it should not be.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::reference::is_sha256_hex;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Every manifest kind we read, for `Accept` headers.
pub const MANIFEST_TYPES: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Index {
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest as a registry serves it: an index of manifests, or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyManifest {
    Index(Index),
    Image(Manifest),
}

impl AnyManifest {
    pub fn parse(bytes: &[u8]) -> Result<AnyManifest> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).context("the manifest is not JSON")?;
        let parsed = if value.get("manifests").is_some() {
            let index: Index = serde_json::from_value(value).context("a malformed image index")?;
            index.check()?;
            AnyManifest::Index(index)
        } else {
            let manifest: Manifest =
                serde_json::from_value(value).context("a malformed image manifest")?;
            manifest.check()?;
            AnyManifest::Image(manifest)
        };
        Ok(parsed)
    }

    /// The manifest's own `mediaType`, or what its shape says it is.
    pub fn media_type(&self) -> &str {
        match self {
            AnyManifest::Index(index) => index.media_type.as_deref().unwrap_or(OCI_INDEX),
            AnyManifest::Image(image) => image.media_type.as_deref().unwrap_or(OCI_MANIFEST),
        }
    }
}

impl Descriptor {
    pub fn check(&self) -> Result<()> {
        check_digest(&self.digest)?;
        check_media_type(&self.media_type)
    }
}

impl Index {
    pub fn check(&self) -> Result<()> {
        if let Some(kind) = &self.media_type {
            check_media_type(kind)?;
        }
        self.manifests.iter().try_for_each(Descriptor::check)
    }
}

impl Manifest {
    pub fn check(&self) -> Result<()> {
        if let Some(kind) = &self.media_type {
            check_media_type(kind)?;
        }
        self.config.check()?;
        self.layers.iter().try_for_each(Descriptor::check)
    }

    /// The config first, then the layers: every blob an image needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

pub fn check_digest(digest: &str) -> Result<()> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(()),
        _ => bail!(
            "`{}` is not a sha256 digest (sha256:<64 lowercase hex>)",
            digest.escape_debug()
        ),
    }
}

/// `type/subtype[+suffix][;params]` in visible ASCII: safe as a header value.
pub fn check_media_type(media_type: &str) -> Result<()> {
    let printable = media_type.bytes().all(|b| (0x20..0x7f).contains(&b));
    if media_type.is_empty() || !printable || !media_type.contains('/') {
        bail!("`{}` is not a media type", media_type.escape_debug());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn images_and_indexes() {
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x/config","digest":"{}","size":1}},"layers":[{{"mediaType":"x/layer","digest":"{}","size":2}}]}}"#,
            digest('a'),
            digest('b')
        );
        let parsed = AnyManifest::parse(image.as_bytes()).unwrap();
        assert_eq!(parsed.media_type(), OCI_MANIFEST);
        let AnyManifest::Image(manifest) = parsed else {
            panic!("an image")
        };
        let blobs: Vec<&str> = manifest.blobs().map(|d| d.digest.as_str()).collect();
        assert_eq!(blobs, [digest('a'), digest('b')]);

        let index = format!(
            r#"{{"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3}}]}}"#,
            digest('c')
        );
        assert_eq!(
            AnyManifest::parse(index.as_bytes()).unwrap().media_type(),
            DOCKER_LIST
        );
    }

    /// An index is held to the same rules as an image: a manifest it lists
    /// by a digest that could name a path is refused, as is its own type.
    #[test]
    fn an_index_with_a_hostile_entry_is_refused() {
        let index = |kind: &str, entry: &str| {
            format!(
                r#"{{"mediaType":"{kind}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{entry}","size":3}}]}}"#
            )
        };
        assert!(AnyManifest::parse(index(DOCKER_LIST, &digest('c')).as_bytes()).is_ok());
        let error = AnyManifest::parse(index(DOCKER_LIST, "sha256:../../x").as_bytes())
            .err()
            .unwrap();
        assert!(format!("{error:#}").contains("sha256:../../x"), "{error:#}");
        let error = AnyManifest::parse(index("x\\u0007", &digest('c')).as_bytes())
            .err()
            .unwrap();
        assert!(error.to_string().contains("is not a media type"), "{error}");
    }

    #[test]
    fn hostile_fields_are_refused() {
        let with = |kind: &str, digest: &str| {
            format!(
                r#"{{"mediaType":"{kind}","config":{{"mediaType":"x/c","digest":"{digest}","size":1}},"layers":[]}}"#
            )
        };
        let good = digest('a');
        assert!(AnyManifest::parse(with(OCI_MANIFEST, &good).as_bytes()).is_ok());
        let control = with("application/x\\u0007", &good);
        let error = AnyManifest::parse(control.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("is not a media type"), "{error}");
        for digest in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(128)),
        ] {
            assert!(
                AnyManifest::parse(with(OCI_MANIFEST, &digest).as_bytes()).is_err(),
                "{digest}"
            );
        }
        assert!(AnyManifest::parse(b"not json").is_err());
    }
}
