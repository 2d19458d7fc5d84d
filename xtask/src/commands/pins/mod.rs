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
use crate::model::facts;
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
        crate::ui::say_more!("{}", render(&judged));
        self.json.write("pins-check", &[], &judged)?;
        let stale: Vec<&str> = judged
            .iter()
            .filter(|j| j.state != State::Current)
            .map(|j| j.pin.package.as_str())
            .collect();
        if stale.is_empty() {
            crate::ui::say!("pins: {} pin(s), all current", judged.len());
            return Ok(());
        }
        fail(format!(
            "pins outdated or missing: {} (`cargo xtask pins update` with the same source moves them)",
            stale.join(", ")
        ))
    }
}

/// What `update` moved, for `--json`.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
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
    if !release::is_name(&name) {
        bail!(
            "{}: no release name in the folder's name: pass --release-name",
            dir.display()
        );
    }
    Ok(name)
}

/// Files to write, by path: the new contents.
type Contents = BTreeMap<PathBuf, Vec<u8>>;

impl Update {
    pub fn run(self, root: &Path) -> Result<()> {
        let source = Source {
            registry: self.registry.clone(),
            release_list: self.to_release.clone(),
        };
        if let Some(name) = &self.release_name {
            if !release::is_name(name) {
                bail!("--release-name `{name}`: letters, digits, `.`, `_`, `-` only");
            }
        }
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
        // Moving to a release moves every pin's release: what is left behind
        // must already be in the new one.
        if self.to_release.is_some() {
            let behind: Vec<&str> = judged
                .iter()
                .filter(|j| !chosen.contains(j) && j.state != State::Current)
                .map(|j| j.pin.package.as_str())
                .collect();
            if !behind.is_empty() {
                return fail(format!(
                    "the checkout would pin against the new release, but {} would stay outside it: nothing was changed (move them too, or leave out --package)",
                    behind.join(", ")
                ));
            }
        }
        let (contents, moved) = self.plan_files(root, &chosen)?;
        let mut transaction = Transaction::begin(root, &contents)?;
        let result = transaction.write(&contents).and_then(|()| {
            crate::commands::digests::ensure(root, crate::files::Mode::Write)?;
            crate::commands::sbom::ensure_cpes(root, crate::files::Mode::Write)?;
            crate::commands::lint::lint_repository(root)?.verdict()
        });
        if let Err(error) = result {
            transaction.roll_back();
            return Err(error.context("pins update: every file is as it was"));
        }
        for m in &moved {
            crate::ui::say!(
                "moved {}: {} → {} ({})",
                m.package,
                m.from,
                m.to,
                m.places.join(", ")
            );
        }
        if moved.is_empty() {
            crate::ui::say!("pins: nothing to move");
        }
        self.json.write("pins-update", &[], &moved)
    }

    /// Every new file, in memory: the Containerfiles (each parsed again, so
    /// nothing unreadable is written), and the release list.
    fn plan_files(&self, root: &Path, chosen: &[&Judged]) -> Result<(Contents, Vec<Moved>)> {
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        let mut moved = Vec::new();
        for judged in chosen {
            let State::Outdated { tag, digest } = &judged.state else {
                continue;
            };
            let files: std::collections::BTreeSet<String> = judged
                .pin
                .places
                .iter()
                .filter_map(|p| p.rsplit_once(':').map(|(file, _)| file.to_string()))
                .collect();
            for file in files {
                let text = match texts.get(&file) {
                    Some(text) => text.clone(),
                    None => release::read_list(&root.join(&file))?,
                };
                let (text, _) = plan::rewrite(&file, &text, &judged.pin, tag.as_deref(), digest)?;
                texts.insert(file, text);
            }
            moved.push(Moved {
                package: judged.pin.package.clone(),
                from: pinned(judged.pin.tag.as_deref(), &judged.pin.digest),
                to: pinned(tag.as_deref(), digest),
                places: judged.pin.places.clone(),
            });
        }
        let mut contents = Contents::new();
        for (file, text) in texts {
            let path = root.join(&file);
            crate::model::containerfile::Containerfile::parse(&path, &text)
                .and_then(|parsed| parsed.external_refs())
                .with_context(|| format!("{file} as it would be written: nothing was changed"))?;
            contents.insert(path, text.into_bytes());
        }
        let release_root = root.join("stagex-release");
        // The facts of every moved package need a new reading (lint notes
        // them until they are read): carried to the release the pins move to.
        let facts_file = release_root
            .join(release::current_name(root)?)
            .join(facts::FILE);
        let moved_packages: Vec<&str> = moved.iter().map(|m| m.package.as_str()).collect();
        let facts_text = match facts_file.symlink_metadata() {
            Ok(_) => Some(facts::mark_needs_reading(
                &release::read_list(&facts_file)?,
                &moved_packages,
            )),
            Err(_) => None,
        };
        let facts_dest = match &self.to_release {
            Some(dir) => match &self.release_name {
                Some(name) => release_root.join(name),
                None => release_root.join(release_name_of(dir)?),
            },
            None => release_root.join(release::current_name(root)?),
        };
        if let Some(text) = facts_text {
            contents.insert(facts_dest.join(facts::FILE), text.into_bytes());
        }
        match &self.to_release {
            Some(dir) => {
                let name = match &self.release_name {
                    Some(name) => name.clone(),
                    None => release_name_of(dir)?,
                };
                let release = Release::load_dir(dir)?;
                let has_versions = release.packages.values().any(|p| p.version.is_some());
                let tagged_moves = chosen
                    .iter()
                    .any(|j| j.pin.tag.is_some() && matches!(j.state, State::Outdated { .. }));
                if !has_versions && tagged_moves {
                    return fail(format!(
                        "{}: this list has no versions.tsv (StageX's own *.txt lists): tags, and the CPEs scanners match on, would be lost; copy StageX's package-versions table there as versions.tsv",
                        dir.display()
                    ));
                }
                contents.extend(copied_release(dir, &release_root.join(&name))?);
                contents.insert(
                    root.join(release::CURRENT_FILE),
                    format!("{name}\n").into_bytes(),
                );
            }
            None => {
                let current = release::current_name(root)?;
                contents.extend(synced_release(&release_root.join(&current), chosen)?);
            }
        }
        Ok((contents, moved))
    }
}

