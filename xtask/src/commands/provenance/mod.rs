//! `cargo xtask provenance [IMAGE…|--all]`: `out/<image>/provenance.json`,
//! an in-toto Statement v1 with an SLSA provenance v1 predicate, made from
//! the build record alone ([`plan`]), so that two builds of one commit give
//! the same bytes. `attest --provenance` and `publish` attest it;
//! `verify-reproducible --against` rebuilds from a published one.

pub mod plan;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::args::{ImageArgs, JsonArg};
use crate::error::fail;
use crate::model::catalog::Catalog;
use crate::records::build::BuildRecord;
use crate::records::image_dir;
use crate::report::{self, Outcome, StepReport};
use plan::Statement;

/// The most a provenance file or attested predicate may hold.
pub const MAX_BYTES: usize = 1 << 20;

/// Write out/<image>/provenance.json (SLSA provenance v1 in an in-toto statement) from each build record.
#[derive(Debug, Args)]
pub struct Provenance {
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

/// One provenance written, for `--json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Written {
    pub image: String,
    /// `sha256:<hex>`: the subject.
    pub manifest_digest: String,
    /// Relative to the checkout.
    pub path: String,
    /// sha256 of the file's bytes.
    pub sha256: String,
}

impl Provenance {
    pub fn run(self, root: &Path) -> Result<()> {
        let catalog = Catalog::load(root)?;
        let names = self.images.select(&catalog)?;
        let mut reports = Vec::new();
        let mut written = Vec::new();
        for image in &names {
            let started = Instant::now();
            match write(root, image) {
                Ok(done) => {
                    crate::ui::say!(
                        "[{image}] {} (subject {}, sha256 {})",
                        done.path,
                        done.manifest_digest,
                        done.sha256
                    );
                    let mut row =
                        StepReport::new(image, "provenance", Outcome::Passed, started.elapsed());
                    row.digest = Some(done.manifest_digest.clone());
                    reports.push(row);
                    written.push(done);
                }
                Err(error) => {
                    anstream::eprintln!("[{image}] FAILED: {error:#}");
                    reports.push(StepReport::from_error(
                        image,
                        "provenance",
                        &error,
                        started.elapsed(),
                    ));
                }
            }
        }
        self.json.write("provenance", &reports, &written)?;
        report::fail_if_any(&reports, "provenance")
    }
}

/// `out/<image>/provenance.json`.
pub fn path(root: &Path, image: &str) -> PathBuf {
    image_dir(root, image).join("provenance.json")
}

/// The statement of `image`'s recorded build, after checking the record
/// still describes the Containerfile and the archive.
pub fn make(root: &Path, image: &str) -> Result<Statement> {
    let record = BuildRecord::load(root, image)?;
    record.check_containerfile(root)?;
    record.verified_archive(root)?;
    plan::statement(&record, env!("CARGO_PKG_VERSION"))
}

/// Make and write `image`'s provenance.
pub fn write(root: &Path, image: &str) -> Result<Written> {
    let statement = make(root, image)?;
    let text = plan::render(&statement)?;
    let file = path(root, image);
    crate::files::write_atomically(&file, text.as_bytes())?;
    Ok(Written {
        image: image.to_string(),
        manifest_digest: statement.subject_digest().unwrap_or_default(),
        path: file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string(),
        sha256: crate::hash::hex_sha256(text.as_bytes()),
    })
}

/// A provenance file, read within [`MAX_BYTES`] and parsed strictly as ours.
pub fn read(file: &Path) -> Result<Statement> {
    use std::io::Read as _;
    let handle =
        std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let mut bytes = Vec::new();
    handle
        .take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", file.display()))?;
    if bytes.len() > MAX_BYTES {
        return fail(format!(
            "{} is larger than {MAX_BYTES} bytes: not a provenance of ours",
            file.display()
        ));
    }
    let statement: Statement = match serde_json::from_slice(&bytes) {
        Ok(statement) => statement,
        Err(error) => {
            return fail(format!(
                "{}:{}:{}: not an in-toto statement with our SLSA provenance: {error} (make it with `cargo xtask provenance IMAGE`)",
                file.display(),
                error.line(),
                error.column()
            ))
        }
    };
    if let Err(error) = statement.check_ours() {
        return fail(format!("{}: {error:#}", file.display()));
    }
    Ok(statement)
}

/// The StageX digests `image`'s Containerfile pins, from the catalog.
pub fn pinned_digests(
    catalog: &Catalog,
    image: &str,
) -> Result<std::collections::BTreeSet<String>> {
    let Some(found) = catalog.image(image) else {
        return fail(format!(
            "the provenance is of `{image}`, which is not an image of this checkout"
        ));
    };
    Ok(found
        .stagex_inputs()
        .filter_map(|(input, _)| input.reference.digest.clone())
        .collect())
}

/// The provenance attested to `pinned`, after cosign verified its signature
/// and the attestation against `public_key` (and, given a catalog, that its
/// StageX dependencies are the catalog's pins).
pub fn verified(
    pinned: &crate::commands::signing::Pinned,
    public_key: &std::path::Path,
    tlog: bool,
    catalog: Option<&crate::model::catalog::Catalog>,
) -> anyhow::Result<plan::Provenance> {
    use crate::commands::signing;
    use anyhow::Context;
    let cosign = signing::installed_cosign()?;
    let verifying = signing::verifying(cosign.generation, public_key, tlog)?;
    let verified = signing::verify(
        pinned,
        &verifying,
        &[(crate::tools::cosign::PredicateKind::Slsaprovenance1, None)],
        signing::Access::Read,
        catalog,
    )?;
    let attested = verified
        .attestations
        .first()
        .context("cosign verified no provenance attestation")?;
    serde_json::from_value(attested.predicate.clone())
        .context("the attested provenance is not ours")
}
