//! `cargo xtask all`: the whole pipeline, one summary table.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use xshell::Shell;

use crate::report::{self, Outcome, StepReport};

/// Run every step: lint → digests check (→ build … as they land), one summary.
#[derive(Debug, Args)]
pub struct All {
    /// Leave a step out (repeatable): lint, digests.
    #[arg(long, value_name = "STEP")]
    skip: Vec<String>,
}

/// The steps in order. Each later capability adds its step here.
pub const STEPS: &[&str] = &["lint", "digests"];

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
        let mut reports = Vec::new();
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
            let result = match *step {
                "lint" => crate::lint::Lint {}.run(sh),
                "digests" => crate::digests::Digests { check: true }.run(sh),
                _ => unreachable!("every step in STEPS is dispatched"),
            };
            let outcome = match result {
                Ok(()) => Outcome::Passed,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    Outcome::Failed(format!("{error:#}"))
                }
            };
            reports.push(StepReport::new("-", step, outcome, started.elapsed()));
        }
        eprint!("\n{}", report::table(&reports));
        let failed: Vec<&str> = reports
            .iter()
            .filter(|r| r.failed())
            .map(|r| r.step.as_str())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(crate::Failure(format!("all: failed steps: {}", failed.join(", "))).into())
        }
    }
}
