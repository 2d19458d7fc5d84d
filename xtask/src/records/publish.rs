//! The publish record (`out/<image>/publish.json`): what `publish` pushed,
//! signed and attested, and that it verified, for these archive bytes.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::image_dir;
use crate::files::write_atomically;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PublishRecord {
    pub image: String,
    pub archive_sha256: String,
    pub manifest_digest: String,
    /// `registry/repository:tag` as pushed.
    pub pushed: String,
    /// `registry/repository@sha256:…`: what was signed.
    pub pinned: String,
    /// Where the signature and the attestations are stored.
    pub signature: String,
    pub attestations: String,
    pub predicate_types: Vec<String>,
    /// sha256 of the public key (DER) both verified against.
    pub public_key_sha256: String,
    pub tlog: bool,
    /// Gates it was signed without (`all --skip scan --sign-ungated`): empty
    /// for a release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waived_gates: Vec<String>,
}

impl PublishRecord {
    pub fn path(root: &Path, image: &str) -> std::path::PathBuf {
        image_dir(root, image).join("publish.json")
    }

    /// Forget an earlier publish before a new one starts: a record never
    /// outlives a run that did not finish.
    pub fn remove(root: &Path, image: &str) -> Result<()> {
        match std::fs::remove_file(Self::path(root, image)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_atomically(&Self::path(root, &self.image), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saved beside the image's other records, and removed before a new
    /// publish (no record at all is fine; an unremovable one is an error).
    #[test]
    fn a_record_is_saved_in_the_image_folder_and_removed_before_a_new_run() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        PublishRecord::remove(root, "base").unwrap();
        let record = PublishRecord {
            image: "base".into(),
            archive_sha256: "aa".into(),
            manifest_digest: "sha256:bb".into(),
            pushed: "r/base:latest".into(),
            pinned: "r/base@sha256:bb".into(),
            signature: "r/base:sha256-bb.sig".into(),
            attestations: "r/base:sha256-bb.att".into(),
            predicate_types: vec![],
            public_key_sha256: "cc".into(),
            tlog: false,
            waived_gates: vec![],
        };
        record.save(root).unwrap();
        let path = root.join("out/base/publish.json");
        assert_eq!(PublishRecord::path(root, "base"), path);
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["pinned"], "r/base@sha256:bb");
        PublishRecord::remove(root, "base").unwrap();
        assert!(!path.exists());
        // A folder in its place cannot be removed as a file: said, not ignored.
        std::fs::create_dir_all(&path).unwrap();
        assert!(PublishRecord::remove(root, "base").is_err());
    }
}
