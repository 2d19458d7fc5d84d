//! `cargo xtask mirror`: copy upstream StageX images into an internal registry,
//! each only after its signatures meet the quorum. Blobs go first (existing
//! ones skipped, mounted when another repository of the target has them),
//! manifests last and byte for byte, so the target never shows a manifest whose
//! blobs are missing and the digest stays the one that was signed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::{StreamExt, TryStreamExt};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::Reference;
use serde::Serialize;
use xshell::Shell;

use crate::catalog::Catalog;
use crate::containerfile::ImageRef;
use crate::oci::registry::{self, with_retries, Registry};
use crate::pgp::lookaside::{self, Lookaside};
use crate::pgp::verify::{self, Keyring, QuorumReport};
use crate::report::{self, Outcome, StepReport};
use crate::settings;
use crate::signatures::TrustArgs;

/// Verify StageX signatures (quorum), then copy the images to an internal registry.
#[derive(Debug, Args)]
pub struct Mirror {
    /// References to mirror, pinned by digest (`stagex/core-musl:1.2.5@sha256:…`);
    /// default: every StageX reference pinned in the Containerfiles.
    pub refs: Vec<String>,
    /// Where upstream images are pulled from.
    #[arg(long, value_name = "PREFIX", default_value = settings::UPSTREAM_REGISTRY_PREFIX)]
    pub from: String,
    /// The internal prefix they go to, e.g. `registry.internal/stagex`.
    #[arg(long, value_name = "PREFIX")]
    pub to: String,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Copy the verified signature files here, in lookaside layout, for consumers of the mirror.
    #[arg(long, value_name = "DIR")]
    pub signatures_out: Option<PathBuf>,
    /// References copied at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Print what would be copied, from where to where, and copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write a JSON report.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// One reference to mirror, planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorItem {
    /// The identity StageX signs: `stagex/core-musl`.
    pub repository: String,
    pub digest_hex: String,
    pub tag: Option<String>,
    /// `docker.io/stagex/core-musl@sha256:…`
    pub source: String,
    /// `registry.internal/stagex/core-musl:1.2.5` (or `@sha256:…` without a tag).
    pub target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MirrorResult {
    pub item: MirrorItem,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub signers: Vec<String>,
    pub verdicts: Vec<verify::Verdict>,
    pub blobs_copied: usize,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub bytes_copied: u64,
    pub seconds: f64,
}

impl Mirror {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let root = sh.current_dir();
        let references = if self.refs.is_empty() {
            pinned_references(&root)?
        } else {
            self.refs
                .iter()
                .map(|text| {
                    ImageRef::parse(text).with_context(|| format!("mirror argument `{text}`"))
                })
                .collect::<Result<_>>()?
        };
        let items = plan(&references, &self.from, &self.to)?;
        if self.dry_run {
            print!("{}", render_plan(&items, self.trust.lookaside()));
            return Ok(());
        }
        let keyring = self.trust.keyring(&root)?;
        let threshold = self.trust.threshold()?;
        let lookaside = Lookaside::new(self.trust.lookaside())?;
        let started = Instant::now();
        let context = Run {
            keyring: &keyring,
            threshold,
            lookaside: &lookaside,
            signatures_out: self.signatures_out.as_deref(),
            known_blobs: Mutex::new(BTreeMap::new()),
        };
        let results = registry::block_on(run_all(&items, &context, self.jobs.max(1)))?;
        let reports: Vec<StepReport> = results.iter().map(result_report).collect();
        eprint!("\n{}", report::table(&reports));
        let copied: u64 = results.iter().map(|r| r.bytes_copied).sum();
        eprintln!(
            "mirror: {} reference(s) in {:.1}s, {} copied",
            results.len(),
            started.elapsed().as_secs_f64(),
            report::human_size(copied)
        );
        if let Some(path) = &self.json {
            let mut text = serde_json::to_string_pretty(&results)?;
            text.push('\n');
            crate::generated::write_atomically(path, text.as_bytes())?;
        }
        crate::report::fail_if_any(&reports, "mirror")
    }
}

