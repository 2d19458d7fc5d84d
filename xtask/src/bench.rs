//! `cargo xtask bench build`: measured ratios, printed, never asserted. Each
//! figure compares two runs made here, in one invocation, on the same input.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use xshell::Shell;

use crate::build::{self, BuildOptions};
use crate::catalog::Catalog;
use crate::demo;
use crate::settings;
use crate::test_env::{self, Layout};

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
    /// `mirror` against `skopeo copy` on the same images; no-op re-mirror; peak memory.
    Mirror {
        /// Images for the throughput run (each 3 layers).
        #[arg(long, default_value_t = 10)]
        images: usize,
        /// MiB of random data per layer.
        #[arg(long, default_value_t = 16)]
        layer_mib: usize,
        /// References for the no-op re-mirror.
        #[arg(long, default_value_t = 50)]
        noop_refs: usize,
        /// MiB of the single layer copied while peak memory is measured.
        #[arg(long, default_value_t = 1024)]
        big_layer_mib: usize,
    },
}

impl Bench {
    pub fn run(self, sh: &Shell) -> Result<()> {
        match self.what {
            What::Build { images, work } => bench_build(sh, images, work),
            What::Mirror {
                images,
                layer_mib,
                noop_refs,
                big_layer_mib,
            } => crate::bench_mirror::run(sh, images, layer_mib, noop_refs, big_layer_mib),
        }
    }
}

fn bench_build(sh: &Shell, images: usize, work: u64) -> Result<()> {
    let root = sh.current_dir();
    let layout = Layout::for_root(&root);
    test_env::up(sh, &layout)?;
    let dir = root.join("target/bench-build");
    let prepared = demo::prepare(&layout, &dir)?;
    let checkout = dir.join("independent");
    write_independent_images(&checkout, &prepared, images, work)?;
    let catalog = Catalog::load(&checkout)?;
    let options = BuildOptions {
        no_cache: true,
        ..BuildOptions::new(&checkout, 1_700_000_000)
    };
    let builds = build::plan(&catalog, &[], &options)?;
    let parallel_jobs = build::default_jobs();
    let mut seconds = Vec::new();
    for jobs in [1, parallel_jobs] {
        eprintln!("bench: {} images, --jobs {jobs}, --no-cache", builds.len());
        let started = Instant::now();
        let reports = build::run_builds(&builds, jobs, &prepared.env);
        let elapsed = started.elapsed().as_secs_f64();
        crate::report::fail_if_any(&reports, "bench build")?;
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
    prepared: &demo::Prepared,
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
