//! `cargo xtask mirror`: copy upstream StageX images into an internal registry,
//! each only after its signatures meet the quorum. Blobs go first (existing
//! ones skipped, mounted when another repository of the target has them),
//! manifests last and byte for byte, so the target never shows a manifest whose
//! blobs are missing and the digest stays the one that was signed.

pub mod copy;
pub mod plan;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::StreamExt;
use serde::Serialize;

use super::args::{JsonArg, TrustArgs};
use crate::error::fail;
use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::oci::auth::Role;
use crate::oci::reference::ImageRef;
use crate::oci::registry::{self, Registries};
use crate::pgp::lookaside::{self, Lookaside, SignatureFile};
use crate::pgp::verify::{self, Keyring};
use crate::report::{self, Outcome, StepReport};
use copy::{Counts, Ends, KnownBlobs};
use plan::MirrorItem;

/// Verify StageX signatures (quorum), then copy the images to an internal registry.
#[derive(Debug, Args)]
pub struct Mirror {
    /// References to mirror, pinned by digest (`stagex/core-musl:1.2.5@sha256:…`);
    /// default: every StageX reference pinned in the Containerfiles.
    #[arg(value_name = "REF")]
    pub refs: Vec<String>,
    /// Pull StageX images through this prefix (as `build --registry`; a CI runner's pull-through proxy via XTASK_STAGEX_UPSTREAM).
    #[arg(
        long,
        value_name = "PREFIX",
        env = "XTASK_STAGEX_UPSTREAM",
        default_value = settings::UPSTREAM_REGISTRY_PREFIX
    )]
    pub registry: String,
    /// The internal prefix they go to, e.g. `registry.internal/stagex`.
    #[arg(long, value_name = "PREFIX")]
    pub to_prefix: String,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Copy the verified signature files here, in lookaside layout, for consumers of the mirror.
    #[arg(long, value_name = "DIR")]
    pub signatures_out: Option<PathBuf>,
    /// References copied at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Print what would be copied, from where to where, and copy nothing (no report: `--json` is refused with it).
    #[arg(long, conflicts_with = "json")]
    pub dry_run: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// What happened to one reference.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MirrorResult {
    pub item: MirrorItem,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub signers: Vec<String>,
    pub verdicts: Vec<verify::Verdict>,
    #[serde(flatten)]
    pub counts: Counts,
    pub seconds: f64,
    /// The failure was the tool's (a registry or store that did not answer),
    /// not the reference's (signatures, digests).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub could_not_run: bool,
}

impl Mirror {
    pub fn run(self, root: &Path) -> Result<()> {
        let references = if self.refs.is_empty() {
            plan::pinned_references(&Catalog::load(root)?)
        } else {
            self.refs
                .iter()
                .map(|text| {
                    ImageRef::parse(text).with_context(|| format!("mirror argument `{text}`"))
                })
                .collect::<Result<_>>()?
        };
        // An empty XTASK_STAGEX_UPSTREAM (a runner config's blank) is unset.
        let upstream = match self.registry.trim() {
            "" => settings::UPSTREAM_REGISTRY_PREFIX,
            given => given,
        };
        let items = plan::plan(&references, upstream, &self.to_prefix)?;
        if self.dry_run {
            print!("{}", plan::render_plan(&items, self.trust.lookaside()));
            return Ok(());
        }
        let keyring = self.trust.keyring(root)?;
        let threshold = self.trust.threshold()?;
        let lookaside = self.trust.lookaside_store()?;
        let started = Instant::now();
        let run = Run {
            keyring: &keyring,
            threshold,
            lookaside: &lookaside,
            signatures_out: self.signatures_out.as_deref(),
            registries: Registries::from_environment(),
            known: KnownBlobs::default(),
        };
        let results = registry::block_on(run_all(&items, &run, self.jobs.max(1)))?;
        let reports: Vec<StepReport> = results.iter().map(result_report).collect();
        anstream::eprint!("\n{}", report::coloured_table(&reports));
        let copied: u64 = results.iter().map(|r| r.counts.bytes_copied).sum();
        crate::ui::say!(
            "mirror: {} reference(s) in {:.1}s, {} copied",
            results.len(),
            started.elapsed().as_secs_f64(),
            report::human_size(copied)
        );
        self.json.write("mirror", &reports, &results)?;
        report::fail_if_any(&reports, "mirror")
    }
}

/// What every reference of one run shares: trust, and one client per registry.
struct Run<'a> {
    keyring: &'a Keyring,
    threshold: usize,
    lookaside: &'a Lookaside,
    signatures_out: Option<&'a Path>,
    registries: Registries,
    known: KnownBlobs,
}

