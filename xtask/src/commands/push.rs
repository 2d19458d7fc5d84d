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
use crate::pipeline::Step;
use crate::records::build::BuildRecord;
use crate::records::steps::unmet_gates;

/// Push out/<image>/image.tar to a registry byte for byte (digest unchanged),
/// once its sbom, scan and malcontent gates passed for these bytes.
#[derive(Debug, Args)]
pub struct Push {
    /// The image (its build record names the archive).
    pub image: String,
    /// Destination `registry/repository[:tag]` (tag defaults to `latest`).
    #[arg(long, value_name = "REPO[:TAG]")]
    pub to: String,
    /// Push even when a gate (sbom, scan, malcontent) did not pass for these bytes; says which.
    #[arg(long)]
    pub allow_ungated: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

impl Push {
    pub fn run(self, root: &Path) -> Result<()> {
        let started = Instant::now();
        let waived = if self.allow_ungated { Step::GATES } else { &[] };
        let pushed = push_image(root, &self.image, &self.to, waived)?;
        crate::ui::say!(
            "pushed {} as {}@{} in {:.1}s: {} blob(s) uploaded ({}), {} already there",
            self.image,
            pushed.reference,
            pushed.digest,
            started.elapsed().as_secs_f64(),
            pushed.blobs_uploaded,
            crate::report::human_size(pushed.bytes_uploaded),
            pushed.blobs_skipped
        );
        self.json.write("push", &[], &pushed)
    }
}

/// Push the recorded archive of `image` to `to`, after proving the archive is
/// the one that was built and that every gate but `waived` passed for it.
pub fn push_image(root: &Path, image: &str, to: &str, waived: &[Step]) -> Result<Pushed> {
    let target = ImageRef::parse(to)?;
    if target.digest.is_some() {
        bail!("--to {to}: name a tag, not a digest; the digest is the archive's");
    }
    push_verified(root, image, &target, waived)
}

/// [`push_image`] by digest only: the blobs and the manifest go in, no tag
/// moves (publish moves the tag once the digest is signed and verified).
pub fn push_image_by_digest(
    root: &Path,
    image: &str,
    repository: &ImageRef,
    waived: &[Step],
) -> Result<Pushed> {
    let record = BuildRecord::load(root, image)?;
    let target = repository.with_digest(&record.manifest_digest)?;
    push_verified(root, image, &target, waived)
}

fn push_verified(root: &Path, image: &str, target: &ImageRef, waived: &[Step]) -> Result<Pushed> {
    let record = BuildRecord::load(root, image)?;
    let archive_path = record.verified_archive(root)?;
    check_gates(root, &record, waived)?;
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
        let registry = Registry::connect_to(target, Role::Target).await?;
        transfer::push_archive(&registry, &archive, target).await
    })?
}

/// Refuse unless every gate passed for `record`'s bytes; a waived gate that
/// did not is said out loud, never silently let through.
pub fn check_gates(root: &Path, record: &BuildRecord, waived: &[Step]) -> Result<()> {
    let required: Vec<&str> = Step::GATES
        .iter()
        .filter(|gate| !waived.contains(gate))
        .map(|gate| gate.name())
        .collect();
    let unmet = unmet_gates(root, record, &required)?;
    if !unmet.is_empty() {
        return fail(format!(
            "{} is not cleared to ship: {} (or pass --allow-ungated to ship it anyway)",
            record.image,
            unmet.join("; ")
        ));
    }
    let waived: Vec<&str> = waived.iter().map(|gate| gate.name()).collect();
    for unmet in unmet_gates(root, record, &waived)? {
        anstream::eprintln!("warning: {} ships ungated: {unmet}", record.image);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::steps::StepRecord;
    use crate::report::Outcome;

    /// Shipping needs every gate passed for these bytes; a waived gate lets
    /// the image through (said out loud), a gate not waived never does.
    #[test]
    fn only_gates_passed_or_waived_clear_an_image() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let build = BuildRecord::example("base", "aa");
        let error = check_gates(root, &build, &[]).unwrap_err().to_string();
        assert!(
            error.starts_with("base is not cleared to ship: sbom has not run"),
            "{error}"
        );
        for gate in ["sbom", "scan"] {
            StepRecord::new(&build, gate, Outcome::Passed, String::new())
                .save(root)
                .unwrap();
        }
        let error = check_gates(root, &build, &[]).unwrap_err().to_string();
        assert!(error.contains("malcontent has not run"), "{error}");
        assert!(!error.contains("sbom"), "{error}");
        check_gates(root, &build, &[Step::Malcontent]).unwrap();
        let error = check_gates(root, &build, &[Step::Scan])
            .unwrap_err()
            .to_string();
        assert!(error.contains("malcontent has not run"), "{error}");
        StepRecord::new(&build, "malcontent", Outcome::Passed, String::new())
            .save(root)
            .unwrap();
        check_gates(root, &build, &[]).unwrap();
    }
}
