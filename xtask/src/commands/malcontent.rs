//! `cargo xtask malcontent`: each image's final filesystem, extracted natively
//! (whiteouts honoured, nothing written outside the folder), analysed by
//! malcontent; the gate is the highest risk of any file (mal's exit status
//! does not reflect what it found).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::args::{ImageArgs, JsonArg};
use crate::error::fail;
use crate::files::write_atomically;
use crate::model::catalog::Catalog;
use crate::oci::archive::OciArchive;
use crate::pipeline::Step;
use crate::records::build::BuildRecord;
use crate::records::image_dir;
use crate::records::steps::{leave_record, StepRecord};
use crate::report::{self, Outcome, StepReport};
use crate::tools::{process::Env, Tool};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Risk {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    fn from_score(score: u8) -> Risk {
        match score {
            0 => Risk::None,
            1 => Risk::Low,
            2 => Risk::Medium,
            3 => Risk::High,
            _ => Risk::Critical,
        }
    }
}

/// Analyse each image's filesystem with malcontent and gate on the highest file risk.
#[derive(Debug, Args, Clone)]
pub struct Malcontent {
    #[command(flatten)]
    pub images: ImageArgs,
    /// Fail when a file's risk is this level or above.
    #[arg(long, value_name = "LEVEL", value_enum, default_value_t = Risk::High)]
    pub fail_on_risk: Risk,
    #[command(flatten)]
    pub json: JsonArg,
}

/// What malcontent said about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FileRisk {
    pub path: String,
    pub risk: Risk,
    /// The behaviours at that file's highest risk.
    pub behaviours: Vec<String>,
    /// Why mal could not analyse it: a file nobody looked at is not clean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One image's analysis, for `--json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Analysed {
    pub image: String,
    /// Files with findings, riskiest first.
    pub files: Vec<FileRisk>,
}

/// mal's report: only the keys it writes (an error object or another
/// program's JSON is refused, not read as clean); no `Files`: nothing found.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Report {
    #[serde(default)]
    files: BTreeMap<String, FileReport>,
    #[serde(default, rename = "Stats")]
    _stats: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "Diff")]
    _diff: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "Filter")]
    _filter: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileReport {
    #[serde(default)]
    risk_score: u8,
    /// Why mal could not analyse the file.
    #[serde(default)]
    error: String,
    #[serde(default)]
    behaviors: Vec<Behavior>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Behavior {
    #[serde(default)]
    description: String,
    #[serde(default)]
    risk_score: u8,
    #[serde(default, rename = "ID")]
    id: String,
}

/// The files of a `mal --format json analyze` report, riskiest first; paths
/// below `root` are shown relative to the image's root.
pub fn parse_mal(bytes: &[u8], root: &str) -> Result<Vec<FileRisk>> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).context("malcontent's output is not JSON")?;
    // An object, with or without `Files` (none when nothing was found); not
    // anything else serde could read as an empty report.
    if !value.is_object() {
        bail!("malcontent's output is not its JSON report (an object with `Files`)");
    }
    let report: Report =
        serde_json::from_value(value).context("malcontent's output is not its JSON report")?;
    let mut files: Vec<FileRisk> = report
        .files
        .into_iter()
        .map(|(path, file)| {
            let path = match path.strip_prefix(root) {
                Some(inside) => format!("/{}", inside.trim_start_matches('/')),
                None => path,
            };
            let behaviours = file
                .behaviors
                .iter()
                .filter(|b| b.risk_score == file.risk_score)
                .map(|b| format!("{} ({})", b.description, b.id))
                .collect();
            FileRisk {
                path,
                risk: Risk::from_score(file.risk_score),
                behaviours,
                error: (!file.error.is_empty()).then_some(file.error),
            }
        })
        .collect();
    files.sort_by(|a, b| b.risk.cmp(&a.risk).then(a.path.cmp(&b.path)));
    Ok(files)
}

impl Malcontent {
    pub fn run(self, root: &Path) -> Result<()> {
        let catalog = Catalog::load(root)?;
        let images = self.images.select(&catalog)?;
        let env = Env::new();
        crate::tools::require(&[Tool::Mal], &env, "malcontent")?;
        let (reports, found) = analyse_images(root, &images, self.fail_on_risk, &env)?;
        anstream::eprint!("\n{}", report::coloured_table(&reports));
        self.json.write("malcontent", &reports, &found)?;
        report::fail_if_any(&reports, Step::Malcontent.name())
    }
}

