//! `cargo xtask sbom`: what each built image is made of, from what we know
//! (the Containerfile's pinned StageX inputs and the archive's own files), as
//! SPDX 2.3 and CycloneDX 1.6; syft's view beside it when syft is installed;
//! and `cpes.txt`, the CPEs of every pinned package.

pub mod attribution;
pub mod cyclonedx;
pub mod document;
pub mod foreign;
pub mod spdx;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{ImageArgs, JsonArg};
use crate::files::{ensure_file, write_atomically, Mode, Outcome as FileOutcome};
use crate::model::catalog::Catalog;
use crate::model::cpes::CpeMap;
use crate::model::release::Release;
use crate::oci::archive::OciArchive;
use crate::pipeline::Step;
use crate::records::build::BuildRecord;
use crate::records::image_dir;
use crate::records::steps::{leave_record, StepRecord};
use crate::report::{self, Outcome, StepReport};
use crate::tools::{process::Env, Status, Tool};

pub const CPES_FILE: &str = "cpes.txt";

/// A document written as one format.
type Render = fn(&document::Document) -> serde_json::Value;
const CPES_COMMAND: &str = "cargo xtask sbom --cpes";

/// Write each built image's SBOM (SPDX 2.3 and CycloneDX 1.6), and syft's; --cpes: cpes.txt.
#[derive(Debug, Args)]
pub struct Sbom {
    #[command(flatten)]
    pub images: ImageArgs,
    /// Write cpes.txt (the CPEs of every pinned package) instead of SBOMs.
    #[arg(long, conflicts_with_all = ["images", "all"])]
    pub cpes: bool,
    /// With --cpes: exit 1 with a diff when cpes.txt is out of date.
    #[arg(long, requires = "cpes")]
    pub check: bool,
    /// Leave syft's view out even when syft is installed.
    #[arg(long, conflicts_with = "cpes")]
    pub no_syft: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

impl Sbom {
    pub fn run(self, root: &Path) -> Result<()> {
        if self.cpes {
            let mode = if self.check { Mode::Check } else { Mode::Write };
            match ensure_cpes(root, mode)? {
                FileOutcome::Unchanged => crate::ui::say!("{CPES_FILE} is up to date"),
                FileOutcome::Written => crate::ui::say!("wrote {CPES_FILE}"),
            }
            return Ok(());
        }
        let catalog = Catalog::load(root)?;
        let images = self.images.select(&catalog)?;
        let reports = sbom_images(root, &catalog, &images, !self.no_syft, &Env::new())?;
        anstream::eprint!("\n{}", report::coloured_table(&reports));
        self.json.write("sbom", &reports, &())?;
        report::fail_if_any(&reports, Step::Sbom.name())
    }
}

/// The SBOMs of `images`, one report each; syft's beside ours when `syft`
/// is asked for and installed.
pub fn sbom_images(
    root: &Path,
    catalog: &Catalog,
    images: &[String],
    syft: bool,
    env: &Env,
) -> Result<Vec<StepReport>> {
    let release = Release::current(root)?;
    let versions: BTreeMap<String, String> = release
        .packages
        .values()
        .filter_map(|p| p.version.clone().map(|v| (p.name.clone(), v)))
        .collect();
    let cpes = CpeMap::load(root)?;
    let syft = syft && Tool::Syft.check(env).status == Status::Ok;
    let mut reports = Vec::new();
    for name in images {
        let started = Instant::now();
        let step = Step::Sbom.name();
        let made = leave_record(root, name, step, || {
            sbom_one(root, catalog, name, &versions, &cpes, syft, env)
        });
        let report = match made {
            Ok(record) => {
                crate::ui::say!("[{name}] sbom: {}", record.summary);
                StepReport::new(name, step, Outcome::Passed, started.elapsed())
            }
            Err(error) => {
                anstream::eprintln!("[{name}] sbom FAILED: {error:#}");
                StepReport::from_error(name, step, &error, started.elapsed())
            }
        };
        reports.push(report);
    }
    Ok(reports)
}

fn sbom_one(
    root: &Path,
    catalog: &Catalog,
    name: &str,
    versions: &BTreeMap<String, String>,
    cpes: &CpeMap,
    syft: bool,
    env: &Env,
) -> Result<StepRecord> {
    let image = catalog
        .image(name)
        .with_context(|| format!("no image `{name}`"))?;
    let record = BuildRecord::load(root, name)?;
    record.check_containerfile(root)?;
    let archive_path = record.verified_archive(root)?;
    let archive = OciArchive::open(&archive_path)?;
    let rootfs = crate::oci::rootfs::read(&archive)?;
    let history = layer_history(&archive)?;
    let layers = attribution::layer_sources(image, &history);
    let document = document::document(&document::Inputs {
        image,
        record: &record,
        rootfs: &rootfs,
        layers: &layers,
        cpes,
        versions,
    });
    let dir = image_dir(root, name);
    let relative = |file: &str| format!("{}/{name}/{file}", crate::records::OUT_DIR);
    let mut artefacts = Vec::new();
    // One document in memory at a time.
    let renderers: [(&str, Render); 2] = [
        ("sbom.spdx.json", spdx::render),
        ("sbom.cdx.json", cyclonedx::render),
    ];
    for (file, render) in renderers {
        let mut text = serde_json::to_string_pretty(&render(&document))?;
        text.push('\n');
        write_atomically(&dir.join(file), text.as_bytes())?;
        artefacts.push(relative(file));
    }
    let attributed = document.files.iter().filter(|f| f.from.is_some()).count();
    let mut summary = format!(
        "{} package(s), {} file(s), {attributed} traced to a package",
        document.packages.len(),
        document.files.len()
    );
    if syft {
        let (spdx_path, cdx_path) = (dir.join("syft.spdx.json"), dir.join("syft.cdx.json"));
        crate::tools::syft::run(&archive_path, &spdx_path, &cdx_path, env)?;
        artefacts.push(relative("syft.spdx.json"));
        artefacts.push(relative("syft.cdx.json"));
        summary.push_str(&format!(
            "; syft found {} package(s)",
            syft_packages(&spdx_path)?
        ));
    } else {
        summary.push_str("; syft's view left out (not installed, or --no-syft)");
    }
    let mut step = StepRecord::new(&record, Step::Sbom.name(), Outcome::Passed, summary);
    step.artefacts = artefacts;
    step.save(root)?;
    Ok(step)
}

/// `created_by` of the history entries that made a layer, in layer order.
pub fn layer_history(archive: &OciArchive) -> Result<Vec<String>> {
    let config = archive.config()?;
    let history: Vec<String> = config["history"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
                .map(|h| h["created_by"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    // Without one history entry per layer, nothing can be attributed.
    if history.len() == archive.manifest.layers.len() {
        Ok(history)
    } else {
        Ok(vec![String::new(); archive.manifest.layers.len()])
    }
}

/// How many packages syft lists in its SPDX document.
fn syft_packages(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(foreign::packages(&bytes)
        .with_context(|| format!("syft's {}", path.display()))?
        .len())
}

/// `cpes.txt`: every CPE of a pinned package, with the package and images.
pub fn render_cpes(catalog: &Catalog, release: &Release, cpes: &CpeMap) -> String {
    // CPE → (the packages that carry it, the images using them).
    let mut rows: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for image in &catalog.images {
        for (input, package) in image.stagex_inputs() {
            let version = input
                .reference
                .tag
                .clone()
                .filter(|t| t != "latest")
                .or_else(|| release.package(package).and_then(|p| p.version.clone()));
            if let Some(cpe) = cpes.cpe(package, version.as_deref()) {
                let row = rows.entry(cpe).or_default();
                row.0.insert(package.to_string());
                row.1.insert(image.name.clone());
            }
        }
    }
    let mut out = String::from(
        "# generated by `cargo xtask sbom --cpes`, do not edit\n# The CPE 2.3 name of every pinned StageX package NVD knows (sbom/cpe-map.tsv),\n# for scanners that look vulnerabilities up by CPE. Packages StageX tags only\n# `latest` have no known version and so no CPE here.\n",
    );
    for (cpe, (packages, images)) in &rows {
        let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
        let images: Vec<&str> = images.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "{cpe}  # {}: {}\n",
            packages.join(", "),
            images.join(", ")
        ));
    }
    out
}

/// The CPEs listed in a cpes.txt text.
pub fn parse_cpes(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|cpe| cpe.starts_with("cpe:2.3:"))
        .map(str::to_string)
        .collect()
}

pub fn ensure_cpes(root: &Path, mode: Mode) -> Result<FileOutcome> {
    let catalog = Catalog::load(root)?;
    let release = Release::current(root)?;
    let cpes = CpeMap::load(root)?;
    ensure_file(
        &root.join(CPES_FILE),
        &render_cpes(&catalog, &release, &cpes),
        mode,
        CPES_COMMAND,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpes_txt_is_up_to_date() {
        ensure_cpes(&crate::files::project_root(), Mode::Check).unwrap();
        let text = std::fs::read_to_string(crate::files::project_root().join(CPES_FILE)).unwrap();
        let cpes = parse_cpes(&text);
        assert!(cpes.contains(&"cpe:2.3:a:musl-libc:musl:1.2.5:*:*:*:*:*:*:*".to_string()));
        assert!(cpes.iter().all(|c| c.split(':').count() == 13), "{cpes:?}");
    }
}
