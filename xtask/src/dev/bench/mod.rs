//! `cargo xtask bench`: measured ratios, printed, never asserted. Each figure
//! compares runs made here, in one invocation, on the same input; the line a
//! benchmark prints is the line docs/development.md quotes.

mod mirror;
mod sbom;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::standins::{self, Prepared};
use super::test_env::{self, Layout};
use crate::commands::args::default_jobs;
use crate::commands::build::{plan, run::run_builds};
use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::tools::process::Cmd;

/// Benchmarks that print ratios measured in one run.
#[derive(Debug, Args)]
pub struct Bench {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Independent fixture images built with --jobs 1, then with the default jobs.
    Build {
        /// How many independent images.
        #[arg(long, default_value_t = 4)]
        images: usize,
        /// Shell-loop iterations of deterministic CPU work in each image.
        #[arg(long, default_value_t = 3_000_000)]
        work: u64,
    },
    /// `mirror` against `skopeo copy` and an unchecked copier on the same images;
    /// no-op re-mirror; peak memory.
    Mirror(mirror::MirrorBench),
    /// `sbom` on an image of many files, against syft on the same archive:
    /// time and peak memory.
    Sbom(sbom::SbomBench),
    /// The limit `bench mirror` compares against, run as its own process as
    /// `mirror` is: copy SOURCE/NAME:1 to TARGET/unchecked/NAME:1, no checks.
    #[command(hide = true)]
    CopyUnchecked {
        source: String,
        target: String,
        names: Vec<String>,
    },
}

impl Bench {
    pub fn run(self, root: &Path) -> Result<()> {
        match self.what {
            What::Build { images, work } => bench_build(root, images, work),
            What::Mirror(bench) => bench.run(root),
            What::Sbom(bench) => bench.run(root),
            What::CopyUnchecked {
                source,
                target,
                names,
            } => mirror::copy_unchecked(&source, &target, &names),
        }
    }
}

fn bench_build(root: &Path, images: usize, work: u64) -> Result<()> {
    let layout = Layout::for_root(root);
    test_env::up_for(&layout, test_env::Purpose::Pipeline)?;
    let dir = root.join("target/bench-build");
    let prepared = standins::prepare(&layout, &dir)?;
    let checkout = dir.join("independent");
    write_independent_images(&checkout, &prepared, images, work)?;
    let catalog = Catalog::load(&checkout)?;
    let options = plan::BuildOptions {
        no_cache: true,
        ..plan::BuildOptions::new(&checkout, 1_700_000_000)
    };
    let builds = plan::plan(&catalog, &[], &options)?;
    let parallel_jobs = default_jobs();
    let mut seconds = Vec::new();
    for jobs in [1, parallel_jobs] {
        crate::ui::say!("bench: {} images, --jobs {jobs}, --no-cache", builds.len());
        let started = Instant::now();
        let run = run_builds(&builds, jobs, &prepared.env, "build");
        let elapsed = started.elapsed().as_secs_f64();
        crate::report::fail_if_any(&run.reports, "bench build")?;
        seconds.push(elapsed);
    }
    println!(
        "build: {} independent images, {work} iterations each: --jobs 1 {:.1}s, --jobs {parallel_jobs} {:.1}s, speed-up {:.2}x",
        builds.len(),
        seconds[0],
        seconds[1],
        seconds[0] / seconds[1]
    );
    Ok(())
}

/// `images` Containerfiles that depend on nothing of ours and each burn CPU
/// deterministically in a shell loop.
fn write_independent_images(
    checkout: &Path,
    prepared: &Prepared,
    images: usize,
    work: u64,
) -> Result<()> {
    if checkout.exists() {
        std::fs::remove_dir_all(checkout)?;
    }
    let busybox = &prepared.standins["core-busybox"];
    for index in 1..=images {
        let dir = checkout.join(format!("work-{index}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("Containerfile"),
            format!(
                "ARG {arg}={registry}/{ns}\nARG SOURCE_DATE_EPOCH\nFROM ${{{arg}}}/core-busybox:1.37.0@{busybox} AS busybox\nFROM scratch\nCOPY --from=busybox . /\nRUN [\"/usr/bin/busybox\", \"sh\", \"-c\", \"i=0; while [ $i -lt {work} ]; do i=$((i+1)); done; echo {index} $i > /work.txt\"]\n",
                arg = settings::REGISTRY_ARG,
                registry = prepared.registry,
                ns = settings::STAGEX_NAMESPACE,
            ),
        )?;
    }
    Ok(())
}

/// Run a command and sample its peak resident memory (KiB) until it exits:
/// the sum of the peaks (VmHWM) of it and every process under it, so a
/// wrapper that runs the real program as a child (PyPI's syft) is counted
/// whole.
fn peak_rss(command: &Cmd) -> Result<(f64, u64)> {
    let started = Instant::now();
    let handle = command.start_quiet()?;
    let pid = handle.pids().first().copied().context("no pid")?;
    let mut peaks: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    loop {
        for process in process_tree(pid) {
            if let Some(kib) = std::fs::read_to_string(format!("/proc/{process}/status"))
                .ok()
                .and_then(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok())
                })
            {
                let peak = peaks.entry(process).or_default();
                *peak = (*peak).max(kib);
            }
        }
        if let Some(output) = handle.try_wait()? {
            if !output.status.success() {
                bail!("`{}` failed", command.display());
            }
            return Ok((started.elapsed().as_secs_f64(), peaks.values().sum()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `pid` and every process below it, from /proc's children lists.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = vec![pid];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) {
            for task in tasks.flatten() {
                if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                    tree.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
        index += 1;
    }
    tree
}