async fn run_all(items: &[MirrorItem], run: &Run<'_>, jobs: usize) -> Vec<MirrorResult> {
    // Unordered: a slow reference must not hold back the start of the next.
    let mut results: Vec<(usize, MirrorResult)> =
        futures_util::stream::iter(items.iter().enumerate())
            .map(|(index, item)| async move {
                let started = Instant::now();
                let mut result = MirrorResult {
                    item: item.clone(),
                    outcome: Outcome::Passed,
                    signers: Vec::new(),
                    verdicts: Vec::new(),
                    counts: Counts::default(),
                    seconds: 0.0,
                    could_not_run: false,
                };
                if let Err(error) = mirror_one(item, run, &mut result).await {
                    anstream::eprintln!("[{}] FAILED: {error:#}", item.target);
                    result.outcome = Outcome::Failed(format!("{error:#}"));
                    result.could_not_run = !crate::error::is_failure(&error);
                }
                result.seconds = started.elapsed().as_secs_f64();
                (index, result)
            })
            .buffer_unordered(jobs)
            .collect()
            .await;
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

async fn mirror_one(item: &MirrorItem, run: &Run<'_>, result: &mut MirrorResult) -> Result<()> {
    // 1. Signatures: nothing is copied for a reference that fails the quorum.
    let files = run
        .lookaside
        .fetch_all(&item.repository, &item.digest_hex)
        .await?;
    let quorum = verify::verify_quorum(
        &files,
        run.keyring,
        &item.repository,
        &item.digest_hex,
        run.threshold,
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
                    run.lookaside.base(),
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
        return fail(format!(
            "signatures: {} distinct maintainer key(s) of {} required ({detail})",
            quorum.signers.len(),
            run.threshold
        ));
    }
    crate::ui::say!(
        "[{}] signatures: quorum met by {}",
        item.target,
        quorum.signers.join(", ")
    );

    let source = ImageRef::parse(&item.source)?;
    let target = ImageRef::parse(&item.target)?;
    let digest = format!("sha256:{}", item.digest_hex);
    let target_by_digest = target.with_digest(&digest)?;
    let source_registry = run.registries.get(&source, Role::Source).await?;
    let target_registry = run.registries.get(&target, Role::Target).await?;

    // 2. Already there (by digest, and under the tag if there is one): HEADs only.
    let present = target_registry.manifest_digest(&target_by_digest).await? == Some(digest.clone());
    let tagged = match &item.tag {
        Some(_) => target_registry.manifest_digest(&target).await? == Some(digest.clone()),
        None => true,
    };
    if present && tagged {
        crate::ui::say!("[{}] already mirrored", item.target);
        result.outcome = Outcome::Skipped("already mirrored".into());
        save_signatures(item, run, &files)?;
        return Ok(());
    }

    // 3. Copy: children and blobs first, the top manifest last.
    let ends = Ends {
        source: &source_registry,
        target: &target_registry,
        known: &run.known,
    };
    let source_by_digest = source.with_digest(&digest)?;
    let copied = copy::copy_manifest(
        &ends,
        &source_by_digest,
        &target_by_digest,
        &mut result.counts,
    )
    .await?;
    if item.tag.is_some() {
        target_registry
            .push_manifest(&target, &copied.bytes, &copied.media_type)
            .await?;
    }
    let served = target_registry.manifest_digest(&target).await?;
    if served.as_deref() != Some(digest.as_str()) {
        bail!(
            "{} resolves to {served:?} after the copy, not {digest}",
            item.target
        );
    }
    save_signatures(item, run, &files)?;
    let counts = &result.counts;
    crate::ui::say!(
        "[{}] copied: {} blob(s) ({}), {} mounted, {} already present",
        item.target,
        counts.blobs_copied,
        report::human_size(counts.bytes_copied),
        counts.blobs_mounted,
        counts.blobs_present
    );
    Ok(())
}

fn save_signatures(item: &MirrorItem, run: &Run<'_>, files: &[SignatureFile]) -> Result<()> {
    if let Some(dir) = run.signatures_out {
        lookaside::save(dir, &item.repository, &item.digest_hex, files)?;
    }
    Ok(())
}

fn result_report(result: &MirrorResult) -> StepReport {
    let mut report = StepReport::new(
        &result.item.target,
        "mirror",
        result.outcome.clone(),
        Duration::from_secs_f64(result.seconds),
    );
    report.digest = Some(format!("sha256:{}", result.item.digest_hex));
    report.size = Some(result.counts.bytes_copied);
    report.could_not_run = result.could_not_run;
    report
}
