//! Build records (`out/<image>/build.json`): what `build` made, read by every later
//! step, which refuses an archive whose bytes no longer match.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::record_path;
use crate::error::fail;
use crate::files::write_atomically;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BuildRecord {
    pub image: String,
    pub containerfile: String,
    pub containerfile_sha256: String,
    /// `sha256:<hex>` of the image manifest: what a registry will report.
    pub manifest_digest: String,
    /// Relative to the checkout: `out/<image>/image.tar`.
    pub archive: String,
    pub archive_sha256: String,
    pub archive_size: u64,
    pub source_date_epoch: u64,
    /// The StageX registry prefix the inputs were pulled through.
    pub registry_prefix: String,
    pub network: bool,
    /// StageX references as pulled (after `ARG` substitution).
    pub stagex_inputs: Vec<String>,
    /// Our images this one builds on, by the digest that was supplied.
    pub built_on: Vec<BuiltOn>,
    pub sources: Vec<SourceInput>,
    /// What `check-runtime` found when the image was built (absent for
    /// packages that are never started, and in records written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeRecord>,
    /// The Docker engine and buildx that built it (absent in records
    /// written before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<BuilderVersions>,
    /// The checkout's commit when it was built (absent outside a git checkout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_commit: Option<String>,
}

/// Which engine and buildx made an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BuilderVersions {
    /// `docker version`'s server version.
    pub engine: String,
    /// `docker buildx version`'s version.
    pub buildx: String,
}

/// The runtime check's result, as the build record keeps it: only images
/// that passed are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuntimeRecord {
    /// What the runtime executes, and the program that resolves to.
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub elf_files: usize,
    pub programs: usize,
    pub libraries: usize,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BuiltOn {
    pub image: String,
    pub manifest_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SourceInput {
    pub context: String,
    pub git: String,
    pub tag: String,
    pub commit: String,
}

impl BuildRecord {
    /// The record of `image`; a missing one is a failed prerequisite (exit 1).
    pub fn load(root: &Path, image: &str) -> Result<BuildRecord> {
        let path = record_path(root, image);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return fail(format!(
                    "no build record {} for `{image}`: run `cargo xtask build {image}` first",
                    path.display()
                ))
            }
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a build record", path.display()))
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_atomically(&record_path(root, &self.image), text.as_bytes())
    }

    /// A record for unit tests: `image` built into an archive of `sha256`.
    #[cfg(test)]
    pub fn example(image: &str, sha256: &str) -> BuildRecord {
        BuildRecord {
            image: image.into(),
            containerfile: format!("{image}/Containerfile"),
            containerfile_sha256: String::new(),
            manifest_digest: format!("sha256:{}", "0".repeat(64)),
            archive: format!("out/{image}/image.tar"),
            archive_sha256: sha256.into(),
            archive_size: 0,
            source_date_epoch: 0,
            registry_prefix: "stagex".into(),
            network: false,
            stagex_inputs: vec![],
            built_on: vec![],
            sources: vec![],
            runtime: None,
            builder: None,
            checkout_commit: None,
        }
    }

    /// Refuse when the Containerfile is not the one this image was built
    /// from: what is read from it (inputs, stages) would describe other bytes.
    pub fn check_containerfile(&self, root: &Path) -> Result<()> {
        let path = root.join(&self.containerfile);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if crate::hash::hex_sha256(&bytes) != self.containerfile_sha256 {
            return fail(format!(
                "{} changed after {} was built from it: rebuild it with `cargo xtask build {}`",
                self.containerfile, self.archive, self.image
            ));
        }
        Ok(())
    }

    /// The archive path, after checking its bytes are the ones this record describes.
    pub fn verified_archive(&self, root: &Path) -> Result<PathBuf> {
        let path = root.join(&self.archive);
        let actual = crate::hash::file_sha256(&path)
            .with_context(|| format!("reading the archive of `{}`", self.image))?;
        if actual != self.archive_sha256 {
            return fail(format!(
                "{} has sha256 {actual}, but its build record says {}: the archive changed after it was built; rebuild it with `cargo xtask build {}`",
                path.display(),
                self.archive_sha256,
                self.image
            ));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing record is a failed prerequisite naming the build to run;
    /// one that cannot be read for another reason is not (exit 2).
    #[test]
    fn a_missing_record_says_which_build_to_run() {
        let root = tempfile::tempdir().unwrap();
        let error = BuildRecord::load(root.path(), "base").unwrap_err();
        assert!(crate::error::is_failure(&error), "{error:#}");
        assert!(
            error
                .to_string()
                .contains("run `cargo xtask build base` first"),
            "{error:#}"
        );
        // A folder where the record should be: unreadable, not missing.
        std::fs::create_dir_all(record_path(root.path(), "base")).unwrap();
        let error = BuildRecord::load(root.path(), "base").unwrap_err();
        assert!(!crate::error::is_failure(&error), "{error:#}");
        assert!(format!("{error:#}").starts_with("reading "), "{error:#}");
    }

    /// The Containerfile and the archive must be the bytes the record
    /// names; any other bytes are refused, naming the file.
    #[test]
    fn the_containerfile_and_the_archive_are_checked_against_the_record() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        std::fs::create_dir_all(root.join("base")).unwrap();
        std::fs::create_dir_all(root.join("out/base")).unwrap();
        std::fs::write(root.join("base/Containerfile"), "FROM scratch\n").unwrap();
        std::fs::write(root.join("out/base/image.tar"), "archive").unwrap();
        let mut record = BuildRecord::example("base", &crate::hash::hex_sha256(b"archive"));
        record.containerfile_sha256 = crate::hash::hex_sha256(b"FROM scratch\n");
        record.save(root).unwrap();
        let record = BuildRecord::load(root, "base").unwrap();
        record.check_containerfile(root).unwrap();
        assert_eq!(
            record.verified_archive(root).unwrap(),
            root.join("out/base/image.tar")
        );
        std::fs::write(root.join("base/Containerfile"), "FROM other\n").unwrap();
        let error = record.check_containerfile(root).unwrap_err().to_string();
        assert!(
            error.contains("base/Containerfile changed after"),
            "{error}"
        );
        std::fs::write(root.join("out/base/image.tar"), "archivf").unwrap();
        let error = record.verified_archive(root).unwrap_err().to_string();
        assert!(
            error.contains("the archive changed after it was built"),
            "{error}"
        );
    }
}
