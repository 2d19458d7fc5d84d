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
