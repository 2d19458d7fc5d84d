//! `verify-reproducible --against REF@sha256:…`: an independent rebuild of
//! a published image. Its provenance attestation is fetched and verified
//! against the project's key (cosign), read strictly as ours, checked against
//! this checkout (the Containerfile's bytes, its StageX pins, the source
//! commits, the images it was built on), then the image is rebuilt here with
//! the parameters it names and the digests compared; when they differ, the
//! published image is pulled (every blob checked) and the difference
//! explained down to the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::explain;
use crate::commands::args::EngineArgs;
use crate::commands::build::{self, plan::BuildOptions, run::build_once};
use crate::commands::provenance::plan::{self as provenance, Provenance};
use crate::commands::signing;
use crate::error::fail;
use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::oci::archive::OciArchive;
use crate::records::{self, build::BuildRecord};
use crate::tools::process::Env;

/// What the rebuild found.
pub enum Outcome {
    /// The rebuild is the published digest.
    Same { image: String, digest: String },
    /// It is not: why, down to files.
    Differs { image: String, explanation: String },
}

/// Rebuild `reference` from its verified provenance and compare.
pub fn against(
    root: &Path,
    reference: &str,
    public_key: &Path,
    tlog: bool,
    engine: &EngineArgs,
    env: &Env,
) -> Result<Outcome> {
    let pinned = signing::by_digest(reference)?;
    let digest = pinned.image.digest.clone().unwrap_or_default();
    let catalog = Catalog::load(root)?;
    // The signature and the provenance attestation, against our key; the
    // provenance of this digest, naming this checkout's pins.
    let predicate =
        crate::commands::provenance::verified(&pinned, public_key, tlog, Some(&catalog))?;
    let definition = &predicate.build_definition;
    let image = definition.external_parameters.image.clone();
    crate::ui::say!(
        "[{image}] provenance of {} verified against {}; rebuilding here",
        pinned.image,
        public_key.display()
    );
    let options = rebuild_options(root, &predicate, engine)?;
    check_checkout(root, &catalog, &predicate)?;
    let planned = build::plan::plan(&catalog, std::slice::from_ref(&image), &options)?;
    let target = planned
        .into_iter()
        .find(|b| b.image == image)
        .with_context(|| format!("the plan for `{image}` does not build it"))?;
    // The sources it names are the commits this checkout pins.
    for source in &target.sources {
        let named = predicate_dependency(&predicate, provenance::KIND_SOURCE, source.name)
            .and_then(|d| d.digest.get("gitCommit").cloned());
        if named.as_deref() != source.commit {
            return fail(format!(
                "the provenance names source `{}` at {}, this checkout pins {}: check out the commit it was built from",
                source.name,
                named.as_deref().unwrap_or("no commit"),
                source.commit.unwrap_or("no commit")
            ));
        }
    }
    // The images it was built on: our builds of them here must be those digests.
    let mut digests = BTreeMap::new();
    for dependency in &target.depends_on {
        let named = predicate_dependency(&predicate, provenance::KIND_IMAGE, dependency)
            .and_then(|d| d.digest.get("sha256").cloned())
            .map(|hex| format!("sha256:{hex}"));
        let Some(named) = named else {
            return fail(format!(
                "the provenance does not name `{dependency}`, which `{image}` builds on here: the Containerfile differs from the one it was built from"
            ));
        };
        let here = BuildRecord::load(root, dependency).ok();
        match here {
            Some(record) if record.manifest_digest == named => {
                let archive = record.verified_archive(root)?;
                let layout = records::layout_path(root, dependency);
                if !layout.join("index.json").exists() {
                    crate::oci::layout::unpack(&archive, &layout)?;
                }
                digests.insert(dependency.clone(), named);
            }
            other => {
                return fail(format!(
                    "`{image}` was built on `{dependency}` {named}, but this checkout's build of it is {}: build it first from the same commit (`cargo xtask build {dependency}`), or check it the same way (`cargo xtask verify-reproducible --against <its reference>@{named}`)",
                    other
                        .map(|r| r.manifest_digest)
                        .unwrap_or_else(|| "missing".into())
                ));
            }
        }
    }
    let rebuild = target.with_archive(records::rebuild_archive(root, &image, "against"));
    crate::ui::say!("[{image}] rebuild (--no-cache)");
    build_once(&rebuild, &digests, env).with_context(|| format!("rebuilding `{image}`"))?;
    let rebuilt = OciArchive::open(&rebuild.archive)?;
    if rebuilt.manifest_digest() == digest {
        return Ok(Outcome::Same { image, digest });
    }
    let published_path = published_archive(root, &image);
    crate::commands::compare::pull(&pinned.image.to_string(), &published_path)
        .with_context(|| format!("pulling {} to compare", pinned.image))?;
    let published = OciArchive::open(&published_path)?;
    Ok(Outcome::Differs {
        explanation: format!(
            "the rebuild of {} is not the published image:\n{}",
            pinned.image,
            explain::explain(&published, &rebuilt)?
        ),
        image,
    })
}