/// Analyse `images` (mal must be installed), one report each.
pub fn analyse_images(
    root: &Path,
    images: &[String],
    threshold: Risk,
    env: &Env,
) -> Result<(Vec<StepReport>, Vec<Analysed>)> {
    let mut reports = Vec::new();
    let mut found = Vec::new();
    for image in images {
        let started = Instant::now();
        let step = Step::Malcontent.name();
        match leave_record(root, image, step, || {
            analyse_one(root, image, threshold, env)
        }) {
            Ok((outcome, files)) => {
                reports.push(StepReport::new(image, step, outcome, started.elapsed()));
                found.push(Analysed {
                    image: image.clone(),
                    files,
                });
            }
            Err(error) => {
                anstream::eprintln!("[{image}] malcontent FAILED: {error:#}");
                reports.push(StepReport::from_error(
                    image,
                    step,
                    &error,
                    started.elapsed(),
                ));
            }
        }
    }
    Ok((reports, found))
}

/// The image's final filesystem, written under a scratch folder that goes
/// away with the returned guard. A layer that cannot be applied safely is a
/// failed check of the image (exit 1), not a tool that could not run.
/// Symlinks are rewritten to stay inside the folder (mal follows them: a link
/// to `/etc/shadow` must not show it this machine's file); the few whose
/// meaning cannot be kept are left out and named here.
fn extracted(root: &Path, image: &str) -> Result<(BuildRecord, tempfile::TempDir, PathBuf)> {
    let record = BuildRecord::load(root, image)?;
    let archive = OciArchive::open(&record.verified_archive(root)?)?;
    let scratch = tempfile::tempdir()?;
    let rootfs = scratch.path().join("rootfs");
    std::fs::create_dir(&rootfs)?;
    match crate::oci::rootfs::extract(&archive, &rootfs) {
        Ok(extracted) => {
            for (path, target) in extracted.left_out.iter().take(20) {
                crate::ui::say!(
                    "[{image}] malcontent: the symlink /{path} → {} is left out of the analysed tree (it climbs with `..` after descending)",
                    target.escape_debug()
                );
            }
            if extracted.left_out.len() > 20 {
                crate::ui::say!(
                    "[{image}] malcontent: {} more symlinks left out",
                    extracted.left_out.len() - 20
                );
            }
        }
        Err(error) => {
            return fail(format!(
                "its filesystem cannot be extracted safely: {error:#}"
            ))
        }
    }
    Ok((record, scratch, rootfs))
}

fn analyse_one(
    root: &Path,
    image: &str,
    threshold: Risk,
    env: &Env,
) -> Result<(Outcome, Vec<FileRisk>)> {
    let (record, _scratch, rootfs) = extracted(root, image)?;
    let mut command = crate::tools::mal::analyze(&rootfs);
    command.envs(env);
    let output = command.output()?;
    let dir = image_dir(root, image);
    write_atomically(&dir.join("mal.json"), &output.stdout)?;
    let files = parse_mal(&output.stdout, &rootfs.display().to_string())?;
    Ok((gate(root, &record, &files, threshold)?, files))
}

/// Without mal (`why` says how to get it): each image's filesystem is still
/// extracted, so a hostile layer fails here too; the rest is reported skipped.
pub fn extract_only(root: &Path, images: &[String], why: &str) -> Vec<StepReport> {
    let step = Step::Malcontent.name();
    images
        .iter()
        .map(|image| {
            let started = Instant::now();
            let checked = leave_record(root, image, step, || extracted(root, image).map(drop));
            match checked {
                Ok(()) => StepReport::new(
                    image,
                    step,
                    Outcome::Skipped(format!("{why}; its filesystem extracted cleanly")),
                    started.elapsed(),
                ),
                Err(error) => {
                    anstream::eprintln!("[{image}] malcontent FAILED: {error:#}");
                    StepReport::from_error(image, step, &error, started.elapsed())
                }
            }
        })
        .collect()
}

