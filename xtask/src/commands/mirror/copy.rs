//! Copying one verified reference: an index's children before the index, an
//! image's blobs before its manifest, manifests byte for byte. Blobs the target
//! has are skipped, blobs another of its repositories has are mounted, the rest
//! stream from source to target and are committed only once proven.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::fail;
use crate::oci::manifest::{AnyManifest, Descriptor};
use crate::oci::reference::ImageRef;
use crate::oci::registry::{retrying_within, Registry};
use crate::oci::transfer::{checked, empty_blob_is_empty, refused_by_check};
use crate::report::{human_size, short_digest};

/// Blobs of one image copied at once.
const BLOBS_AT_ONCE: usize = 4;

/// Indexes hold images; nothing nests deeper.
const MAX_DEPTH: usize = 1;

/// What one copy did.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Counts {
    pub blobs_copied: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub bytes_copied: u64,
}

enum BlobOutcome {
    Present,
    Mounted,
    Copied(u64),
}

/// Blobs known to be in the target registry this run: digest → a repository
/// holding it, to mount from.
#[derive(Default)]
pub struct KnownBlobs(Mutex<BTreeMap<String, ImageRef>>);

impl KnownBlobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ImageRef>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember(&self, digest: &str, target: &ImageRef) {
        self.lock()
            .entry(digest.to_string())
            .or_insert_with(|| target.clone());
    }

    /// A repository of the target, other than `target`'s, that has the blob.
    fn elsewhere(&self, digest: &str, target: &ImageRef) -> Option<ImageRef> {
        self.lock()
            .get(digest)
            .filter(|from| from.api_repository() != target.api_repository())
            .cloned()
    }
}

/// The two ends of one copy.
pub struct Ends<'a> {
    pub source: &'a Registry,
    pub target: &'a Registry,
    pub known: &'a KnownBlobs,
}

/// A manifest as copied: its bytes and media type.
pub struct Copied {
    pub bytes: bytes::Bytes,
    pub media_type: String,
}

/// Copy the manifest `source` (by digest) and everything it points at to
/// `target` (by the same digest).
pub async fn copy_manifest(
    ends: &Ends<'_>,
    source: &ImageRef,
    target: &ImageRef,
    counts: &mut Counts,
) -> Result<Copied> {
    copy_manifest_at(ends, source, target, counts, 0).await
}

fn copy_manifest_at<'a>(
    ends: &'a Ends<'_>,
    source: &'a ImageRef,
    target: &'a ImageRef,
    counts: &'a mut Counts,
    depth: usize,
) -> futures_util::future::BoxFuture<'a, Result<Copied>> {
    Box::pin(async move {
        let expected = source
            .digest
            .clone()
            .with_context(|| format!("{source} is not addressed by digest"))?;
        let bytes = ends.source.pull_manifest(source).await?;
        let actual = format!("sha256:{}", crate::hash::hex_sha256(&bytes));
        if actual != expected {
            return crate::error::fail(format!(
                "{source} served a manifest with digest {actual}: not the signed {expected}"
            ));
        }
        let manifest = AnyManifest::parse(&bytes).with_context(|| format!("manifest {source}"))?;
        let copied = Copied {
            media_type: manifest.media_type().to_string(),
            bytes: bytes.clone(),
        };
        if ends.target.manifest_digest(target).await? == Some(expected.clone()) {
            return Ok(copied);
        }
        match &manifest {
            AnyManifest::Index(index) => {
                if depth >= MAX_DEPTH {
                    bail!(
                        "{source}: an index inside an index; manifests nest no deeper than an index of images"
                    );
                }
                for child in &index.manifests {
                    let child_source = source.with_digest(&child.digest)?;
                    let child_target = target.with_digest(&child.digest)?;
                    copy_manifest_at(ends, &child_source, &child_target, counts, depth + 1).await?;
                }
            }
            AnyManifest::Image(image) => {
                // Blobs of one image travel side by side; the manifest waits for all of them.
                let blobs: Vec<Descriptor> = image.blobs().cloned().collect();
                let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(blobs)
                    .map(|blob| copy_blob(ends, source, target, blob))
                    .buffer_unordered(BLOBS_AT_ONCE)
                    .try_collect()
                    .await?;
                for outcome in outcomes {
                    match outcome {
                        BlobOutcome::Present => counts.blobs_present += 1,
                        BlobOutcome::Mounted => counts.blobs_mounted += 1,
                        BlobOutcome::Copied(bytes) => {
                            counts.blobs_copied += 1;
                            counts.bytes_copied += bytes;
                        }
                    }
                }
            }
        }
        ends.target
            .push_manifest(target, &bytes, &copied.media_type)
            .await?;
        Ok(copied)
    })
}

async fn copy_blob(
    ends: &Ends<'_>,
    source: &ImageRef,
    target: &ImageRef,
    blob: Descriptor,
) -> Result<BlobOutcome> {
    let digest = blob.digest.as_str();
    let (from_repository, to_repository) = (source.api_repository(), target.api_repository());
    empty_blob_is_empty(&blob)?;
    if ends.target.blob_exists(&to_repository, digest).await? {
        ends.known.remember(digest, target);
        return Ok(BlobOutcome::Present);
    }
    // Another repository of the target has it: mount instead of copying.
    if let Some(from) = ends.known.elsewhere(digest, target) {
        let mounted = ends
            .target
            .mount_blob(&to_repository, &from.api_repository(), digest)
            .await
            .unwrap_or(false)
            && ends.target.blob_exists(&to_repository, digest).await?;
        if mounted {
            ends.known.remember(digest, target);
            return Ok(BlobOutcome::Mounted);
        }
    }
    let started = Instant::now();
    // Each try is bounded by the idle limits of both ends; all of them
    // together by a deadline, so that a source trickling bytes ends too.
    let deadline = ends.target.transfer_deadline(blob.size);
    let copied = retrying_within(&format!("copy blob {digest}"), deadline, || async {
        let pulled = ends.source.pull_blob(&from_repository, digest).await?;
        let stream = checked(pulled, digest, blob.size);
        ends.target
            .upload_blob(&to_repository, digest, blob.size, stream)
            .await
    })
    .await;
    match copied {
        // The source's bytes are not the signed blob: the reference fails.
        Err(error) if refused_by_check(&error) => {
            return fail(format!("{source}: {error:#}"));
        }
        other => other?,
    }
    crate::ui::say!(
        "[{target}] blob {} ({}) copied in {:.1}s",
        short_digest(digest),
        human_size(blob.size),
        started.elapsed().as_secs_f64()
    );
    ends.known.remember(digest, target);
    Ok(BlobOutcome::Copied(blob.size))
}