/// Every StageX reference pinned in the Containerfiles, once each.
pub fn pinned_references(root: &Path) -> Result<Vec<ImageRef>> {
    let catalog = Catalog::load(root)?;
    let mut seen = BTreeMap::new();
    for image in &catalog.images {
        for (input, _) in image.stagex_inputs() {
            seen.insert(input.reference.to_string(), input.reference.clone());
        }
    }
    Ok(seen.into_values().collect())
}

/// Source and target of each reference; the signed identity is always
/// `stagex/<package>`, wherever the image is pulled from.
pub fn plan(references: &[ImageRef], from: &str, to: &str) -> Result<Vec<MirrorItem>> {
    let from = from.trim_end_matches('/');
    let to = to.trim_end_matches('/');
    if to.is_empty() {
        bail!("--to: name the internal registry prefix, e.g. registry.internal/stagex");
    }
    let mut items = Vec::new();
    for reference in references {
        let Some(digest_hex) = reference.digest_hex() else {
            bail!("`{reference}` is not pinned by digest: mirror only what signatures can be checked for (REF@sha256:<hex>)");
        };
        let name = reference.name();
        let target = match &reference.tag {
            Some(tag) => format!("{to}/{name}:{tag}"),
            None => format!("{to}/{name}@sha256:{digest_hex}"),
        };
        items.push(MirrorItem {
            repository: format!("{}/{name}", settings::STAGEX_NAMESPACE),
            digest_hex: digest_hex.to_string(),
            tag: reference.tag.clone(),
            source: format!("{from}/{name}@sha256:{digest_hex}"),
            target,
        });
    }
    items.sort_by(|a, b| a.target.cmp(&b.target));
    items.dedup();
    Ok(items)
}

pub fn render_plan(items: &[MirrorItem], lookaside: &str) -> String {
    let mut out = format!("signatures from {lookaside}\n");
    for item in items {
        out.push_str(&format!(
            "verify {}@sha256:{}\n  copy {}\n    to {}\n",
            item.repository, item.digest_hex, item.source, item.target
        ));
    }
    out
}

struct Run<'a> {
    keyring: &'a Keyring,
    threshold: usize,
    lookaside: &'a Lookaside,
    signatures_out: Option<&'a Path>,
    /// Blobs known to be in the target registry: digest → a repository holding it.
    known_blobs: Mutex<BTreeMap<String, Reference>>,
}

async fn run_all(items: &[MirrorItem], context: &Run<'_>, jobs: usize) -> Vec<MirrorResult> {
    futures_util::stream::iter(items)
        .map(|item| async move {
            let started = Instant::now();
            let mut result = MirrorResult {
                item: item.clone(),
                outcome: Outcome::Passed,
                signers: Vec::new(),
                verdicts: Vec::new(),
                blobs_copied: 0,
                blobs_mounted: 0,
                blobs_present: 0,
                bytes_copied: 0,
                seconds: 0.0,
            };
            if let Err(error) = mirror_one(item, context, &mut result).await {
                eprintln!("[{}] FAILED: {error:#}", item.target);
                result.outcome = Outcome::Failed(format!("{error:#}"));
            }
            result.seconds = started.elapsed().as_secs_f64();
            result
        })
        .buffered(jobs)
        .collect()
        .await
}

