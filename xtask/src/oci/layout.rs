//! OCI layout directories unpacked from our own archives: what buildx takes as
//! an `oci-layout://` build context.

use std::path::Path;

use anyhow::{Context, Result};

/// Unpack an OCI archive into a layout directory, replacing an old one whole:
/// the new layout is staged beside it and renamed into place.
pub fn unpack(archive: &Path, layout: &Path) -> Result<()> {
    let staging = layout.with_extension("oci.partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    tar::Archive::new(file)
        .unpack(&staging)
        .with_context(|| format!("unpacking {}", archive.display()))?;
    if layout.exists() {
        std::fs::remove_dir_all(layout)?;
    }
    std::fs::rename(&staging, layout)?;
    Ok(())
}
