//! `cargo xtask build`: reproducible buildx builds to OCI archives, in
//! dependency order and in parallel, each leaving a build record.
//!
//! [`plan`] is pure (which images, which exact commands); [`run`] starts the
//! processes.

pub mod plan;
pub mod run;

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{EngineArgs, ImageArgs, JobsArg, JsonArg};
use crate::model::catalog::Catalog;
use crate::pipeline::{self, Step};
use crate::report;
use crate::tools::{self, git, process::Env};
use plan::BuildOptions;

/// Build images with buildx into out/<image>/image.tar, prove each can start (check-runtime), and record it.
#[derive(Debug, Args, Clone, Default)]
pub struct Build {
    /// What they build on is built too.
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub jobs: JobsArg,
    /// Build without BuildKit's cache (CI does: a cached layer keeps the time it was first made, so one made before the last commit differs from a clean rebuild).
    #[arg(long)]
    pub no_cache: bool,
    /// Build only the named images: what they build on comes from its build
    /// record and verified archive (CI hands those on), never rebuilt.
    #[arg(long)]
    pub on_recorded: bool,
    /// Print the exact commands and change nothing (no report: `--json` is refused with it).
    #[arg(long, conflicts_with = "json")]
    pub dry_run: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

impl Build {
    pub fn run(self, root: &Path) -> Result<()> {
        let catalog = Catalog::load(root)?;
        // Unknown names are a usage error, before anything else is asked for.
        catalog.select(self.images.names())?;
        let env = Env::new();
        if !self.dry_run {
            tools::require(&pipeline::tools_for(&[Step::Build]), &env, "build")?;
        }
        let options = BuildOptions {
            no_cache: self.no_cache,
            ..options(root, &self.engine)?
        };
        let mut builds = plan::plan(&catalog, self.images.names(), &options)?;
        let mut prebuilt = std::collections::BTreeMap::new();
        if self.on_recorded {
            let named = self.images.select(&catalog)?;
            for build in builds.iter().filter(|b| !named.contains(&b.image)) {
                prebuilt.insert(build.image.clone(), recorded(root, &build.image)?);
            }
            builds.retain(|b| named.contains(&b.image));
        }
        if self.dry_run {
            print!("{}", plan::render_plan(&builds));
            return Ok(());
        }
        let run = run::run_builds_on(&builds, prebuilt, self.jobs.get(), &env, Step::Build.name());
        anstream::eprint!("\n{}", report::coloured_table(&run.reports));
        self.json.write("build", &run.reports, &())?;
        report::fail_if_any(&run.reports, "build")
    }
}

/// An image built earlier, as its record says, its archive's bytes checked
/// and its OCI layout (what builds on it reads) in place.
fn recorded(root: &Path, image: &str) -> Result<crate::records::build::BuildRecord> {
    let record = crate::records::build::BuildRecord::load(root, image)?;
    let archive = record.verified_archive(root)?;
    let layout = crate::records::layout_path(root, image);
    if !layout.join("index.json").exists() {
        crate::oci::layout::unpack(&archive, &layout)?;
    }
    Ok(record)
}

/// The options every build of this checkout shares: the epoch, the registry
/// prefix and the builder.
pub fn options(root: &Path, engine: &EngineArgs) -> Result<BuildOptions> {
    Ok(BuildOptions {
        registry_prefix: engine.registry.clone(),
        builder: engine.builder.clone(),
        ..BuildOptions::new(root, source_date_epoch(root)?)
    })
}

/// `SOURCE_DATE_EPOCH` from the environment, else the last commit's time.
pub fn source_date_epoch(root: &Path) -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH=`{value}` is not a whole number of seconds")
        }),
        Err(_) => git::last_commit_time(root),
    }
}
