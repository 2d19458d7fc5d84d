//! `cargo xtask verify-reproducible`: build twice without cache, compare the
//! bytes, and when they differ say which files differ and how.

pub mod against;
pub mod explain;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{EngineArgs, ImageArgs, JsonArg};
use super::build::{self, plan::BuildOptions, plan::ImageBuild, run::build_once};
use crate::model::catalog::Catalog;
use crate::oci::archive::OciArchive;
use crate::pipeline::{self, Step};
use crate::records::{self, build::BuildRecord};
use crate::report::{self, Outcome, StepReport};
use crate::tools::{self, process::Env};

/// Build each image twice with --no-cache and compare (or rebuild a published image from its provenance, --against); explain any difference.
#[derive(Debug, Args, Clone, Default)]
pub struct VerifyReproducible {
    /// What they build on must be built already.
    #[command(flatten)]
    pub images: ImageArgs,
    /// A published image, by digest: fetch its provenance attestation
    /// (verified against the public key), rebuild it here from the inputs it
    /// names, and compare digests.
    #[arg(long, value_name = "REF@sha256:…", conflicts_with_all = ["images", "all"])]
    pub against: Option<String>,
    /// The public key the provenance must verify against (default: cosign.pub).
    #[arg(long, value_name = "PATH", requires = "against")]
    pub key: Option<std::path::PathBuf>,
    /// Do not require transparency log entries (images signed with --no-tlog).
    #[arg(long, requires = "against")]
    pub no_tlog: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

impl VerifyReproducible {
    pub fn run(self, root: &Path) -> Result<()> {
        let env = Env::new();
        tools::require(
            &pipeline::tools_for(&[Step::VerifyReproducible]),
            &env,
            "verify-reproducible",
        )?;
        if let Some(reference) = &self.against {
            return self.run_against(root, reference, &env);
        }
        let catalog = Catalog::load(root)?;
        catalog.select(self.images.names())?;
        let options = build::options(root, &self.engine)?;
        let reports = verify(&catalog, self.images.names(), &options, &env)?;
        anstream::eprint!("\n{}", report::coloured_table(&reports));
        self.json.write("verify-reproducible", &reports, &())?;
        report::fail_if_any(&reports, "verify-reproducible")
    }
}

impl VerifyReproducible {
    fn run_against(&self, root: &Path, reference: &str, env: &Env) -> Result<()> {
        let key = self
            .key
            .clone()
            .unwrap_or_else(|| root.join(crate::commands::signing::PUBLIC_KEY));
        let started = Instant::now();
        let step = Step::VerifyReproducible.name();
        let report = match against::against(root, reference, &key, !self.no_tlog, &self.engine, env)
        {
            Ok(against::Outcome::Same { image, digest }) => {
                crate::ui::say!("[{image}] reproducible: the rebuild here is {reference}");
                StepReport {
                    digest: Some(digest),
                    detail: Some(format!("rebuilt {reference} from its provenance")),
                    ..StepReport::new(&image, step, Outcome::Passed, started.elapsed())
                }
            }
            Ok(against::Outcome::Differs { image, explanation }) => {
                crate::ui::say!("[{image}] NOT reproducible:\n{explanation}");
                let outcome = Outcome::Failed(format!("not reproducible: {explanation}"));
                StepReport::new(&image, step, outcome, started.elapsed())
            }
            Err(error) => {
                anstream::eprintln!("[{reference}] FAILED: {error:#}");
                StepReport::from_error(reference, step, &error, started.elapsed())
            }
        };
        let reports = [report];
        self.json.write("verify-reproducible", &reports, &())?;
        report::fail_if_any(&reports, "verify-reproducible")
    }
}

/// Verify each named image (every image when none), one report each.
pub fn verify(
    catalog: &Catalog,
    names: &[String],
    options: &BuildOptions,
    env: &Env,
) -> Result<Vec<StepReport>> {
    let options = BuildOptions {
        no_cache: true,
        ..options.clone()
    };
    let mut reports = Vec::new();
    for image in catalog.select(names)? {
        let planned = build::plan::plan(catalog, std::slice::from_ref(&image.name), &options)?;
        let target = planned
            .into_iter()
            .find(|b| b.image == image.name)
            .with_context(|| format!("the plan for `{}` does not build it", image.name))?;
        let started = Instant::now();
        let step = Step::VerifyReproducible.name();
        let report = match verify_one(&target, env) {
            Ok(Verdict::Reproducible(digest)) => {
                crate::ui::say!("[{}] reproducible: {digest}", image.name);
                StepReport {
                    digest: Some(digest),
                    ..StepReport::new(&image.name, step, Outcome::Passed, started.elapsed())
                }
            }
            Ok(Verdict::Differs(explanation)) => {
                crate::ui::say!("[{}] NOT reproducible:\n{explanation}", image.name);
                let outcome = Outcome::Failed(format!("not reproducible: {explanation}"));
                StepReport::new(&image.name, step, outcome, started.elapsed())
            }
            Err(error) => {
                anstream::eprintln!("[{}] FAILED: {error:#}", image.name);
                StepReport::from_error(&image.name, step, &error, started.elapsed())
            }
        };
        reports.push(report);
    }
    Ok(reports)
}

enum Verdict {
    Reproducible(String),
    Differs(String),
}

fn verify_one(target: &ImageBuild, env: &Env) -> Result<Verdict> {
    let root = &target.options.root;
    // What it builds on comes from the recorded, verified archives.
    let mut digests = BTreeMap::new();
    for dependency in &target.depends_on {
        let record = BuildRecord::load(root, dependency)?;
        let archive = record.verified_archive(root)?;
        let layout = records::layout_path(root, dependency);
        if !layout.join("index.json").exists() {
            crate::oci::layout::unpack(&archive, &layout)?;
        }
        digests.insert(dependency.clone(), record.manifest_digest);
    }
    let mut archives = Vec::new();
    for run in ["first", "second"] {
        let build = target.with_archive(records::rebuild_archive(root, &target.image, run));
        crate::ui::say!("[{}] {run} build (--no-cache)", target.image);
        build_once(&build, &digests, env)
            .with_context(|| format!("{run} build of `{}`", target.image))?;
        archives.push(OciArchive::open(&build.archive)?);
    }
    let (first, second) = (&archives[0], &archives[1]);
    let first_sha = crate::hash::file_sha256(&first.path)?;
    let second_sha = crate::hash::file_sha256(&second.path)?;
    if first.manifest_digest() != second.manifest_digest() || first_sha != second_sha {
        return Ok(Verdict::Differs(explain::explain(first, second)?));
    }
    // And the recorded build, if any, is the same image.
    let recorded = match BuildRecord::load(root, &target.image) {
        Ok(record) => Some(record),
        Err(error) if crate::error::is_failure(&error) => None,
        Err(error) => return Err(error),
    };
    if let Some(record) = recorded {
        if record.manifest_digest != first.manifest_digest() {
            // Only bytes that are still the recorded ones are worth explaining.
            let archive = OciArchive::open(&record.verified_archive(root)?)?;
            return Ok(Verdict::Differs(format!(
                "both rebuilds agree, but differ from the recorded build {}:\n{}",
                record.archive,
                explain::explain(&archive, first)?
            )));
        }
    }
    Ok(Verdict::Reproducible(first.manifest_digest().to_string()))
}