/// A release's lists copied as they are (`digests/*.txt` or `*.txt`, and
/// `versions.tsv`), under `dest`.
fn copied_release(source: &Path, dest: &Path) -> Result<Contents> {
    let lists = if source.join("digests").is_dir() {
        source.join("digests")
    } else {
        source.to_path_buf()
    };
    let mut contents = Contents::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&lists)
        .with_context(|| format!("reading {}", lists.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !release::is_name(name.trim_end_matches(".txt")) {
            bail!("{}: not a list name we copy", path.display());
        }
        contents.insert(
            dest.join("digests").join(&name),
            release::read_list(&path)?.into_bytes(),
        );
    }
    let versions = source.join("versions.tsv");
    if versions.symlink_metadata().is_ok() {
        contents.insert(
            dest.join("versions.tsv"),
            release::read_list(&versions)?.into_bytes(),
        );
    }
    Ok(contents)
}

/// The current release's lists with the moved packages' lines changed in
/// place (the digests file that lists each, its versions.tsv line; every
/// other line as it was): what the registry said, recorded.
fn synced_release(dir: &Path, chosen: &[&Judged]) -> Result<Contents> {
    let moves: BTreeMap<&str, (&Option<String>, &str)> = chosen
        .iter()
        .filter_map(|j| match &j.state {
            State::Outdated { tag, digest } => Some((
                j.pin.package.as_str(),
                (tag, digest.trim_start_matches("sha256:")),
            )),
            _ => None,
        })
        .collect();
    let mut contents = Contents::new();
    if moves.is_empty() {
        return Ok(contents);
    }
    let mut found: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let digests = dir.join("digests");
    let mut lists: Vec<PathBuf> = std::fs::read_dir(&digests)
        .with_context(|| format!("reading {}", digests.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    lists.sort();
    for path in lists {
        let text = release::read_list(&path)?;
        let mut changed = false;
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let package = line.trim_end().split_once(' ').map(|(_, p)| p.trim());
            match package.and_then(|p| moves.get_key_value(p)) {
                Some((package, (_, hex))) => {
                    out.push_str(&format!("{hex} {package}\n"));
                    found.insert(package);
                    changed = true;
                }
                None => out.push_str(line),
            }
        }
        if changed {
            contents.insert(path, out.into_bytes());
        }
    }
    if let Some(absent) = moves.keys().find(|p| !found.contains(*p)) {
        return fail(format!(
            "{absent} is not in {}: nothing was changed (add it with `pins update --to-release`)",
            dir.display()
        ));
    }
    let versions = dir.join("versions.tsv");
    let text = release::read_list(&versions)?;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let columns: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
        match moves.get(columns[0]) {
            Some((tag, hex)) if columns.len() == 4 => out.push_str(&format!(
                "{}\t{}\t{}\t{hex}\n",
                columns[0],
                tag.as_deref().unwrap_or("latest"),
                columns[2]
            )),
            _ => out.push_str(line),
        }
    }
    contents.insert(versions, out.into_bytes());
    Ok(contents)
}

/// What `update` writes, undone as a whole when anything after the first
/// byte fails: each file's bytes before (or that it was not there).
struct Transaction {
    before: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Transaction {
    /// Remember every file about to change, generated ones included; refuse
    /// when one cannot be written.
    fn begin(root: &Path, contents: &Contents) -> Result<Transaction> {
        let mut paths: Vec<PathBuf> = contents.keys().cloned().collect();
        paths.push(root.join(crate::commands::digests::FILE));
        paths.push(root.join(crate::commands::sbom::CPES_FILE));
        let mut before = Vec::new();
        for path in paths {
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() || !meta.is_file() => {
                    return fail(format!(
                        "{} is not a regular file: nothing was changed",
                        path.display()
                    ))
                }
                Ok(meta) if meta.permissions().readonly() => {
                    return fail(format!(
                        "{} is read-only: nothing was changed",
                        path.display()
                    ))
                }
                Ok(_) => before.push((path.clone(), Some(std::fs::read(&path)?))),
                Err(_) => before.push((path, None)),
            }
        }
        Ok(Transaction { before })
    }

    fn write(&mut self, contents: &Contents) -> Result<()> {
        for (path, bytes) in contents {
            crate::files::write_atomically(path, bytes)?;
        }
        Ok(())
    }

    /// Put every file back as it was.
    fn roll_back(&mut self) {
        for (path, bytes) in &self.before {
            let restored = match bytes {
                Some(bytes) => crate::files::write_atomically(path, bytes),
                None => std::fs::remove_file(path)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(Into::into),
            };
            if let Err(error) = restored {
                anstream::eprintln!("error: could not restore {}: {error:#}", path.display());
            }
        }
    }
}