async fn mirror_one(item: &MirrorItem, context: &Run<'_>, result: &mut MirrorResult) -> Result<()> {
    // 1. Signatures: nothing is copied for a reference that fails the quorum.
    let files = context
        .lookaside
        .fetch_all(&item.repository, &item.digest_hex)
        .await?;
    let quorum: QuorumReport = verify::verify_quorum(
        &files,
        context.keyring,
        &item.repository,
        &item.digest_hex,
        context.threshold,
    );
    result.signers = quorum.signers.clone();
    result.verdicts = quorum.verdicts.clone();
    if !quorum.met {
        let reasons: Vec<String> = quorum
            .verdicts
            .iter()
            .filter_map(|v| v.reason.as_ref().map(|r| format!("{}: {r}", v.file)))
            .collect();
        let detail = if files.is_empty() {
            format!(
                "no signature files at {}",
                lookaside::signature_url(
                    context.lookaside.base(),
                    &item.repository,
                    &item.digest_hex,
                    1
                )
            )
        } else if reasons.is_empty() {
            format!("signed by {}", quorum.signers.join(", "))
        } else {
            reasons.join("; ")
        };
        bail!(
            "signatures: {} distinct maintainer key(s) of {} required ({detail})",
            quorum.signers.len(),
            context.threshold
        );
    }
    eprintln!(
        "[{}] signatures: quorum met by {}",
        item.target,
        quorum.signers.join(", ")
    );

    let source = registry::parse_reference(&item.source)?;
    let target = registry::parse_reference(&item.target)?;
    let digest = format!("sha256:{}", item.digest_hex);
    let target_by_digest = by_digest(&target, &digest)?;
    let source_registry = Registry::for_reference(&source)?;
    let target_registry = Registry::for_reference(&target)?;
    source_registry.login().await;
    target_registry.login().await;

    // 2. Already there (by digest, and under the tag if there is one): HEADs only.
    let present =
        manifest_digest(&target_registry, &target_by_digest).await? == Some(digest.clone());
    let tagged = match &item.tag {
        Some(_) => manifest_digest(&target_registry, &target).await? == Some(digest.clone()),
        None => true,
    };
    if present && tagged {
        eprintln!("[{}] already mirrored", item.target);
        result.outcome = Outcome::Skipped("already mirrored".into());
        save_signatures(item, context, &files)?;
        return Ok(());
    }

    // 3. Copy: children and blobs first, the top manifest last.
    let source_by_digest = by_digest(&source, &digest)?;
    copy_manifest(
        &source_registry,
        &target_registry,
        &source_by_digest,
        &target_by_digest,
        context,
        result,
        0,
    )
    .await?;
    if item.tag.is_some() {
        let (bytes, _) = pull_manifest(&target_registry, &target_by_digest).await?;
        push_manifest(&target_registry, &target, &bytes).await?;
    }
    let served = manifest_digest(&target_registry, &target).await?;
    if served.as_deref() != Some(digest.as_str()) {
        bail!(
            "{} resolves to {served:?} after the copy, not {digest}",
            item.target
        );
    }
    save_signatures(item, context, &files)?;
    eprintln!(
        "[{}] copied: {} blob(s) ({}), {} mounted, {} already present",
        item.target,
        result.blobs_copied,
        report::human_size(result.bytes_copied),
        result.blobs_mounted,
        result.blobs_present
    );
    Ok(())
}

fn save_signatures(
    item: &MirrorItem,
    context: &Run<'_>,
    files: &[lookaside::SignatureFile],
) -> Result<()> {
    if let Some(dir) = context.signatures_out {
        lookaside::save(dir, &item.repository, &item.digest_hex, files)?;
    }
    Ok(())
}

fn by_digest(reference: &Reference, digest: &str) -> Result<Reference> {
    registry::parse_reference(&format!(
        "{}/{}@{digest}",
        reference.resolve_registry(),
        reference.repository()
    ))
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The digest a reference resolves to, or `None` when the registry has no such manifest.
async fn manifest_digest(registry: &Registry, reference: &Reference) -> Result<Option<String>> {
    let what = format!("HEAD {}", reference.whole());
    let result = registry::retry_transient(&what, || {
        registry
            .client
            .fetch_manifest_digest(reference, &registry.auth)
    })
    .await;
    match result {
        Ok(digest) => Ok(Some(digest)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(anyhow::Error::new(error).context(what)),
    }
}

fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

async fn pull_manifest(
    registry: &Registry,
    reference: &Reference,
) -> Result<(bytes::Bytes, String)> {
    with_retries(&format!("GET manifest {}", reference.whole()), || {
        registry
            .client
            .pull_manifest_raw(reference, &registry.auth, MANIFEST_TYPES)
    })
    .await
}

async fn push_manifest(
    registry: &Registry,
    reference: &Reference,
    bytes: &bytes::Bytes,
) -> Result<()> {
    let content_type = media_type(bytes)?;
    with_retries(&format!("PUT manifest {}", reference.whole()), || {
        registry.client.push_manifest_raw(
            reference,
            bytes.clone(),
            content_type
                .parse()
                .expect("a media type is a valid header value"),
        )
    })
    .await?;
    Ok(())
}

/// The manifest's own `mediaType`, or what its shape says it is.
fn media_type(bytes: &[u8]) -> Result<String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).context("a manifest is not JSON")?;
    if let Some(kind) = value["mediaType"].as_str() {
        return Ok(kind.to_string());
    }
    Ok(if value.get("manifests").is_some() {
        MANIFEST_TYPES[0].to_string()
    } else {
        MANIFEST_TYPES[1].to_string()
    })
}

