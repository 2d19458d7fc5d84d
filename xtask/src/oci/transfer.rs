//! Moving blobs and manifests into a registry so that only what was verified
//! is ever committed: every blob stream is checked against its size and its
//! digest as it flows, its last chunk held back until that check passed, and
//! the registry's upload session is committed only after a clean stream (see
//! [`super::registry::Registry::upload_blob`]).

use std::io::Read;

use anyhow::{bail, Result};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use super::archive::OciArchive;
use super::manifest::Descriptor;
use super::reference::ImageRef;
use super::registry::{retrying_within, Registry};
use crate::error::{fail, Failure};

/// Why a blob stream ended early.
#[derive(Debug)]
pub enum BlobError {
    /// The source failed to deliver (worth another try).
    Read(std::io::Error),
    /// The bytes are not the blob: wrong size or digest (final).
    Refused(String),
}

impl std::fmt::Display for BlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobError::Read(error) => write!(f, "reading the blob: {error}"),
            BlobError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BlobError {}

type Chunk = std::result::Result<Bytes, BlobError>;

/// Whether an error is our refusal of a blob's bytes.
pub fn refused_by_check(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<BlobError>(),
            Some(BlobError::Refused(_))
        )
    })
}

/// Pass `inner` through, one chunk behind, hashing as it flows: a chunk is
/// released only when the next one arrives, and the last one only when the
/// stream ended with exactly `size` bytes matching `digest`. Any mismatch ends
/// the stream with [`BlobError::Refused`] instead of its last chunk.
pub fn checked<S>(inner: S, digest: &str, size: u64) -> impl Stream<Item = Chunk> + Send + 'static
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static,
{
    struct State<S> {
        inner: S,
        pending: Option<Bytes>,
        seen: u64,
        hasher: Sha256,
        done: bool,
    }
    let expected = digest.to_string();
    let state = State {
        inner,
        pending: None,
        seen: 0,
        hasher: Sha256::new(),
        done: false,
    };
    futures_util::stream::unfold(state, move |mut state| {
        let expected = expected.clone();
        async move {
            if state.done {
                return None;
            }
            let fail = |mut state: State<S>, message: String| {
                state.done = true;
                Some((Err(BlobError::Refused(message)), state))
            };
            loop {
                match state.inner.next().await {
                    Some(Ok(chunk)) => {
                        state.seen += chunk.len() as u64;
                        if state.seen > size {
                            return fail(
                                state,
                                format!("blob {expected} is longer than its {size} bytes"),
                            );
                        }
                        state.hasher.update(&chunk);
                        if chunk.is_empty() {
                            continue;
                        }
                        match state.pending.replace(chunk) {
                            Some(previous) => return Some((Ok(previous), state)),
                            None => continue,
                        }
                    }
                    Some(Err(error)) => {
                        state.done = true;
                        return Some((Err(BlobError::Read(error)), state));
                    }
                    None => {
                        if state.seen != size {
                            let seen = state.seen;
                            return fail(
                                state,
                                format!("blob {expected} ended after {seen} of {size} bytes"),
                            );
                        }
                        let actual = format!(
                            "sha256:{}",
                            crate::hash::hex(&std::mem::take(&mut state.hasher).finalize())
                        );
                        if actual != expected {
                            return fail(
                                state,
                                format!("blob {expected} reads as {actual}: not uploading it"),
                            );
                        }
                        state.done = true;
                        return state.pending.take().map(|last| (Ok(last), state));
                    }
                }
            }
        }
    })
}

