//! `cargo xtask scan`: grype on each image's own SBOM (what we know it holds;
//! a scanner looking inside a StageX image finds almost nothing and would call
//! it clean), gated on severity minus an ignore file; and, advisory only,
//! grype on the CPE of each package.

pub mod findings;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::args::{ImageArgs, JsonArg};
use crate::error::fail;
use crate::files::write_atomically;
use crate::model::catalog::Catalog;
use crate::pipeline::Step;
use crate::records::build::BuildRecord;
use crate::records::image_dir;
use crate::records::steps::{leave_record, unmet_gates, StepRecord};
use crate::report::{self, Outcome, StepReport};
use crate::tools::{process::Env, Tool};
use findings::{Finding, Ignore, Severity, Verdict};

/// Scan each image's SBOM with grype and gate on severity (and an ignore file).
#[derive(Debug, Args, Clone)]
pub struct Scan {
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub gate: GateArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args, Clone)]
pub struct GateArgs {
    /// Fail on findings of this severity and above.
    #[arg(long, value_name = "SEVERITY", value_enum, default_value_t = Severity::High)]
    pub fail_on: Severity,
    /// Accepted findings: a YAML list of {id, package, reason, expires: YYYY-MM-DD, by}.
    #[arg(long, value_name = "FILE")]
    pub ignore: Option<PathBuf>,
}

impl Default for GateArgs {
    fn default() -> GateArgs {
        GateArgs {
            fail_on: Severity::High,
            ignore: None,
        }
    }
}

/// One image's scan, for `--json` and the summary.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Scanned {
    pub image: String,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
    pub advisory: Vec<Finding>,
}

impl Scan {
    pub fn run(self, root: &Path) -> Result<()> {
        let catalog = Catalog::load(root)?;
        let images = self.images.select(&catalog)?;
        let env = Env::new();
        crate::tools::require(&[Tool::Grype], &env, "scan")?;
        let (reports, scanned) = scan_images(root, &images, &self.gate, &env)?;
        anstream::eprint!("\n{}", report::coloured_table(&reports));
        self.json.write("scan", &reports, &scanned)?;
        report::fail_if_any(&reports, Step::Scan.name())
    }
}

/// Scan `images` (grype must be installed), one report each.
pub fn scan_images(
    root: &Path,
    images: &[String],
    gate: &GateArgs,
    env: &Env,
) -> Result<(Vec<StepReport>, Vec<Scanned>)> {
    let ignores: Vec<Ignore> = match &gate.ignore {
        Some(path) => findings::load_ignores(path)?,
        None => Vec::new(),
    };
    let today = crate::time::today();
    let mut reports = Vec::new();
    let mut all = Vec::new();
    for image in images {
        let started = Instant::now();
        let step = Step::Scan.name();
        let scanned = leave_record(root, image, step, || {
            scan_one(root, image, gate.fail_on, &ignores, &today, env)
        });
        match scanned {
            Ok(scanned) => {
                let outcome = if scanned.verdict.passed() {
                    Outcome::Passed
                } else {
                    Outcome::Failed(format!(
                        "{} finding(s) at {} or above",
                        scanned.verdict.failing.len(),
                        gate.fail_on
                    ))
                };
                reports.push(StepReport::new(image, step, outcome, started.elapsed()));
                all.push(scanned);
            }
            Err(error) => {
                anstream::eprintln!("[{image}] scan FAILED: {error:#}");
                reports.push(StepReport::from_error(
                    image,
                    step,
                    &error,
                    started.elapsed(),
                ));
            }
        }
    }
    Ok((reports, all))
}

fn scan_one(
    root: &Path,
    image: &str,
    threshold: Severity,
    ignores: &[Ignore],
    today: &str,
    env: &Env,
) -> Result<Scanned> {
    let record = BuildRecord::load(root, image)?;
    record.verified_archive(root)?;
    let unmet = unmet_gates(root, &record, &[Step::Sbom.name()])?;
    if !unmet.is_empty() {
        return fail(format!(
            "no SBOM of these bytes to scan: {}",
            unmet.join("; ")
        ));
    }
    let dir = image_dir(root, image);
    let sbom = dir.join("sbom.cdx.json");
    let mut command = crate::tools::grype::scan_sbom(&sbom);
    command.envs(env);
    let output = command.output()?;
    write_atomically(&dir.join("grype.json"), &output.stdout)?;
    let found = findings::parse_grype(&output.stdout)?;
    let verdict = findings::gate(&found, threshold, ignores, today);
    // Advisory: each package's CPE on its own, reported, never gating.
    let mut advisory = Vec::new();
    let mut advisory_failed = 0;
    for cpe in package_cpes(&sbom)? {
        let mut command = crate::tools::grype::scan_cpe(&cpe);
        command.envs(env);
        // Advisory: a failure is said, counted, and never gates.
        let found = command
            .output()
            .and_then(|output| findings::parse_grype(&output.stdout));
        match found {
            Ok(found) => advisory.extend(found),
            Err(error) => {
                advisory_failed += 1;
                anstream::eprintln!("[{image}] advisory scan of {cpe} failed: {error:#}");
            }
        }
    }
    let summary = findings::markdown(image, &found, &verdict, threshold, &advisory);
    write_atomically(&dir.join("scan.md"), summary.as_bytes())?;
    crate::ui::say_more!("{summary}");
    let outcome = if verdict.passed() {
        Outcome::Passed
    } else {
        Outcome::Failed(format!(
            "{} finding(s) at {threshold} or above",
            verdict.failing.len()
        ))
    };
    let mut step = StepRecord::new(
        &record,
        Step::Scan.name(),
        outcome,
        format!(
            "{} finding(s), {} failing at {threshold}+, {} advisory ({advisory_failed} advisory scan(s) failed)",
            found.len(),
            verdict.failing.len(),
            advisory.len()
        ),
    );
    // A pass that rests on ignore entries lasts as long as they do.
    step.valid_until = verdict.valid_until.clone();
    step.artefacts = ["grype.json", "scan.md"]
        .iter()
        .map(|f| format!("{}/{image}/{f}", crate::records::OUT_DIR))
        .collect();
    step.save(root)?;
    Ok(Scanned {
        image: image.to_string(),
        findings: found,
        verdict,
        advisory,
    })
}

/// The CPEs our CycloneDX SBOM gives its packages.
fn package_cpes(sbom: &Path) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sbom).with_context(|| format!("reading {}", sbom.display()))?,
    )?;
    let mut cpes: Vec<String> = value["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["cpe"].as_str().map(str::to_string))
        .collect();
    cpes.sort();
    cpes.dedup();
    Ok(cpes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact commands (grype cannot be installed here: its invocation is
    /// checked as a plan).
    #[test]
    fn grype_invocations() {
        let sbom = Path::new("out/base/sbom.cdx.json");
        let plans = [
            crate::tools::grype::scan_sbom(sbom).plan(),
            crate::tools::grype::scan_cpe("cpe:2.3:a:musl-libc:musl:1.2.5:*:*:*:*:*:*:*").plan(),
        ];
        insta::assert_snapshot!(plans.join("\n"));
    }
}