/// Copy one manifest (by digest) and everything it points at; an index's
/// children first, an image's config and layers first.
fn copy_manifest<'a>(
    source_registry: &'a Registry,
    target_registry: &'a Registry,
    source: &'a Reference,
    target: &'a Reference,
    context: &'a Run<'_>,
    result: &'a mut MirrorResult,
    depth: usize,
) -> futures_util::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        if depth > 2 {
            bail!(
                "{}: manifests nest deeper than an index of images",
                source.whole()
            );
        }
        let expected = source.digest().expect("copies go by digest").to_string();
        let (bytes, digest) = pull_manifest(source_registry, source).await?;
        let actual = format!("sha256:{}", crate::sha::hex_sha256(&bytes));
        if actual != expected || digest != expected {
            bail!(
                "{} served a manifest with digest {actual}: not the signed {expected}",
                source.whole()
            );
        }
        if manifest_digest(target_registry, target).await? == Some(expected.clone()) {
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        if let Some(children) = value["manifests"].as_array() {
            for child in children {
                let child_digest = child["digest"]
                    .as_str()
                    .context("an index entry without a digest")?;
                let child_source = by_digest(source, child_digest)?;
                let child_target = by_digest(target, child_digest)?;
                copy_manifest(
                    source_registry,
                    target_registry,
                    &child_source,
                    &child_target,
                    context,
                    result,
                    depth + 1,
                )
                .await?;
            }
        } else {
            let mut blobs = Vec::new();
            if let Some(config) = value["config"]["digest"].as_str() {
                blobs.push((config.to_string(), value["config"]["size"].as_u64()));
            }
            for layer in value["layers"].as_array().into_iter().flatten() {
                let digest = layer["digest"]
                    .as_str()
                    .context("a layer without a digest")?;
                blobs.push((digest.to_string(), layer["size"].as_u64()));
            }
            // Blobs of one image travel side by side; the manifest waits for all of them.
            let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(blobs)
                .map(|(blob, size)| {
                    copy_blob(
                        source_registry,
                        target_registry,
                        source,
                        target,
                        blob,
                        size,
                        context,
                    )
                })
                .buffer_unordered(BLOBS_AT_ONCE)
                .try_collect()
                .await?;
            for outcome in outcomes {
                match outcome {
                    BlobOutcome::Present => result.blobs_present += 1,
                    BlobOutcome::Mounted => result.blobs_mounted += 1,
                    BlobOutcome::Copied(bytes) => {
                        result.blobs_copied += 1;
                        result.bytes_copied += bytes;
                    }
                }
            }
        }
        push_manifest(target_registry, target, &bytes).await
    })
}

/// Blobs of one image copied at once.
const BLOBS_AT_ONCE: usize = 4;

enum BlobOutcome {
    Present,
    Mounted,
    Copied(u64),
}