/// Record the verdict on `files` for `record`'s archive.
fn gate(root: &Path, record: &BuildRecord, files: &[FileRisk], threshold: Risk) -> Result<Outcome> {
    let highest = files.first().map(|f| f.risk).unwrap_or(Risk::None);
    let risky: Vec<&FileRisk> = files.iter().filter(|f| f.risk >= threshold).collect();
    let unread: Vec<&FileRisk> = files.iter().filter(|f| f.error.is_some()).collect();
    let mut why = Vec::new();
    if !risky.is_empty() {
        why.push(format!(
            "{} file(s) at risk {threshold:?} or above: {}",
            risky.len(),
            risky
                .iter()
                .take(3)
                .map(|f| format!("{} {:?} ({})", f.path, f.risk, f.behaviours.join("; ")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !unread.is_empty() {
        why.push(format!(
            "{} file(s) malcontent could not analyse: {}",
            unread.len(),
            unread
                .iter()
                .take(3)
                .map(|f| format!("{} ({})", f.path, f.error.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let outcome = if why.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(why.join("; "))
    };
    let mut step = StepRecord::new(
        record,
        Step::Malcontent.name(),
        outcome.clone(),
        format!(
            "{} file(s) with findings, highest risk {highest:?}",
            files.len()
        ),
    );
    step.artefacts = vec![format!(
        "{}/{}/mal.json",
        crate::records::OUT_DIR,
        record.image
    )];
    step.save(root)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = crate::files::project_root()
            .join("xtask/tests/testdata/scanners/malcontent")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn real_malcontent_reports_parse_and_rank() {
        let low = parse_mal(&fixture("mal-analyze-ls-low.json"), "/nowhere").unwrap();
        assert_eq!(low.len(), 1);
        assert_eq!(low[0].risk, Risk::Low);
        assert_eq!(
            parse_mal(&fixture("mal-analyze-ls-low-with-stats.json"), "/x").unwrap()[0].risk,
            Risk::Low
        );
        let critical = parse_mal(
            &fixture("mal-analyze-kubo-injector-critical.json"),
            "linux/",
        )
        .unwrap();
        assert_eq!(critical[0].risk, Risk::Critical);
        assert_eq!(critical[0].path, "/2024.kubo_injector/injector");
        assert!(!critical[0].behaviours.is_empty());
        let medium = parse_mal(&fixture("mal-analyze-trino-launcher-clean.json"), "/x").unwrap();
        assert_eq!(medium.len(), 2);
        assert!(medium.iter().all(|f| f.risk == Risk::Medium));
        assert_eq!(
            parse_mal(&fixture("mal-analyze-yocolor-setup-py.json"), "/x").unwrap()[0].risk,
            Risk::Critical
        );
        assert!(parse_mal(b"[]", "/x").is_err());
        // Nothing found: no `Files`. Another object is not a report.
        assert!(parse_mal(b"{}", "/x").unwrap().is_empty());
        assert!(parse_mal(br#"{"error": "rules failed to compile"}"#, "/x").is_err());
    }

    #[test]
    fn the_gate_is_the_highest_file_risk() {
        let dir = tempfile::tempdir().unwrap();
        let record = BuildRecord::example("x", "ab");
        let medium = parse_mal(&fixture("mal-analyze-trino-launcher-clean.json"), "/x").unwrap();
        assert_eq!(
            gate(dir.path(), &record, &medium, Risk::High).unwrap(),
            Outcome::Passed
        );
        let failed = gate(dir.path(), &record, &medium, Risk::Medium).unwrap();
        assert!(
            matches!(failed, Outcome::Failed(ref why) if why.contains("2 file(s) at risk Medium")),
            "{failed:?}"
        );
        let critical =
            parse_mal(&fixture("mal-analyze-kubo-injector-critical.json"), "/x").unwrap();
        assert!(matches!(
            gate(dir.path(), &record, &critical, Risk::High).unwrap(),
            Outcome::Failed(_)
        ));
        let unread = [FileRisk {
            path: "/usr/bin/odd".into(),
            risk: Risk::None,
            behaviours: vec![],
            error: Some("yara: scan timed out".into()),
        }];
        let failed = gate(dir.path(), &record, &unread, Risk::High).unwrap();
        assert!(
            matches!(failed, Outcome::Failed(ref why) if why.contains("could not analyse: /usr/bin/odd (yara: scan timed out)")),
            "{failed:?}"
        );
        let saved = StepRecord::load(dir.path(), "x", "malcontent")
            .unwrap()
            .unwrap();
        assert_eq!(saved.archive_sha256, "ab");
    }

    #[test]
    fn the_mal_invocation() {
        insta::assert_snapshot!(crate::tools::mal::analyze(Path::new("/tmp/rootfs")).plan());
    }
}
