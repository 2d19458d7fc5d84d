//! `cargo xtask pins check|update`: every StageX pin against a release list
//! or a registry, and moving them in one step. (`digests` keeps its meaning:
//! DIGESTS.md.)
//!
//! `update` prepares every new file in memory, refuses before writing when
//! any target cannot be written, then writes them all (temporary files, then
//! renames); DIGESTS.md and cpes.txt are regenerated and lint runs after.

pub mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::args::JsonArg;
use crate::error::fail;
use crate::model::catalog::Catalog;
use crate::model::release::{self, Release};
use crate::oci::auth::Role;
use crate::oci::reference::ImageRef;
use crate::oci::registry::{self, Registries};
use plan::{Judged, Pin, State};

/// Check StageX pins against a release list or a registry, and move them.
#[derive(Debug, Args)]
pub struct Pins {
    #[command(subcommand)]
    pub action: PinsAction,
}

#[derive(Debug, Subcommand)]
pub enum PinsAction {
    /// Report each pin current, outdated (with the new tag and digest) or missing.
    Check(Check),
    /// Move pins (all outdated ones, or --package NAME…) in every Containerfile.
    Update(Update),
}

/// Where the truth about pins comes from.
#[derive(Debug, Args, Clone)]
pub struct Source {
    /// Resolve each pin's tag on this registry prefix (e.g. `docker.io/stagex`).
    #[arg(long, value_name = "PREFIX", conflicts_with = "release_list")]
    pub registry: Option<String>,
    /// Look each package up in a StageX release list (`stagex-release/<name>/`
    /// or StageX's own `*.txt` lists).
    #[arg(long, value_name = "DIR")]
    pub release_list: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Check {
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct Update {
    /// Only these packages (default: every outdated pin).
    #[arg(long = "package", value_name = "NAME")]
    pub packages: Vec<String>,
    /// Move to this release list: pins, `stagex-release/<name>/` and
    /// `stagex-release/RELEASE`.
    #[arg(long, value_name = "DIR", conflicts_with = "registry")]
    pub to_release: Option<PathBuf>,
    /// The release's name (default: from the folder's, e.g. `2026.04.0` of
    /// `release-2026.04.0-digests`).
    #[arg(long, value_name = "NAME", requires = "to_release")]
    pub release_name: Option<String>,
    /// Move each pin to what its tag resolves to on this registry prefix.
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

impl Pins {
    pub fn run(self, root: &Path) -> Result<()> {
        match self.action {
            PinsAction::Check(check) => check.run(root),
            PinsAction::Update(update) => update.run(root),
        }
    }
}

/// Every pin of the checkout, judged against `source`.
fn judge(root: &Path, source: &Source) -> Result<Vec<Judged>> {
    let catalog = Catalog::load(root)?;
    let pins = plan::pins(&catalog);
    match (&source.registry, &source.release_list) {
        (None, Some(dir)) => {
            let release = Release::load_dir(dir)
                .with_context(|| format!("reading the release list {}", dir.display()))?;
            Ok(pins
                .into_iter()
                .map(|pin| Judged {
                    state: plan::against_release(&pin, &release),
                    pin,
                })
                .collect())
        }
        (Some(prefix), None) => {
            let resolved = resolve_tags(prefix, &pins)?;
            Ok(pins
                .into_iter()
                .zip(resolved)
                .map(|(pin, digest)| Judged {
                    state: plan::against_registry(&pin, digest.as_deref()),
                    pin,
                })
                .collect())
        }
        _ => bail!("name where pins are checked: --registry PREFIX or --release-list DIR"),
    }
}

/// What each pin's tag (`latest` for a pin without one) resolves to under
/// `prefix`, by a HEAD on the manifest.
fn resolve_tags(prefix: &str, pins: &[Pin]) -> Result<Vec<Option<String>>> {
    let registries = Registries::from_environment();
    registry::block_on(async {
        let mut resolved = Vec::new();
        for pin in pins {
            let text = format!(
                "{}/{}:{}",
                prefix.trim_end_matches('/'),
                pin.package,
                pin.tag.as_deref().unwrap_or("latest")
            );
            let reference = ImageRef::parse(&text)?;
            let client = registries.get(&reference, Role::Source).await?;
            resolved.push(
                client
                    .manifest_digest(&reference)
                    .await
                    .with_context(|| format!("resolving {text}"))?,
            );
        }
        Ok::<_, anyhow::Error>(resolved)
    })?
}

fn short(digest: &str) -> String {
    crate::report::short_digest(digest)
}

fn pinned(tag: Option<&str>, digest: &str) -> String {
    match tag {
        Some(tag) => format!("{tag}@{}", short(digest)),
        None => short(digest),
    }
}

/// The check as a table for people.
fn render(judged: &[Judged]) -> String {
    let mut text = String::new();
    for j in judged {
        let state = match &j.state {
            State::Current => "current".to_string(),
            State::Outdated { tag, digest } => {
                format!("outdated → {}", pinned(tag.as_deref(), digest))
            }
            State::Missing => "missing".to_string(),
        };
        text.push_str(&format!(
            "{:<28} {:<40} {state}  ({})\n",
            j.pin.package,
            pinned(j.pin.tag.as_deref(), &j.pin.digest),
            j.pin.images.join(", ")
        ));
    }
    text
}

impl Check {
    pub fn run(self, root: &Path) -> Result<()> {
        let judged = judge(root, &self.source)?;
        eprint!("{}", render(&judged));
        self.json.write(&judged)?;
        let stale: Vec<&str> = judged
            .iter()
            .filter(|j| j.state != State::Current)
            .map(|j| j.pin.package.as_str())
            .collect();
        if stale.is_empty() {
            eprintln!("pins: {} pin(s), all current", judged.len());
            return Ok(());
        }
        fail(format!(
            "pins outdated or missing: {} (`cargo xtask pins update` with the same source moves them)",
            stale.join(", ")
        ))
    }
}

/// What `update` moved, for `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Moved {
    pub package: String,
    pub from: String,
    pub to: String,
    pub places: Vec<String>,
}

/// A release's name from its folder: `release-2026.04.0-digests` → `2026.04.0`.
fn release_name_of(dir: &Path) -> Result<String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name
        .trim_start_matches("release-")
        .trim_end_matches("-digests")
        .to_string();
    if name.is_empty() || name.starts_with('.') {
        bail!(
            "{}: no release name in the folder's name: pass --release-name",
            dir.display()
        );
    }
    Ok(name)
}

impl Update {
    pub fn run(self, root: &Path) -> Result<()> {
        let source = Source {
            registry: self.registry.clone(),
            release_list: self.to_release.clone(),
        };
        let judged = judge(root, &source)?;
        for name in &self.packages {
            if !judged.iter().any(|j| &j.pin.package == name) {
                bail!("--package {name}: no Containerfile pins it");
            }
        }
        let chosen: Vec<&Judged> = judged
            .iter()
            .filter(|j| self.packages.is_empty() || self.packages.contains(&j.pin.package))
            .collect();
        if let Some(missing) = chosen.iter().find(|j| j.state == State::Missing) {
            return fail(format!(
                "{} is not in that {}: nothing was changed (drop it from the Containerfiles, or update the others with --package)",
                missing.pin.package,
                if self.registry.is_some() { "registry" } else { "release list" }
            ));
        }
        // Every new content, in memory first.
        let mut contents: BTreeMap<PathBuf, String> = BTreeMap::new();
        let mut moved = Vec::new();
        for judged in &chosen {
            let State::Outdated { tag, digest } = &judged.state else {
                continue;
            };
            let files: Vec<String> = judged
                .pin
                .places
                .iter()
                .filter_map(|p| p.rsplit_once(':').map(|(file, _)| file.to_string()))
                .collect();
            for file in files.iter().collect::<std::collections::BTreeSet<_>>() {
                let path = root.join(file);
                let text = match contents.get(&path) {
                    Some(text) => text.clone(),
                    None => std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                };
                let (text, _) = plan::rewrite(file, &text, &judged.pin, tag.as_deref(), digest)?;
                contents.insert(path, text);
            }
            moved.push(Moved {
                package: judged.pin.package.clone(),
                from: pinned(judged.pin.tag.as_deref(), &judged.pin.digest),
                to: pinned(tag.as_deref(), digest),
                places: judged.pin.places.clone(),
            });
        }
        // The release list moves with the pins: to the new release, or (from
        // a registry) the current list records what the registry said.
        let release_root = root.join("stagex-release");
        match &self.to_release {
            Some(dir) => {
                let name = match &self.release_name {
                    Some(name) => name.clone(),
                    None => release_name_of(dir)?,
                };
                let release = Release::load_dir(dir)?;
                let target = release_root.join(&name);
                contents.extend(release_files(&target, &release));
                contents.insert(root.join(release::CURRENT_FILE), format!("{name}\n"));
            }
            None => {
                let mut current = Release::current(root)?;
                for judged in &chosen {
                    if let State::Outdated { tag, digest } = &judged.state {
                        let entry = current
                            .packages
                            .entry(judged.pin.package.clone())
                            .or_insert_with(|| release::Package {
                                name: judged.pin.package.clone(),
                                digest: String::new(),
                                version: None,
                            });
                        entry.digest = digest.trim_start_matches("sha256:").to_string();
                        entry.version = tag.clone();
                    }
                }
                if !moved.is_empty() {
                    eprintln!(
                        "note: stagex-release/{} now records the digests read from the registry for what moved",
                        current.name
                    );
                    contents.extend(release_files(&release_root.join(&current.name), &current));
                }
            }
        }
        write_all(&contents)?;
        for m in &moved {
            eprintln!(
                "moved {}: {} → {} ({})",
                m.package,
                m.from,
                m.to,
                m.places.join(", ")
            );
        }
        if moved.is_empty() {
            eprintln!("pins: nothing to move");
        }
        crate::commands::digests::ensure(root, crate::files::Mode::Write)?;
        crate::commands::sbom::ensure_cpes(root, crate::files::Mode::Write)?;
        self.json.write(&moved)?;
        crate::commands::lint::lint_repository(root)?.verdict()
    }
}

/// A release list in our layout: `digests/stagex.txt` and `versions.tsv`.
fn release_files(dir: &Path, release: &Release) -> BTreeMap<PathBuf, String> {
    let mut digests = String::new();
    let mut versions = String::from("image\tversion_tag\tdefined_in\tmanifest_digest\n");
    for package in release.packages.values() {
        digests.push_str(&format!("{} {}\n", package.digest, package.name));
        versions.push_str(&format!(
            "{}\t{}\t-\t{}\n",
            package.name,
            package.version.as_deref().unwrap_or("latest"),
            package.digest
        ));
    }
    let mut files = BTreeMap::new();
    files.insert(dir.join("digests/stagex.txt"), digests);
    files.insert(dir.join("versions.tsv"), versions);
    files
}

/// Write every file or none: a target that cannot be written is found before
/// anything is; temporary files first, renames last.
fn write_all(contents: &BTreeMap<PathBuf, String>) -> Result<()> {
    for path in contents.keys() {
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().readonly() {
                return fail(format!(
                    "{} is read-only: nothing was changed",
                    path.display()
                ));
            }
        }
    }
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (path, text) in contents {
        let dir = path.parent().unwrap_or(Path::new("."));
        let staged = std::fs::create_dir_all(dir).and_then(|()| {
            let temporary = dir.join(format!(
                ".{}.pins-{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            std::fs::write(&temporary, text).map(|()| temporary)
        });
        match staged {
            Ok(temporary) => written.push((temporary, path.clone())),
            Err(error) => {
                for (temporary, _) in &written {
                    let _ = std::fs::remove_file(temporary);
                }
                return Err(error).with_context(|| {
                    format!("writing beside {}: nothing was changed", path.display())
                });
            }
        }
    }
    for (temporary, path) in written {
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))?;
    }
    Ok(())
}
