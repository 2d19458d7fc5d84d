//! `cargo xtask check-runtime`: proof, from the built OCI archive alone (no
//! container started, no engine), that an image can start: its entrypoint is
//! an executable file for its user, a script's interpreter is there, and
//! every ELF file's dynamic linker and libraries resolve the way the linker
//! would resolve them inside the image. `build` runs it on every image.
//!
//! [`check`] is pure (filesystem, file facts and config in; problems out);
//! [`check_archive`] reads the archive for it.

pub mod check;
pub mod elf;
pub mod facts;
pub mod loader;
pub mod providers;
pub mod tree;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::args::{ImageArgs, JsonArg};
use crate::error::fail;
use crate::model::catalog::Catalog;
use crate::model::release::Release;
use crate::oci::archive::OciArchive;
use crate::oci::rootfs::{self, Reading};
use crate::records::build::BuildRecord;
use crate::report::{self, Outcome, StepReport};
use check::{Image, RunConfig, Sniff, Verdict};

/// The name reports carry.
pub const STEP: &str = "check-runtime";

/// Prove each built image can start: its entrypoint, users and every ELF
/// file's libraries, resolved inside the OCI archive (no container started).
#[derive(Debug, Args, Clone)]
pub struct CheckRuntime {
    #[command(flatten)]
    pub images: ImageArgs,
    /// Check these OCI archives instead of built images (e.g. a
    /// `docker buildx build --output type=oci` of your own).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["images", "all"])]
    pub archive: Vec<PathBuf>,
    /// Write what the archives show into the package facts
    /// (`stagex-release/<release>/packages.facts`) where they differ.
    #[arg(long)]
    pub write_facts: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// One image's check, for `--json`: its verdict, or why it could not be
/// checked.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Checked {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    pub passed: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why there is no verdict (a missing record, layers refused, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The tool could not run, rather than the check failing (exit 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub could_not_run: bool,
    /// Where the archive and the package facts differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<facts::Difference>,
    pub seconds: f64,
}

