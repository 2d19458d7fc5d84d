//! `cargo xtask verify-reproducible`: build twice without cache, compare the
//! bytes, and when they differ say which files differ and how.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use xshell::Shell;

use crate::build::{self, BuildOptions, Env, ImageBuild};
use crate::catalog::Catalog;
use crate::oci::archive::{FileEntry, OciArchive};
use crate::record::{self, BuildRecord};
use crate::report::{self, Outcome, StepReport};

/// Build each image twice with --no-cache and compare; explain any difference.
#[derive(Debug, Args, Clone, Default)]
pub struct VerifyReproducible {
    /// Images to check (default: all). What they build on must be built already.
    pub images: Vec<String>,
    /// Check every image (the default when none is named).
    #[arg(long, conflicts_with = "images")]
    pub all: bool,
    /// Pull StageX images through this prefix (as `build --registry`).
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
    /// A buildx builder to use.
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
}

impl VerifyReproducible {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let epoch = build::source_date_epoch(sh)?;
        let reports = self.reports(&sh.current_dir(), epoch, &Env::new())?;
        eprint!("\n{}", report::table(&reports));
        report::fail_if_any(&reports, "verify-reproducible")
    }

    pub fn reports(
        &self,
        root: &Path,
        source_date_epoch: u64,
        env: &Env,
    ) -> Result<Vec<StepReport>> {
        let catalog = Catalog::load(root)?;
        let options = BuildOptions {
            source_date_epoch,
            root: root.to_path_buf(),
            registry_prefix: self.registry.clone(),
            no_cache: true,
            builder: self.builder.clone(),
        };
        let selected = catalog.select(&self.images)?;
        let mut reports = Vec::new();
        for image in selected {
            let planned = build::plan(&catalog, std::slice::from_ref(&image.name), &options)?;
            let target = planned
                .into_iter()
                .find(|b| b.image == image.name)
                .expect("the plan holds the image it was asked for");
            let started = Instant::now();
            let outcome = verify_one(&target, env);
            let (outcome, digest) = match outcome {
                Ok(Verdict::Reproducible(digest)) => {
                    eprintln!("[{}] reproducible: {digest}", image.name);
                    (Outcome::Passed, Some(digest))
                }
                Ok(Verdict::Differs(explanation)) => {
                    eprintln!("[{}] NOT reproducible:\n{explanation}", image.name);
                    (
                        Outcome::Failed(format!("not reproducible: {explanation}")),
                        None,
                    )
                }
                Err(error) => {
                    eprintln!("[{}] FAILED: {error:#}", image.name);
                    (Outcome::Failed(format!("{error:#}")), None)
                }
            };
            let mut report = StepReport::new(
                &image.name,
                "verify-reproducible",
                outcome,
                started.elapsed(),
            );
            report.digest = digest;
            reports.push(report);
        }
        Ok(reports)
    }
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
        let layout = record::layout_path(root, dependency);
        if !layout.join("index.json").exists() {
            build::unpack_layout(&archive, &layout)?;
        }
        digests.insert(dependency.clone(), record.manifest_digest);
    }
    let dir = root.join(record::OUT_DIR).join("reproduce");
    std::fs::create_dir_all(&dir)?;
    let mut archives = Vec::new();
    for run in ["first", "second"] {
        let build = target.with_archive(dir.join(format!("{}.{run}.tar", target.image)));
        eprintln!("[{}] {run} build (--no-cache)", target.image);
        build::build_once(&build, &digests, env)
            .with_context(|| format!("{run} build of `{}`", target.image))?;
        archives.push(OciArchive::open(&build.archive)?);
    }
    let (first, second) = (&archives[0], &archives[1]);
    let first_sha = crate::sha::file_sha256(&first.path)?;
    let second_sha = crate::sha::file_sha256(&second.path)?;
    if first.manifest_digest() != second.manifest_digest() || first_sha != second_sha {
        return Ok(Verdict::Differs(explain(first, second)?));
    }
    // And the recorded build, if any, is the same image.
    if let Ok(record) = BuildRecord::load(root, &target.image) {
        if record.manifest_digest != first.manifest_digest() {
            let recorded = OciArchive::open(&root.join(&record.archive))?;
            return Ok(Verdict::Differs(format!(
                "both rebuilds agree, but differ from the recorded build {}:\n{}",
                record.archive,
                explain(&recorded, first)?
            )));
        }
    }
    Ok(Verdict::Reproducible(first.manifest_digest().to_string()))
}

