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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// The last day (`YYYY-MM-DD`, UTC) a pass holds, when it rests on
    /// something that expires (scan's ignore entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
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
            valid_until: None,
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

/// Run one step for `image` and leave its record whatever happens: `run`
/// saves its own; when it fails, a failed record for the archive (or, without
/// a build record, none at all) replaces what an earlier run left, so an
/// older passing record never outlives a run that did not pass.
pub fn leave_record<T>(
    root: &Path,
    image: &str,
    step: &str,
    run: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let result = run();
    if let Err(error) = &result {
        match BuildRecord::load(root, image) {
            Ok(build) => StepRecord::new(
                &build,
                step,
                Outcome::Failed(format!("{error:#}")),
                "did not finish".into(),
            )
            .save(root)?,
            Err(_) => match std::fs::remove_file(step_record_path(root, image, step)) {
                Err(gone) if gone.kind() == std::io::ErrorKind::NotFound => {}
                removed => removed
                    .with_context(|| format!("removing the stale {step} record of `{image}`"))?,
            },
        }
    }
    result
}

/// What keeps each of `gates` from letting `build`'s archive through: a gate
/// that did not run, ran on other bytes, or did not pass. Empty: all passed.
pub fn unmet_gates(root: &Path, build: &BuildRecord, gates: &[&str]) -> Result<Vec<String>> {
    unmet_gates_on(root, build, gates, &crate::time::today())
}

/// [`unmet_gates`] on the day `today` (`YYYY-MM-DD`).
fn unmet_gates_on(
    root: &Path,
    build: &BuildRecord,
    gates: &[&str],
    today: &str,
) -> Result<Vec<String>> {
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
                Outcome::Passed => {
                    if let Some(until) = record
                        .valid_until
                        .as_ref()
                        .filter(|until| until.as_str() < today)
                    {
                        unmet.push(format!(
                            "{gate} passed on ignore entries that expired after {until}: run it again"
                        ));
                    }
                }
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

    /// A record that cannot be read is an error, not a step that never ran.
    #[test]
    fn an_unreadable_record_is_not_a_missing_one() {
        let root = tempfile::tempdir().unwrap();
        assert!(StepRecord::load(root.path(), "base", "scan")
            .unwrap()
            .is_none());
        std::fs::create_dir_all(step_record_path(root.path(), "base", "scan")).unwrap();
        let error = StepRecord::load(root.path(), "base", "scan").unwrap_err();
        assert!(format!("{error:#}").starts_with("reading "), "{error:#}");
    }

    /// Without a build record, a failed step removes what an earlier run
    /// left (nothing there is fine; what cannot be removed is said).
    #[test]
    fn a_failed_step_without_a_build_leaves_no_record() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let failing = || -> Result<()> { anyhow::bail!("the step broke") };
        let error = leave_record(root, "base", "scan", failing).unwrap_err();
        assert_eq!(error.to_string(), "the step broke");
        let stale = step_record_path(root, "base", "scan");
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        std::fs::write(&stale, "{}").unwrap();
        let error = leave_record(root, "base", "scan", failing).unwrap_err();
        assert_eq!(error.to_string(), "the step broke");
        assert!(!stale.exists());
        std::fs::create_dir_all(&stale).unwrap();
        let error = leave_record(root, "base", "scan", failing).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("removing the stale scan record of `base`"),
            "{error:#}"
        );
    }

    fn build(sha256: &str) -> BuildRecord {
        BuildRecord::example("base", sha256)
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
        // A pass resting on ignore entries ends with them.
        let mut scan = StepRecord::new(&current, "scan", Outcome::Passed, String::new());
        scan.valid_until = Some("2000-01-01".into());
        scan.save(root).unwrap();
        assert_eq!(
            unmet_gates(root, &current, &["scan"]).unwrap(),
            ["scan passed on ignore entries that expired after 2000-01-01: run it again"]
        );
        scan.valid_until = Some("9999-12-31".into());
        scan.save(root).unwrap();
        assert!(unmet_gates(root, &current, &["scan"]).unwrap().is_empty());
        // At the boundary (guards `<` against `<=`): entries that hold
        // through today still clear the gate; ones that ended yesterday not.
        scan.valid_until = Some("2026-03-14".into());
        scan.save(root).unwrap();
        assert!(unmet_gates_on(root, &current, &["scan"], "2026-03-14")
            .unwrap()
            .is_empty());
        assert_eq!(
            unmet_gates_on(root, &current, &["scan"], "2026-03-15").unwrap(),
            ["scan passed on ignore entries that expired after 2026-03-14: run it again"]
        );
        // A run that does not finish replaces the passing record with a
        // failed one (a build record is there to tie it to).
        current.save(root).unwrap();
        let error = leave_record(root, "base", "sbom", || -> Result<()> {
            anyhow::bail!("syft crashed")
        });
        assert!(error.is_err());
        assert_eq!(
            unmet_gates(root, &current, &["sbom"]).unwrap(),
            ["sbom failed: syft crashed"]
        );
        // A record that is not one is an error, not a gate passed.
        std::fs::write(step_record_path(root, "base", "sbom"), "{}").unwrap();
        assert!(unmet_gates(root, &current, &["sbom"]).is_err());
    }
}