impl CheckRuntime {
    pub fn run(self, root: &Path) -> Result<()> {
        let targets: Vec<(String, Result<PathBuf>)> = if self.archive.is_empty() {
            let catalog = Catalog::load(root)?;
            self.images
                .select(&catalog)?
                .into_iter()
                .map(|image| {
                    let archive = BuildRecord::load(root, &image)
                        .and_then(|record| record.verified_archive(root));
                    (image, archive)
                })
                .collect()
        } else {
            self.archive
                .iter()
                .map(|path| (path.display().to_string(), Ok(path.clone())))
                .collect()
        };
        let packages = release_packages(root);
        let known = Known::load(root);
        let mut written: Vec<facts::Difference> = Vec::new();
        let mut reports = Vec::new();
        let mut checked = Vec::new();
        for (image, archive) in targets {
            let started = Instant::now();
            let result = archive.and_then(|path| {
                let (verdict, observed) = check_archive_observed(&path, &packages)?;
                Ok((path, verdict, observed))
            });
            let report = match result {
                Ok((path, verdict, observed)) => {
                    crate::ui::say_more!("{}", render(&image, &verdict));
                    let differences = known.compare(&image, &observed);
                    if self.write_facts {
                        written.extend(differences.iter().cloned());
                    }
                    let outcome = outcome(&verdict);
                    checked.push(Checked {
                        image: image.clone(),
                        archive: Some(path.display().to_string()),
                        passed: verdict.passed(),
                        verdict: Some(verdict),
                        error: None,
                        could_not_run: false,
                        facts: differences,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    StepReport::new(&image, STEP, outcome, started.elapsed())
                }
                Err(error) => {
                    anstream::eprintln!("[{image}] {STEP}: {error:#}");
                    let report = StepReport::from_error(&image, STEP, &error, started.elapsed());
                    checked.push(Checked {
                        image: image.clone(),
                        archive: None,
                        passed: false,
                        verdict: None,
                        error: Some(format!("{error:#}")),
                        could_not_run: report.could_not_run,
                        facts: Vec::new(),
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    report
                }
            };
            reports.push(report);
        }
        anstream::eprint!("\n{}", report::coloured_table(&reports));
        if self.write_facts && !written.is_empty() {
            facts::write(root, &written)?;
            crate::ui::say!(
                "wrote {} difference(s) into the package facts; review them and name the package of any `<package>` line by hand",
                written.len()
            );
        }
        self.json.write("check-runtime", &reports, &checked)?;
        report::fail_if_any(&reports, STEP)
    }
}

/// Problems named in one line (a glibc program in a musl image has hundreds;
/// all of them are in the log and `--json`).
const SHOWN_PROBLEMS: usize = 5;

/// The first problems, and how many more.
pub fn problems_line(verdict: &Verdict) -> String {
    let mut shown: Vec<String> = verdict
        .problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(|p| p.to_string())
        .collect();
    if verdict.problems.len() > SHOWN_PROBLEMS {
        shown.push(format!(
            "and {} more",
            verdict.problems.len() - SHOWN_PROBLEMS
        ));
    }
    shown.join("; ")
}

/// Passed, or failed with its problems.
pub fn outcome(verdict: &Verdict) -> Outcome {
    if verdict.passed() {
        Outcome::Passed
    } else {
        Outcome::Failed(format!("it would not start: {}", problems_line(verdict)))
    }
}

/// The verdict for people: one line, then each problem and note.
pub fn render(image: &str, verdict: &Verdict) -> String {
    let mut text = format!(
        "[{image}] {STEP}: {} — {}\n",
        if verdict.passed() { "passed" } else { "FAILED" },
        verdict.summary()
    );
    for problem in &verdict.problems {
        text.push_str(&format!("  - {problem}\n"));
    }
    for note in &verdict.notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    text
}

/// Package names of the pinned StageX release, to name what provides a
/// missing library (none when the checkout has no release list).
pub fn release_packages(root: &Path) -> BTreeSet<String> {
    Release::current(root)
        .map(|release| release.packages.into_keys().collect())
        .unwrap_or_default()
}

/// The catalog and package facts, when the checkout has them: what a build's
/// archive is compared with.
pub struct Known {
    found: Option<(Catalog, crate::model::facts::Facts)>,
}

impl Known {
    pub fn load(root: &Path) -> Known {
        let found = Catalog::load(root)
            .ok()
            .zip(crate::model::facts::Facts::current(root).ok().flatten());
        Known { found }
    }

    /// The differences between `image`'s archive and the facts, each printed.
    pub fn compare(&self, image: &str, observed: &facts::Observed) -> Vec<facts::Difference> {
        let Some((catalog, known)) = &self.found else {
            return Vec::new();
        };
        let differences = facts::compare(image, catalog, known, observed);
        crate::ui::say_more!("{}", facts::render(image, &known.path, &differences));
        differences
    }
}

/// Check the image in the OCI archive at `path`. An archive whose layers
/// cannot be read safely, or whose config is malformed, is a failed check
/// (exit 1); one that cannot be opened could not be checked (exit 2).
pub fn check_archive(path: &Path, packages: &BTreeSet<String>) -> Result<Verdict> {
    check_archive_observed(path, packages).map(|(verdict, _)| verdict)
}

/// [`check_archive`], and what the archive holds for the package facts.
pub fn check_archive_observed(
    path: &Path,
    packages: &BTreeSet<String>,
) -> Result<(Verdict, facts::Observed)> {
    // Its errors name the archive already.
    let archive = OciArchive::open(path)?;
    let config = match archive
        .config()
        .and_then(|config| RunConfig::from_image_config(&config))
    {
        Ok(config) => config,
        Err(error) => return fail(format!("{}: its image config: {error:#}", path.display())),
    };
    let mut inspect = |path: &str, bytes: rootfs::Sniffed<'_>| check::sniff(path, bytes);
    let reading = Reading {
        hashes: false,
        head: check::HEAD,
        wants: &check::wants,
        max_size: check::MAX_FILE,
        inspect: &mut inspect,
    };
    let (filesystem, sniffs): (_, HashMap<_, Sniff>) = match rootfs::read_with(&archive, reading) {
        Ok(read) => read,
        Err(error) => {
            return fail(format!(
                "{}: its filesystem cannot be read safely: {error:#}",
                path.display()
            ))
        }
    };
    let layer_kinds = archive
        .config()
        .ok()
        .and_then(|config| facts::layer_kinds(&config));
    let observed = facts::Observed::new(&filesystem, &sniffs, layer_kinds);
    Ok((
        Image::new(&filesystem, &sniffs, &config, packages).check(),
        observed,
    ))
}
