//! `cargo xtask push IMAGE --to REPO[:TAG]`: the verified archive's bytes, blobs
//! first and the manifest last, so the registry serves the digest we built.

use std::io::Read;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use oci_client::Reference;
use xshell::Shell;

use crate::oci::archive::OciArchive;
use crate::oci::registry::{self, with_retries, Registry};
use crate::record::BuildRecord;

/// Push out/<image>.tar to a registry byte for byte (digest unchanged).
#[derive(Debug, Args)]
pub struct Push {
    /// The image (its build record names the archive).
    pub image: String,
    /// Destination `registry/repository[:tag]` (tag defaults to `latest`).
    #[arg(long, value_name = "REPO[:TAG]")]
    pub to: String,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `registry/repository:tag` as pushed.
    pub reference: String,
    /// `registry/repository`, to address the manifest by digest.
    pub repository: String,
    pub digest: String,
    pub blobs_uploaded: usize,
    pub blobs_skipped: usize,
    pub bytes_uploaded: u64,
}

impl Push {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let started = Instant::now();
        let pushed = push_image(&sh.current_dir(), &self.image, &self.to)?;
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
        Ok(())
    }
}

pub fn push_image(root: &std::path::Path, image: &str, to: &str) -> Result<Pushed> {
    let record = BuildRecord::load(root, image)?;
    let archive_path = record
        .verified_archive(root)
        .map_err(|e| crate::Failure(format!("{e:#}")))?;
    let archive = OciArchive::open(&archive_path)?;
    if archive.manifest_digest() != record.manifest_digest {
        return Err(crate::Failure(format!(
            "{} holds manifest {}, but the build record says {}: rebuild `{image}`",
            archive_path.display(),
            archive.manifest_digest(),
            record.manifest_digest
        ))
        .into());
    }
    let target = registry::parse_reference(to)?;
    if target.digest().is_some() {
        bail!("--to {to}: name a tag, not a digest; the digest is the archive's");
    }
    let registry = Registry::for_reference(&target)?;
    registry::block_on(async {
        registry.login().await;
        push_archive(&registry, &archive, &target).await
    })?
}

/// Push every blob the manifest names (skipping those the registry has),
/// then the manifest bytes, then read the digest back.
pub async fn push_archive(
    registry: &Registry,
    archive: &OciArchive,
    target: &Reference,
) -> Result<Pushed> {
    let client = &registry.client;
    let mut uploaded = 0;
    let mut skipped = 0;
    let mut bytes = 0;
    let blobs = std::iter::once(&archive.manifest.config).chain(archive.manifest.layers.iter());
    for blob in blobs {
        let exists = with_retries(&format!("HEAD blob {}", blob.digest), || {
            client.blob_exists(target, &blob.digest)
        })
        .await?;
        if exists {
            skipped += 1;
            continue;
        }
        let location = archive.blob_location(&blob.digest)?;
        if location.size != blob.size {
            bail!(
                "{}: blob {} is {} bytes, the manifest says {}",
                archive.path.display(),
                blob.digest,
                location.size,
                blob.size
            );
        }
        with_retries(&format!("upload blob {}", blob.digest), || {
            let stream = blob_stream(archive, &blob.digest);
            async move {
                let stream = stream.map_err(|e| {
                    oci_client::errors::OciDistributionError::GenericError(Some(format!("{e:#}")))
                })?;
                client
                    .push_blob_stream(target, stream, &blob.digest, Some(location.size))
                    .await
            }
        })
        .await?;
        uploaded += 1;
        bytes += blob.size;
    }
    let content_type = archive
        .manifest
        .media_type
        .clone()
        .unwrap_or_else(|| archive.manifest_media_type().to_string());
    with_retries("upload manifest", || {
        client.push_manifest_raw(
            target,
            archive.manifest_bytes.clone(),
            content_type
                .parse()
                .expect("a media type is a valid header value"),
        )
    })
    .await?;
    let served = with_retries("resolve the pushed reference", || {
        client.fetch_manifest_digest(target, &registry.auth)
    })
    .await?;
    if served != archive.manifest_digest() {
        bail!(
            "{target} resolves to {served} after the push, not {}: the registry rewrote the manifest",
            archive.manifest_digest()
        );
    }
    Ok(Pushed {
        reference: target.whole(),
        repository: format!("{}/{}", target.resolve_registry(), target.repository()),
        digest: served,
        blobs_uploaded: uploaded,
        blobs_skipped: skipped,
        bytes_uploaded: bytes,
    })
}

/// A blob as a stream of 1 MiB chunks, checked against its digest as it flows:
/// a mismatch fails the upload before the registry commits it.
fn blob_stream(
    archive: &OciArchive,
    digest: &str,
) -> Result<
    impl futures_util::Stream<
            Item = std::result::Result<bytes::Bytes, oci_client::errors::OciDistributionError>,
        > + Send
        + 'static,
> {
    use sha2::Digest as _;
    let reader = archive.blob_reader(digest)?;
    let expected = digest.to_string();
    let state = (reader, sha2::Sha256::new(), false);
    Ok(futures_util::stream::unfold(
        state,
        move |(mut reader, mut hasher, finished)| {
            let expected = expected.clone();
            async move {
                if finished {
                    return None;
                }
                let mut buffer = vec![0u8; 1 << 20];
                let mut filled = 0;
                while filled < buffer.len() {
                    match reader.read(&mut buffer[filled..]) {
                        Ok(0) => break,
                        Ok(read) => filled += read,
                        Err(error) => return Some((Err(error.into()), (reader, hasher, true))),
                    }
                }
                if filled == 0 {
                    let actual = format!("sha256:{}", crate::sha::hex(&hasher.finalize_reset()));
                    if actual != expected {
                        let error = oci_client::errors::OciDistributionError::GenericError(Some(
                            format!("blob {expected} reads as {actual}: the archive is corrupt"),
                        ));
                        return Some((Err(error), (reader, hasher, true)));
                    }
                    return None;
                }
                buffer.truncate(filled);
                hasher.update(&buffer);
                Some((Ok(bytes::Bytes::from(buffer)), (reader, hasher, false)))
            }
        },
    ))
}
