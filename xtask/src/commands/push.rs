//! `cargo xtask push IMAGE --to REPO[:TAG]`: the verified archive's bytes, blobs
//! first and the manifest last, so the registry serves the digest we built.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use super::args::JsonArg;
use crate::error::fail;
use crate::oci::archive::OciArchive;
use crate::oci::auth::Role;
use crate::oci::reference::ImageRef;
use crate::oci::registry::{self, Registry};
use crate::oci::transfer::{self, Pushed};
use crate::records::build::BuildRecord;

/// Push out/<image>.tar to a registry byte for byte (digest unchanged).
#[derive(Debug, Args)]
pub struct Push {
    /// The image (its build record names the archive).
    pub image: String,
    /// Destination `registry/repository[:tag]` (tag defaults to `latest`).
    #[arg(long, value_name = "REPO[:TAG]")]
    pub to: String,
    #[command(flatten)]
    pub json: JsonArg,
}

impl Push {
    pub fn run(self, root: &Path) -> Result<()> {
        let started = Instant::now();
        let pushed = push_image(root, &self.image, &self.to)?;
        eprintln!(
            "pushed {} as {}@{} in {:.1}s: {} blob(s) uploaded ({}), {} already there",
            self.image,
            pushed.reference,
            pushed.digest,
            started.elapsed().as_secs_f64(),
            pushed.blobs_uploaded,
            crate::report::human_size(pushed.bytes_uploaded),
            pushed.blobs_skipped
        );
        self.json.write(&pushed)
    }
}

/// Push the recorded archive of `image` to `to`, after proving the archive is
/// the one that was built.
pub fn push_image(root: &Path, image: &str, to: &str) -> Result<Pushed> {
    let target = ImageRef::parse(to)?;
    if target.digest.is_some() {
        bail!("--to {to}: name a tag, not a digest; the digest is the archive's");
    }
    let record = BuildRecord::load(root, image)?;
    let archive_path = record.verified_archive(root)?;
    let archive = OciArchive::open(&archive_path)?;
    if archive.manifest_digest() != record.manifest_digest {
        return fail(format!(
            "{} holds manifest {}, but the build record says {}: rebuild `{image}`",
            archive_path.display(),
            archive.manifest_digest(),
            record.manifest_digest
        ));
    }
    registry::block_on(async {
        let registry = Registry::connect_to(&target, Role::Target).await?;
        transfer::push_archive(&registry, &archive, &target).await
    })?
}