/// What differs between two builds of one image, down to files in layers,
/// each layer named by the instruction that made it.
pub fn explain(first: &OciArchive, second: &OciArchive) -> Result<String> {
    let mut out = String::new();
    out.push_str(&format!(
        "  manifest {} ({})\n        vs {} ({})\n",
        first.manifest_digest(),
        name_of(&first.path),
        second.manifest_digest(),
        name_of(&second.path)
    ));
    let (config_a, config_b) = (first.config()?, second.config()?);
    for key in ["architecture", "os", "config"] {
        if config_a.get(key) != config_b.get(key) {
            out.push_str(&format!(
                "  image config `{key}` differs: {} vs {}\n",
                config_a.get(key).unwrap_or(&serde_json::Value::Null),
                config_b.get(key).unwrap_or(&serde_json::Value::Null)
            ));
        }
    }
    if config_a.get("created") != config_b.get("created") {
        out.push_str(
            "  image config `created` differs: is SOURCE_DATE_EPOCH the same for both builds?\n",
        );
    }
    let instructions = layer_instructions(&config_a);
    let (layers_a, layers_b) = (&first.manifest.layers, &second.manifest.layers);
    if layers_a.len() != layers_b.len() {
        out.push_str(&format!(
            "  layer count differs: {} vs {}\n",
            layers_a.len(),
            layers_b.len()
        ));
    }
    let mut differing_files = 0;
    for (index, (a, b)) in layers_a.iter().zip(layers_b).enumerate() {
        if a.digest == b.digest {
            continue;
        }
        let made_by = instructions
            .get(index)
            .map(|s| format!(" made by `{s}`"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  layer {}{made_by}: {} vs {}\n",
            index + 1,
            a.digest,
            b.digest
        ));
        let files_a = first.layer_files(a)?;
        let files_b = second.layer_files(b)?;
        let lines = compare_files(&files_a, &files_b);
        if lines.is_empty() {
            out.push_str("    same files and attributes: the difference is in the tar or compression framing (entry order, headers)\n");
        }
        differing_files += lines.len();
        for line in lines {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.push_str(&format!("  {differing_files} file(s) differ\n"));
    Ok(out)
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `created_by` of the history entries that produced a layer, in layer order.
fn layer_instructions(config: &serde_json::Value) -> Vec<String> {
    config["history"]
        .as_array()
        .map(|history| {
            history
                .iter()
                .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
                .map(|h| {
                    let text = h["created_by"].as_str().unwrap_or("?");
                    text.trim_end_matches(" # buildkit").to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One line per file that differs: `~ path: what changed`, `+ path` (only in the
/// second build), `- path` (only in the first).
pub fn compare_files(
    a: &BTreeMap<String, FileEntry>,
    b: &BTreeMap<String, FileEntry>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, left) in a {
        match b.get(path) {
            None => lines.push(format!("- {path} ({}, only in the first build)", left.kind)),
            Some(right) if right != left => {
                let mut changes = Vec::new();
                if left.kind != right.kind {
                    changes.push(format!("type {} → {}", left.kind, right.kind));
                }
                if left.sha256 != right.sha256 {
                    changes.push(format!(
                        "content sha256 {}… → {}…",
                        &left.sha256[..12],
                        &right.sha256[..12]
                    ));
                }
                if left.size != right.size {
                    changes.push(format!("size {} → {}", left.size, right.size));
                }
                if left.mode != right.mode {
                    changes.push(format!("mode {:o} → {:o}", left.mode, right.mode));
                }
                if (left.uid, left.gid) != (right.uid, right.gid) {
                    changes.push(format!(
                        "owner {}:{} → {}:{}",
                        left.uid, left.gid, right.uid, right.gid
                    ));
                }
                if left.mtime != right.mtime {
                    changes.push(format!(
                        "mtime {} → {} (is the timestamp clamped to SOURCE_DATE_EPOCH?)",
                        left.mtime, right.mtime
                    ));
                }
                if left.link != right.link {
                    changes.push(format!(
                        "link target {} → {}",
                        left.link.as_deref().unwrap_or("-"),
                        right.link.as_deref().unwrap_or("-")
                    ));
                }
                lines.push(format!("~ {path}: {}", changes.join("; ")));
            }
            Some(_) => {}
        }
    }
    for (path, right) in b {
        if !a.contains_key(path) {
            lines.push(format!(
                "+ {path} ({}, only in the second build)",
                right.kind
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: char, size: u64, mtime: u64) -> FileEntry {
        FileEntry {
            kind: "file",
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
            link: None,
            sha256: sha.to_string().repeat(64),
        }
    }

    #[test]
    fn file_differences_are_spelled_out() {
        let a = BTreeMap::from([
            ("stamp".to_string(), file('a', 30, 1)),
            ("same".to_string(), file('c', 1, 1)),
            ("gone".to_string(), file('d', 1, 1)),
        ]);
        let mut moved = file('c', 1, 1);
        moved.mode = 0o755;
        moved.mtime = 99;
        let b = BTreeMap::from([
            ("stamp".to_string(), file('b', 31, 1)),
            ("same".to_string(), moved),
            ("new".to_string(), file('e', 1, 1)),
        ]);
        insta::assert_snapshot!(compare_files(&a, &b).join("\n"));
    }
}
