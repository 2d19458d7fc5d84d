//! The record every gate step (sbom, scan, malcontent, …) leaves beside the
//! build record, tied to the archive bytes it looked at, and the check that
//! a set of gates passed for the bytes about to be shipped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::build::BuildRecord;
use super::image_dir;
use crate::files::write_atomically;
use crate::report::Outcome;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub image: String,
    pub step: String,
    /// The archive bytes the step looked at.
    pub archive_sha256: String,
    pub manifest_digest: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// One line for people: counts, the highest finding, …
    pub summary: String,
    /// What the step wrote, relative to the checkout.
    pub artefacts: Vec<String>,
}

pub fn step_record_path(root: &Path, image: &str, step: &str) -> PathBuf {
    image_dir(root, image).join(format!("{step}.json"))
}

impl StepRecord {
    pub fn new(build: &BuildRecord, step: &str, outcome: Outcome, summary: String) -> StepRecord {
        StepRecord {
            image: build.image.clone(),
            step: step.to_string(),
            archive_sha256: build.archive_sha256.clone(),
            manifest_digest: build.manifest_digest.clone(),
            outcome,
            summary,
            artefacts: Vec::new(),
        }
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_atomically(
            &step_record_path(root, &self.image, &self.step),
            text.as_bytes(),
        )
    }

    /// The record of `step` for `image`, if the step ran.
    pub fn load(root: &Path, image: &str, step: &str) -> Result<Option<StepRecord>> {
        let path = step_record_path(root, image, step);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} is not a step record", path.display())
                })?))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// What keeps each of `gates` from letting `build`'s archive through: a gate
/// that did not run, ran on other bytes, or did not pass. Empty: all passed.
pub fn unmet_gates(root: &Path, build: &BuildRecord, gates: &[&str]) -> Result<Vec<String>> {
    let mut unmet = Vec::new();
    for gate in gates {
        match StepRecord::load(root, &build.image, gate)? {
            None => unmet.push(format!(
                "{gate} has not run (`cargo xtask {gate} {}`)",
                build.image
            )),
            Some(record) if record.archive_sha256 != build.archive_sha256 => unmet.push(format!(
                "{gate} ran on other bytes than out/{}/image.tar: run it again",
                build.image
            )),
            Some(record) => match record.outcome {
                Outcome::Passed => {}
                Outcome::Failed(why) => unmet.push(format!("{gate} failed: {why}")),
                Outcome::Skipped(why) => unmet.push(format!("{gate} was skipped: {why}")),
            },
        }
    }
    Ok(unmet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(sha256: &str) -> BuildRecord {
        BuildRecord {
            image: "base".into(),
            containerfile: "base/Containerfile".into(),
            containerfile_sha256: String::new(),
            manifest_digest: "sha256:00".into(),
            archive: "out/base/image.tar".into(),
            archive_sha256: sha256.into(),
            archive_size: 0,
            source_date_epoch: 0,
            registry_prefix: "stagex".into(),
            network: false,
            stagex_inputs: vec![],
            built_on: vec![],
            sources: vec![],
        }
    }

    #[test]
    fn a_gate_is_met_only_by_a_passing_record_of_the_same_bytes() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let current = build("aa");
        let gates = ["sbom", "scan", "malcontent"];
        let unmet = unmet_gates(root, &current, &gates).unwrap();
        assert_eq!(unmet.len(), 3);
        assert_eq!(unmet[0], "sbom has not run (`cargo xtask sbom base`)");

        StepRecord::new(&current, "sbom", Outcome::Passed, String::new())
            .save(root)
            .unwrap();
        StepRecord::new(&build("bb"), "scan", Outcome::Passed, String::new())
            .save(root)
            .unwrap();
        StepRecord::new(
            &current,
            "malcontent",
            Outcome::Failed("risky".into()),
            String::new(),
        )
        .save(root)
        .unwrap();
        assert_eq!(
            unmet_gates(root, &current, &gates).unwrap(),
            [
                "scan ran on other bytes than out/base/image.tar: run it again",
                "malcontent failed: risky",
            ]
        );
        StepRecord::new(
            &current,
            "scan",
            Outcome::Skipped("no".into()),
            String::new(),
        )
        .save(root)
        .unwrap();
        assert_eq!(
            unmet_gates(root, &current, &["scan"]).unwrap(),
            ["scan was skipped: no"]
        );
        assert!(unmet_gates(root, &current, &["sbom"]).unwrap().is_empty());
        // A record that is not one is an error, not a gate passed.
        std::fs::write(step_record_path(root, "base", "sbom"), "{}").unwrap();
        assert!(unmet_gates(root, &current, &["sbom"]).is_err());
    }
}