async fn copy_blob(
    source_registry: &Registry,
    target_registry: &Registry,
    source: &Reference,
    target: &Reference,
    digest: String,
    size: Option<u64>,
    context: &Run<'_>,
) -> Result<BlobOutcome> {
    let digest = digest.as_str();
    let exists = with_retries(&format!("HEAD blob {digest}"), || {
        target_registry.client.blob_exists(target, digest)
    })
    .await?;
    if exists {
        remember(context, digest, target);
        return Ok(BlobOutcome::Present);
    }
    // Another repository of the target has it: mount instead of copying.
    let elsewhere = context
        .known_blobs
        .lock()
        .expect("not poisoned")
        .get(digest)
        .cloned();
    if let Some(from) = elsewhere.filter(|from| from.repository() != target.repository()) {
        let mounted = target_registry
            .client
            .mount_blob(target, &from, digest)
            .await
            .is_ok()
            && target_registry
                .client
                .blob_exists(target, digest)
                .await
                .unwrap_or(false);
        if mounted {
            return Ok(BlobOutcome::Mounted);
        }
    }
    let size = size.context("a blob descriptor without a size")?;
    let started = Instant::now();
    with_retries(&format!("copy blob {digest}"), || async {
        // oci-client hashes the pulled bytes as they flow and fails the stream
        // at its end on a digest mismatch, before the upload is committed; the
        // registry checks the digest again on commit.
        let stream = source_registry
            .client
            .pull_blob_stream(source, digest)
            .await?;
        let sized = sized_stream(stream, digest.to_string(), size);
        target_registry
            .client
            .push_blob_stream(target, sized, digest, Some(size))
            .await
    })
    .await?;
    eprintln!(
        "[{}] blob {} ({}) copied in {:.1}s",
        target.whole(),
        crate::report::short_digest(digest),
        crate::report::human_size(size),
        started.elapsed().as_secs_f64()
    );
    remember(context, digest, target);
    Ok(BlobOutcome::Copied(size))
}

fn remember(context: &Run<'_>, digest: &str, target: &Reference) {
    context
        .known_blobs
        .lock()
        .expect("not poisoned")
        .entry(digest.to_string())
        .or_insert_with(|| target.clone());
}

/// Pass the bytes through, failing the stream (and so the upload) if more or
/// fewer bytes arrive than the descriptor promised.
fn sized_stream(
    stream: oci_client::client::SizedStream,
    digest: String,
    size: u64,
) -> impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, OciDistributionError>>
       + Send
       + 'static {
    let state = (stream, 0u64, false);
    futures_util::stream::unfold(state, move |(mut stream, mut seen, done)| {
        let digest = digest.clone();
        async move {
            if done {
                return None;
            }
            match stream.try_next().await {
                Ok(Some(chunk)) => {
                    seen += chunk.len() as u64;
                    if seen > size {
                        let error = OciDistributionError::GenericError(Some(format!(
                            "blob {digest} is longer than its {size} bytes"
                        )));
                        return Some((Err(error), (stream, seen, true)));
                    }
                    Some((Ok(chunk), (stream, seen, false)))
                }
                Ok(None) if seen == size => None,
                Ok(None) => {
                    let error = OciDistributionError::GenericError(Some(format!(
                        "blob {digest} ended after {seen} of {size} bytes"
                    )));
                    Some((Err(error), (stream, seen, true)))
                }
                Err(error) => Some((Err(error.into()), (stream, seen, true))),
            }
        }
    })
}

fn result_report(result: &MirrorResult) -> StepReport {
    let mut report = StepReport::new(
        &result.item.target,
        "mirror",
        result.outcome.clone(),
        Duration::from_secs_f64(result.seconds),
    );
    report.digest = Some(format!("sha256:{}", result.item.digest_hex));
    report.size = Some(result.bytes_copied);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_mirror_plan() {
        let references = pinned_references(&crate::project_root()).unwrap();
        let items = plan(
            &references,
            settings::UPSTREAM_REGISTRY_PREFIX,
            "registry.internal/stagex",
        )
        .unwrap();
        assert!(items
            .iter()
            .all(|i| i.repository.starts_with("stagex/core-")
                || i.repository.starts_with("stagex/pallet-")
                || i.repository.starts_with("stagex/user-")));
        insta::assert_snapshot!(render_plan(&items, settings::UPSTREAM_LOOKASIDE));
    }

    #[test]
    fn unpinned_references_are_refused() {
        let reference = ImageRef::parse("stagex/core-musl:1.2.5").unwrap();
        let error = plan(&[reference], "docker.io/stagex", "r.internal/stagex").unwrap_err();
        assert!(
            error.to_string().contains("not pinned by digest"),
            "{error}"
        );
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type(br#"{"mediaType":"x/y","layers":[]}"#).unwrap(),
            "x/y"
        );
        assert_eq!(
            media_type(br#"{"manifests":[]}"#).unwrap(),
            MANIFEST_TYPES[0]
        );
        assert_eq!(media_type(br#"{"layers":[]}"#).unwrap(), MANIFEST_TYPES[1]);
    }
}
