//! What each step leaves behind for the next, under `out/`: the archive, its
//! OCI layout, the build log and the build record. Later steps read the record
//! and refuse an archive whose bytes changed.

pub mod build;

use std::path::{Path, PathBuf};

pub const OUT_DIR: &str = "out";

pub fn archive_path(root: &Path, image: &str) -> PathBuf {
    root.join(OUT_DIR).join(format!("{image}.tar"))
}

pub fn record_path(root: &Path, image: &str) -> PathBuf {
    root.join(OUT_DIR).join(format!("{image}.json"))
}

/// The OCI layout directory unpacked from the archive, for `oci-layout://` contexts.
pub fn layout_path(root: &Path, image: &str) -> PathBuf {
    root.join(OUT_DIR).join(format!("{image}.oci"))
}

/// Where source build contexts are checked out.
pub fn source_dir(root: &Path, context: &str) -> PathBuf {
    root.join(OUT_DIR).join("sources").join(context)
}

/// Where verify-reproducible keeps its two rebuilds.
pub fn reproduce_dir(root: &Path) -> PathBuf {
    root.join(OUT_DIR).join("reproduce")
}