/// Where the published image is pulled to, to be compared.
fn published_archive(root: &Path, image: &str) -> PathBuf {
    records::rebuild_archive(root, image, "published")
}

/// The options the provenance names: its epoch, its registry prefix (a
/// mirror of the same digests may stand in: `--registry`), no cache.
fn rebuild_options(
    root: &Path,
    predicate: &Provenance,
    engine: &EngineArgs,
) -> Result<BuildOptions> {
    let internal = &predicate.build_definition.internal_parameters;
    let epoch: u64 = match internal.source_date_epoch.parse() {
        Ok(epoch) => epoch,
        Err(_) => {
            return fail(format!(
                "the provenance's sourceDateEpoch `{}` is not a whole number of seconds",
                internal.source_date_epoch
            ))
        }
    };
    let recorded_prefix = (internal.registry_prefix != settings::UPSTREAM_PREFIX)
        .then(|| internal.registry_prefix.clone());
    let base = build::options(root, engine)?;
    Ok(BuildOptions {
        source_date_epoch: epoch,
        registry_prefix: engine.registry.clone().or(recorded_prefix),
        no_cache: true,
        ..base
    })
}

/// The Containerfile here is the one the image was built from.
fn check_checkout(root: &Path, catalog: &Catalog, predicate: &Provenance) -> Result<()> {
    let external = &predicate.build_definition.external_parameters;
    let Some(image) = catalog.image(&external.image) else {
        return fail(format!(
            "the provenance is of `{}`, which is not an image of this checkout",
            external.image
        ));
    };
    if image.containerfile_path() != external.containerfile.path {
        return fail(format!(
            "the provenance names {}, this checkout has `{}` in {}",
            external.containerfile.path,
            external.image,
            image.containerfile_path()
        ));
    }
    let path = root.join(&external.containerfile.path);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let here = crate::hash::hex_sha256(&bytes);
    if here != external.containerfile.sha256 {
        let commit = predicate_dependency(predicate, provenance::KIND_CHECKOUT, "checkout")
            .and_then(|d| d.digest.get("gitCommit").cloned());
        return fail(format!(
            "{} has sha256 {here}, the image was built from one with {}: check out {}",
            external.containerfile.path,
            external.containerfile.sha256,
            match commit {
                Some(commit) => format!("commit {commit}, which the provenance names"),
                None => "the commit it was built from".to_string(),
            }
        ));
    }
    Ok(())
}

fn predicate_dependency<'a>(
    predicate: &'a Provenance,
    kind: &str,
    name: &str,
) -> Option<&'a provenance::ResourceDescriptor> {
    predicate
        .build_definition
        .resolved_dependencies
        .iter()
        .find(|d| d.kind() == kind && d.name == name)
}
