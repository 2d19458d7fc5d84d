//! OCI layout directories unpacked from our own archives: what buildx takes as
//! an `oci-layout://` build context.

use std::path::Path;

use anyhow::{Context, Result};

use super::reference::is_sha256_hex;
use super::tar::{clean, Budget, FileSource, Kind, Limits, TarReader};

/// Unpack an OCI archive into a layout directory, replacing an old one whole:
/// the new layout is staged beside it and renamed into place. Only what a
/// layout holds is written (`index.json`, `oci-layout`, `blobs/sha256/<hex>`),
/// each file created anew; anything else in the archive is refused.
pub fn unpack(archive: &Path, layout: &Path) -> Result<()> {
    let staging = layout.with_extension("oci.partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let source = FileSource::new(file).with_context(|| format!("reading {}", archive.display()))?;
    let budget = Budget::new(Limits::oci_archive());
    let mut tar = TarReader::new(source, &budget, archive.display().to_string());
    while let Some(entry) = tar.next_entry()? {
        let refuse = |why: &str| {
            crate::error::fail(format!(
                "{}: entry `{}` {why}: refused (an OCI layout holds index.json, oci-layout and blobs/sha256/<hex>)",
                archive.display(),
                entry.name.escape_debug()
            ))
        };
        let name = match clean(&entry.name) {
            Ok(Some(name)) => name,
            Ok(None) => continue,
            Err(why) => return refuse(why),
        };
        let is_blob = name
            .strip_prefix("blobs/sha256/")
            .is_some_and(is_sha256_hex);
        let destination = staging.join(&name);
        match entry.kind {
            Kind::Directory if name == "blobs" || name == "blobs/sha256" => {
                std::fs::create_dir_all(&destination)?;
            }
            Kind::File if is_blob || name == "index.json" || name == "oci-layout" => {
                if let Some(parent) = destination.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&destination)
                    .with_context(|| format!("writing {}", destination.display()))?;
                std::io::copy(&mut tar.data(), &mut file)
                    .with_context(|| format!("writing {}", destination.display()))?;
            }
            kind => return refuse(&format!("is a {}", kind.name())),
        }
    }
    if layout.exists() {
        std::fs::remove_dir_all(layout)?;
    }
    std::fs::rename(&staging, layout)?;
    Ok(())
}
