//! `cargo xtask all`: the whole pipeline, one summary table.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use xshell::Shell;

use crate::build::{self, BuildOptions, Env};
use crate::catalog::Catalog;
use crate::report::{self, Outcome, StepReport};
use crate::reproduce::VerifyReproducible;

/// Run every step: lint → digests check → build → verify-reproducible, one summary.
#[derive(Debug, Args)]
pub struct All {
    /// Leave a step out (repeatable): lint, digests, build, verify-reproducible.
    #[arg(long, value_name = "STEP")]
    skip: Vec<String>,
    /// Pull StageX images through this prefix (e.g. an internal mirror).
    #[arg(long, value_name = "PREFIX")]
    registry: Option<String>,
    /// How many images build at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// A buildx builder to use.
    #[arg(long, value_name = "NAME")]
    builder: Option<String>,
}

/// The steps in order. Each later capability adds its step here.
pub const STEPS: &[&str] = &["lint", "digests", "build", "verify-reproducible"];

impl All {
    pub fn run(self, sh: &Shell) -> Result<()> {
        for step in &self.skip {
            if !STEPS.contains(&step.as_str()) {
                bail!(
                    "--skip {step}: no such step; steps are {}",
                    STEPS.join(", ")
                );
            }
        }
        let root = sh.current_dir();
        let mut reports: Vec<StepReport> = Vec::new();
        // Images whose build passed in this run: the ones worth verifying.
        let mut built: Option<Vec<String>> = None;
        for step in STEPS {
            if self.skip.iter().any(|s| s == step) {
                reports.push(StepReport::new(
                    "-",
                    step,
                    Outcome::Skipped(format!("--skip {step}")),
                    Default::default(),
                ));
                continue;
            }
            eprintln!("==> {step}");
            let started = Instant::now();
            let single = |result: Result<()>| {
                let outcome = match result {
                    Ok(()) => Outcome::Passed,
                    Err(error) => {
                        eprintln!("error: {error:#}");
                        Outcome::Failed(format!("{error:#}"))
                    }
                };
                StepReport::new("-", step, outcome, started.elapsed())
            };
            match *step {
                "lint" => reports.push(single(crate::lint::Lint {}.run(sh))),
                "digests" => reports.push(single(crate::digests::Digests { check: true }.run(sh))),
                "build" => match self.build(sh) {
                    Ok(step_reports) => {
                        built = Some(
                            step_reports
                                .iter()
                                .filter(|r| r.outcome == Outcome::Passed)
                                .map(|r| r.image.clone())
                                .collect(),
                        );
                        reports.extend(step_reports);
                    }
                    Err(error) => reports.push(single(Err(error))),
                },
                "verify-reproducible" => {
                    let images = match &built {
                        Some(images) if images.is_empty() => {
                            reports.push(StepReport::new(
                                "-",
                                step,
                                Outcome::Skipped("no image built".into()),
                                Default::default(),
                            ));
                            continue;
                        }
                        Some(images) => images.clone(),
                        None => Vec::new(),
                    };
                    let verify = VerifyReproducible {
                        images,
                        registry: self.registry.clone(),
                        builder: self.builder.clone(),
                        ..Default::default()
                    };
                    match build::source_date_epoch(sh)
                        .and_then(|epoch| verify.reports(&root, epoch, &Env::new()))
                    {
                        Ok(step_reports) => reports.extend(step_reports),
                        Err(error) => reports.push(single(Err(error))),
                    }
                }
                _ => unreachable!("every step in STEPS is dispatched"),
            }
        }
        eprint!("\n{}", report::table(&reports));
        let failed: Vec<String> = reports
            .iter()
            .filter(|r| r.failed())
            .map(|r| match r.image.as_str() {
                "-" => r.step.clone(),
                image => format!("{} ({image})", r.step),
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(crate::Failure(format!("all: failed steps: {}", failed.join(", "))).into())
        }
    }

    fn build(&self, sh: &Shell) -> Result<Vec<StepReport>> {
        let root = sh.current_dir();
        let catalog = Catalog::load(&root)?;
        let options = BuildOptions {
            source_date_epoch: build::source_date_epoch(sh)?,
            root,
            registry_prefix: self.registry.clone(),
            no_cache: false,
            builder: self.builder.clone(),
        };
        let builds = build::plan(&catalog, &[], &options)?;
        let jobs = self.jobs.unwrap_or_else(build::default_jobs);
        Ok(build::run_builds(&builds, jobs, &Env::new()))
    }
}