/// One blob of an archive as 1 MiB chunks, read lazily from the file.
fn archive_chunks(
    archive: &OciArchive,
    digest: &str,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static> {
    let reader = archive.blob_reader(digest)?;
    Ok(Box::pin(futures_util::stream::unfold(
        Some(reader),
        |reader| async move {
            let mut reader = reader?;
            let mut buffer = vec![0u8; 1 << 20];
            let mut filled = 0;
            while filled < buffer.len() {
                match reader.read(&mut buffer[filled..]) {
                    Ok(0) => break,
                    Ok(read) => filled += read,
                    Err(error) => return Some((Err(error), None)),
                }
            }
            if filled == 0 {
                return None;
            }
            buffer.truncate(filled);
            Some((Ok(Bytes::from(buffer)), Some(reader)))
        },
    )))
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
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

/// Push every blob the manifest names (skipping those the registry has), then
/// the manifest bytes; then check the tag resolves to the archive's digest and
/// the manifest served by digest is byte for byte the archive's.
pub async fn push_archive(
    registry: &Registry,
    archive: &OciArchive,
    target: &ImageRef,
) -> Result<Pushed> {
    let repository = target.api_repository();
    let mut uploaded = 0;
    let mut skipped = 0;
    let mut bytes = 0;
    for blob in archive.manifest.blobs() {
        empty_blob_is_empty(blob)
            .map_err(|e| Failure(format!("{}: {e}", archive.path.display())))?;
        if registry.blob_exists(&repository, &blob.digest).await? {
            skipped += 1;
            continue;
        }
        upload_archive_blob(registry, archive, &repository, blob).await?;
        uploaded += 1;
        bytes += blob.size;
    }
    let media_type = archive
        .manifest
        .media_type
        .clone()
        .unwrap_or_else(|| archive.manifest_media_type().to_string());
    let manifest = Bytes::from(archive.manifest_bytes.clone());
    registry
        .push_manifest(target, &manifest, &media_type)
        .await?;
    let served = registry.manifest_digest(target).await?;
    if served.as_deref() != Some(archive.manifest_digest()) {
        return fail(format!(
            "{target} resolves to {served:?} after the push, not {}: the registry rewrote the manifest",
            archive.manifest_digest()
        ));
    }
    let pinned = target.with_digest(archive.manifest_digest())?;
    let pulled = registry.pull_manifest(&pinned).await?;
    if pulled != manifest {
        return fail(format!(
            "{pinned} serves other manifest bytes than the archive's"
        ));
    }
    let name = ImageRef {
        tag: None,
        digest: None,
        ..target.clone()
    };
    Ok(Pushed {
        reference: target.to_string(),
        repository: name.to_string(),
        digest: archive.manifest_digest().to_string(),
        blobs_uploaded: uploaded,
        blobs_skipped: skipped,
        bytes_uploaded: bytes,
    })
}

async fn upload_archive_blob(
    registry: &Registry,
    archive: &OciArchive,
    repository: &str,
    blob: &Descriptor,
) -> Result<()> {
    let location = archive.blob_location(&blob.digest)?;
    if location.size != blob.size {
        return fail(format!(
            "{}: blob {} is {} bytes, the manifest says {}",
            archive.path.display(),
            blob.digest,
            location.size,
            blob.size
        ));
    }
    let what = format!("upload blob {}", blob.digest);
    let deadline = registry.transfer_deadline(blob.size);
    let uploaded = retrying_within(&what, deadline, || async {
        let chunks = archive_chunks(archive, &blob.digest)?;
        let stream = checked(chunks, &blob.digest, blob.size);
        registry
            .upload_blob(repository, &blob.digest, blob.size, stream)
            .await
    })
    .await;
    match uploaded {
        // The archive's own bytes are not the blob: a failed check, not a failed tool.
        Err(error) if refused_by_check(&error) => {
            fail(format!("{}: {error:#}", archive.path.display()))
        }
        other => other,
    }
}

/// The digest of zero bytes. An empty body is never read by the HTTP client,
/// so an empty blob is proven here, before any upload.
pub const EMPTY_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub fn empty_blob_is_empty(blob: &Descriptor) -> Result<()> {
    if blob.size == 0 && blob.digest != EMPTY_DIGEST {
        bail!(
            "blob {} is declared empty, but zero bytes have digest {EMPTY_DIGEST}",
            blob.digest
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A push against a stub registry: a blob it has is skipped, the other
    /// uploaded whole (in more than one chunk), the manifest put as it is;
    /// a registry that then serves another digest at the tag, or other
    /// bytes by digest, fails the push.
    #[test]
    fn a_push_uploads_what_is_missing_and_checks_what_is_served() {
        use crate::oci::stub::{answer, serve};
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let path = crate::oci::archive::tests::archive_with(dir.path(), false, &content);
        let archive = OciArchive::open(&path).unwrap();
        let manifest = String::from_utf8(archive.manifest_bytes.clone()).unwrap();
        let digest = archive.manifest_digest().to_string();
        let config = archive.manifest.config.digest.clone();
        let layer = archive.manifest.layers[0].clone();
        let push = |lie: &'static str| {
            let (manifest, digest, config) = (manifest.clone(), digest.clone(), config.clone());
            let stub = serve(move |asked, _| {
                let target = asked.target.as_str();
                match asked.method.as_str() {
                    "GET" if target == "/v2/" => answer("200 OK", &[], ""),
                    "HEAD" if target == format!("/v2/x/blobs/{config}") => {
                        answer("200 OK", &[], "")
                    }
                    "HEAD" if target.starts_with("/v2/x/blobs/") => {
                        answer("404 Not Found", &[], "")
                    }
                    "POST" => answer(
                        "202 Accepted",
                        &[("location", "/v2/x/blobs/uploads/s1")],
                        "",
                    ),
                    "PATCH" => answer(
                        "202 Accepted",
                        &[("location", "/v2/x/blobs/uploads/s1?p=1")],
                        "",
                    ),
                    "PUT" => answer("201 Created", &[], ""),
                    "HEAD" if lie == "digest" => answer(
                        "200 OK",
                        &[(
                            "docker-content-digest",
                            &format!("sha256:{}", "9".repeat(64)),
                        )],
                        "",
                    ),
                    "HEAD" => answer("200 OK", &[("docker-content-digest", &digest)], ""),
                    "GET" if lie == "bytes" => answer("200 OK", &[], &format!("{manifest} ")),
                    "GET" => answer("200 OK", &[], &manifest),
                    _ => answer("400 Bad Request", &[], ""),
                }
            });
            let target = ImageRef::parse(&format!("{}/x:1", stub.host)).unwrap();
            let pushed = super::super::registry::block_on(async {
                let registry = Registry::connect(
                    &stub.host,
                    crate::oci::auth::Role::Target,
                    &crate::oci::auth::CredentialSource {
                        target: None,
                        source: None,
                        docker_config: dir.path().join("none.json"),
                    },
                )
                .await?;
                push_archive(&registry, &archive, &target).await
            })
            .unwrap();
            (pushed, stub.asked())
        };
        let (pushed, asked) = push("");
        let pushed = pushed.unwrap();
        assert_eq!(
            (
                pushed.blobs_uploaded,
                pushed.blobs_skipped,
                pushed.bytes_uploaded
            ),
            (1, 1, layer.size)
        );
        assert_eq!(pushed.digest, digest);
        let patch = asked.iter().find(|a| a.method == "PATCH").unwrap();
        assert!(layer.size > 1 << 20);
        assert_eq!(
            format!("sha256:{}", crate::hash::hex_sha256(&patch.body)),
            layer.digest
        );
        let put = asked
            .iter()
            .find(|a| a.line() == "PUT /v2/x/manifests/1")
            .unwrap();
        assert_eq!(put.body, manifest.as_bytes());

        let error = push("digest").0.unwrap_err().to_string();
        assert!(
            error.ends_with("the registry rewrote the manifest"),
            "{error}"
        );
        let error = push("bytes").0.unwrap_err().to_string();
        assert!(
            error.ends_with("serves other manifest bytes than the archive's"),
            "{error}"
        );
    }

    /// A blob declared empty must have the digest of zero bytes: the HTTP
    /// client never reads an empty body, so nothing else would check it.
    #[test]
    fn an_empty_blob_must_have_the_empty_digest() {
        let blob = |size: u64, digest: &str| Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest: digest.into(),
            size,
        };
        let other = format!("sha256:{}", "1".repeat(64));
        empty_blob_is_empty(&blob(0, EMPTY_DIGEST)).unwrap();
        empty_blob_is_empty(&blob(5, &other)).unwrap();
        let error = empty_blob_is_empty(&blob(0, &other))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("blob {other} is declared empty")),
            "{error}"
        );
    }

    /// An archive whose blob is not its digest fails as a check naming the
    /// archive; a registry refusing the upload is that registry's error.
    #[test]
    fn a_corrupt_archive_fails_as_a_check_and_a_refusal_as_the_registrys() {
        use crate::oci::stub::{answer, serve};
        let dir = tempfile::tempdir().unwrap();
        let path = crate::oci::archive::tests::archive_with(dir.path(), true, b"hello");
        let archive = OciArchive::open(&path).unwrap();
        let upload = |refuse: bool| {
            let stub = serve(move |asked, _| match asked.method.as_str() {
                "GET" => answer("200 OK", &[], ""),
                "HEAD" => answer("404 Not Found", &[], ""),
                "POST" if refuse => answer("403 Forbidden", &[], "denied"),
                _ => answer(
                    "202 Accepted",
                    &[("location", "/v2/x/blobs/uploads/s1")],
                    "",
                ),
            });
            let source = crate::oci::auth::CredentialSource {
                target: None,
                source: None,
                docker_config: dir.path().join("none.json"),
            };
            let layer = archive.manifest.layers[0].clone();
            super::super::registry::block_on(async {
                let registry =
                    Registry::connect(&stub.host, crate::oci::auth::Role::Target, &source).await?;
                upload_archive_blob(&registry, &archive, "x", &layer).await
            })
            .unwrap()
            .unwrap_err()
        };
        let corrupt = upload(false);
        assert!(
            corrupt.downcast_ref::<crate::error::Failure>().is_some(),
            "{corrupt:#}"
        );
        assert!(
            corrupt.to_string().starts_with(&path.display().to_string()),
            "{corrupt:#}"
        );
        let refused = upload(true);
        assert!(
            refused.downcast_ref::<crate::error::Failure>().is_none(),
            "{refused:#}"
        );
        assert!(
            format!("{refused:#}").contains("HTTP 403 Forbidden: denied"),
            "{refused:#}"
        );
    }

    fn run(chunks: Vec<&'static [u8]>, digest: &str, size: u64) -> Vec<Chunk> {
        let inner = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<std::io::Result<Bytes>>>(),
        );
        super::super::registry::block_on(checked(inner, digest, size).collect::<Vec<_>>()).unwrap()
    }

    fn sha(bytes: &[u8]) -> String {
        format!("sha256:{}", crate::hash::hex_sha256(bytes))
    }

    #[test]
    fn matching_bytes_pass_through_whole() {
        let out = run(vec![b"ab", b"", b"cd"], &sha(b"abcd"), 4);
        let bytes: Vec<u8> = out.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(bytes, b"abcd");
    }

    /// The last chunk never leaves when the digest is wrong: what was sent is
    /// shorter than the declared size, so no registry can commit it.
    #[test]
    fn a_mismatch_withholds_the_last_chunk() {
        let out = run(vec![b"ab", b"cX"], &sha(b"abcd"), 4);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap().as_ref(), b"ab");
        let error = out[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("not uploading it"), "{error}");
    }

    /// Guards both size checks of `checked`: a stream longer than its
    /// descriptor is refused as it grows past it (not later, as a short one
    /// or a digest mismatch), and a shorter one, even with the right digest
    /// for its bytes, is refused at its end with its last chunk held back.
    #[test]
    fn sizes_are_enforced() {
        let refusal = |chunk: &Chunk| match chunk {
            Err(BlobError::Refused(why)) => why.clone(),
            other => panic!("not a refusal: {other:?}"),
        };
        let long = run(vec![b"abc", b"de"], &sha(b"abcde"), 4);
        assert_eq!(
            refusal(long.last().unwrap()),
            format!("blob {} is longer than its 4 bytes", sha(b"abcde"))
        );
        let short = run(vec![b"abc"], &sha(b"abc"), 4);
        assert_eq!(short.len(), 1, "the only chunk is held back");
        assert_eq!(
            refusal(&short[0]),
            format!("blob {} ended after 3 of 4 bytes", sha(b"abc"))
        );
    }
}
