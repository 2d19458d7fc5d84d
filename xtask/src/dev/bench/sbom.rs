//! `cargo xtask bench sbom`: our `sbom` on an image of many small files,
//! built by the engine, against syft on the same archive: wall time and peak
//! resident memory of each, as its own process.

use std::path::Path;

use anyhow::Result;

use super::super::standins;
use super::super::test_env::{self, Layout};
use super::peak_rss;
use crate::commands::build::{plan, run::run_builds};
use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::records;
use crate::tools::process::Cmd;

#[derive(Debug, clap::Args)]
pub struct SbomBench {
    /// Files in the image (in folders of 100).
    #[arg(long, default_value_t = 10_000)]
    files: usize,
}

const IMAGE: &str = "many-files";

impl SbomBench {
    pub fn run(self, root: &Path) -> Result<()> {
        let layout = Layout::for_root(root);
        test_env::up_for(&layout, test_env::Purpose::Pipeline)?;
        let dir = root.join("target/bench-sbom");
        let prepared = standins::prepare(&layout, &dir)?;
        let checkout = &prepared.checkout;
        let image_dir = checkout.join(IMAGE);
        std::fs::create_dir_all(&image_dir)?;
        // Folders of 100 files, each file's content its own name.
        let script = format!(
            "B=/usr/bin/busybox; i=0; while [ $i -lt {files} ]; do d=/data/$((i / 100)); [ -d $d ] || $B mkdir -p $d; echo $i > $d/$i; i=$((i+1)); done",
            files = self.files
        );
        std::fs::write(
            image_dir.join("Containerfile"),
            format!(
                "ARG {arg}={registry}/{ns}\nARG SOURCE_DATE_EPOCH\nFROM ${{{arg}}}/core-busybox:1.37.0@{busybox} AS busybox\nFROM scratch\nCOPY --from=busybox . /\nRUN [\"/usr/bin/busybox\", \"sh\", \"-c\", \"{script}\"]\n",
                arg = settings::REGISTRY_ARG,
                registry = prepared.registry,
                ns = settings::STAGEX_NAMESPACE,
                busybox = prepared.standins["core-busybox"],
            ),
        )?;
        let catalog = Catalog::load(checkout)?;
        let options = plan::BuildOptions::new(checkout, 1_700_000_000);
        let builds = plan::plan(&catalog, &[IMAGE.to_string()], &options)?;
        crate::ui::say!("bench: building an image of {} files", self.files);
        let run = run_builds(&builds, 1, &prepared.env, "build");
        crate::report::fail_if_any(&run.reports, "bench sbom")?;

        let mut ours = Cmd::new(std::env::current_exe()?);
        ours.arg("--root")
            .arg(checkout)
            .args(["sbom", IMAGE, "--no-syft"])
            .envs(&prepared.env);
        let (our_seconds, our_kib) = peak_rss(&ours)?;
        let scratch = tempfile::tempdir()?;
        let mut syft = crate::tools::syft::plan(
            &records::archive_path(checkout, IMAGE),
            &scratch.path().join("syft.spdx.json"),
            &scratch.path().join("syft.cdx.json"),
        );
        syft.envs(&prepared.env);
        let (syft_seconds, syft_kib) = peak_rss(&syft)?;
        println!(
            "sbom: an image of {} files: ours {our_seconds:.2}s, peak RSS {:.1} MiB; syft on the same archive {syft_seconds:.2}s, {:.1} MiB ({:.1}x our time)",
            self.files,
            our_kib as f64 / 1024.0,
            syft_kib as f64 / 1024.0,
            syft_seconds / our_seconds
        );
        Ok(())
    }
}
