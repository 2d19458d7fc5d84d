//! What each step leaves behind for the next, one folder per image:
//!
//! ```text
//! out/<image>/image.tar        the OCI archive (build)
//! out/<image>/image.oci/       its OCI layout, for images built on it
//! out/<image>/build.json       the build record: digest, archive sha256, inputs
//! out/<image>/build.log        buildx's output
//! out/<image>/<step>.json      each later step's record (sbom, scan, malcontent, …)
//! out/<image>/…                the step's artefacts (sbom.spdx.json, grype.json, …)
//! out/sources/<context>/       source build contexts, at their pinned commit
//! ```
//!
//! Later steps read the build record and refuse an archive whose bytes
//! changed; `push` refuses an image whose gates did not pass for these bytes.

pub mod build;
pub mod publish;
pub mod steps;

use std::path::{Path, PathBuf};

pub const OUT_DIR: &str = "out";

/// Everything one image's steps leave.
pub fn image_dir(root: &Path, image: &str) -> PathBuf {
    root.join(OUT_DIR).join(image)
}

pub fn archive_path(root: &Path, image: &str) -> PathBuf {
    image_dir(root, image).join("image.tar")
}

pub fn record_path(root: &Path, image: &str) -> PathBuf {
    image_dir(root, image).join("build.json")
}

/// The OCI layout directory unpacked from the archive, for `oci-layout://` contexts.
pub fn layout_path(root: &Path, image: &str) -> PathBuf {
    image_dir(root, image).join("image.oci")
}

/// Where source build contexts are checked out.
pub fn source_dir(root: &Path, context: &str) -> PathBuf {
    root.join(OUT_DIR).join("sources").join(context)
}

/// Where verify-reproducible keeps one of its rebuilds (`first`, `second`).
pub fn rebuild_archive(root: &Path, image: &str, run: &str) -> PathBuf {
    image_dir(root, image)
        .join("reproduce")
        .join(run)
        .join("image.tar")
}
