//! `cargo xtask publish IMAGE --to REPO[:TAG]`: the release path in one step.
//! Everything that can refuse does so before a byte is pushed (gates for
//! these archive bytes, cosign, the key, its password, the key being the
//! pair of `cosign.pub`, SBOMs of this very digest); then the image goes in
//! by digest → its digest is signed → both SBOMs attested → all of it
//! verified against `cosign.pub`, and found at the tags Kyverno reads
//! (`sha256-<hex>.sig`, `.att`) → only then the tag moves → the record.
//! A failure half way leaves the tag where it was and says what is where.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use super::{attest, by_digest, sign, verify, verifying, Access, KeyArgs, Pinned, PUBLIC_KEY};
use crate::commands::args::JsonArg;
use crate::commands::push::{check_gates, push_image, push_image_by_digest};
use crate::error::fail;
use crate::oci::reference::ImageRef;
use crate::records::build::BuildRecord;
use crate::records::image_dir;
use crate::records::publish::PublishRecord;
use crate::report::{Outcome, StepReport};
use crate::tools::cosign::{Installed, PredicateKind, Signing, Verifying};
use crate::tools::process::Env;

/// Push an image whose gates passed, sign its digest, attest its SBOMs, and
/// verify both against cosign.pub; the tag moves last.
#[derive(Debug, Args)]
pub struct Publish {
    /// The image (its build record names the archive).
    pub image: String,
    /// Destination `registry/repository[:tag]` (tag defaults to `latest`).
    #[arg(long, value_name = "REPO[:TAG]")]
    pub to: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The public key everything must verify against (default: cosign.pub).
    #[arg(long, value_name = "PATH")]
    pub public_key: Option<PathBuf>,
    #[command(flatten)]
    pub json: JsonArg,
}

impl Publish {
    pub fn run(self, root: &Path) -> Result<()> {
        let started = Instant::now();
        let public_key = self
            .public_key
            .clone()
            .unwrap_or_else(|| root.join(PUBLIC_KEY));
        let result = super::installed_cosign().and_then(|cosign| {
            publish(root, &self.image, &self.to, &self.key, &public_key, cosign)
        });
        // One report, failure included, for `summary`.
        let report = match &result {
            Ok(record) => {
                let mut report =
                    StepReport::new(&self.image, "publish", Outcome::Passed, started.elapsed());
                report.digest = Some(record.manifest_digest.clone());
                report.detail = Some(format!("{} signed and verified", record.pushed));
                report
            }
            Err(error) => StepReport::from_error(&self.image, "publish", error, started.elapsed()),
        };
        // The document, failure included: `summary` reads its step row.
        self.json
            .write("publish", &[report], &result.as_ref().ok())?;
        let record = result?;
        crate::ui::say!(
            "published {} as {} ({}) in {:.1}s: signed, SBOMs attested ({}), both verified against {}",
            self.image,
            record.pushed,
            record.pinned,
            started.elapsed().as_secs_f64(),
            record.predicate_types.join(", "),
            public_key.display()
        );
        Ok(())
    }
}

/// The SBOM files `publish` attests, by kind.
fn sboms(root: &Path, image: &str) -> [(PredicateKind, PathBuf); 2] {
    let dir = image_dir(root, image);
    [
        (PredicateKind::Spdxjson, dir.join("sbom.spdx.json")),
        (PredicateKind::Cyclonedx, dir.join("sbom.cdx.json")),
    ]
}

/// Everything `publish` attests, by kind: both SBOMs and the provenance.
fn attested(root: &Path, image: &str) -> Vec<(PredicateKind, PathBuf)> {
    let mut all = sboms(root, image).to_vec();
    all.push((
        PredicateKind::Slsaprovenance1,
        crate::commands::provenance::path(root, image),
    ));
    all
}

/// `to` with its tag (`latest` when none is written).
fn tag_target(to: &str) -> Result<(ImageRef, String)> {
    let target = ImageRef::parse(to)?;
    if target.digest.is_some() {
        anyhow::bail!("--to {to}: name a tag, not a digest; the digest is the archive's");
    }
    let tag = target.tag.clone().unwrap_or_else(|| "latest".to_string());
    Ok((
        ImageRef {
            tag: None,
            ..target
        },
        tag,
    ))
}

/// Publish `image` to `to`; the record is saved and returned.
pub fn publish(
    root: &Path,
    image: &str,
    to: &str,
    key: &KeyArgs,
    public_key: &Path,
    cosign: Installed,
) -> Result<PublishRecord> {
    // Everything that can refuse, before anything is pushed.
    let (repository, tag) = tag_target(to)?;
    let build = BuildRecord::load(root, image)?;
    build.verified_archive(root)?;
    check_gates(root, &build, &[])?;
    let publisher = Publisher::prepare(key, public_key, cosign)?;
    publisher.check_sboms(root, &build)?;
    crate::commands::provenance::write(root, image)?;
    check_release_tag(&repository, &tag, &build.manifest_digest)?;
    PublishRecord::remove(root, image)?;

    let pushed = push_image_by_digest(root, image, &repository, &[])?;
    let pinned = by_digest(&format!("{}@{}", pushed.repository, pushed.digest))?;
    let half_way = |error: anyhow::Error| {
        error.context(format!(
            "{} is in the registry by digest only: the tag `{tag}` was not moved and nothing is recorded; run publish again once the cause is fixed",
            pinned.image
        ))
    };
    let signed = publisher.sign(root, image, &pinned).map_err(half_way)?;
    let verified = publisher.verify(root, &build, &signed).map_err(half_way)?;
    // The tag could have been taken since the check above.
    check_release_tag(&repository, &tag, &build.manifest_digest).map_err(half_way)?;
    // Runs can overlap (Forgejo before 14 does not queue them): an older
    // run that finishes last leaves the tag where the newer one put it.
    let ours = crate::oci::archive::OciArchive::open(&build.verified_archive(root)?)?
        .config()?
        .get("created")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some((newer, created)) = newer_at_tag(&repository, &tag, &ours).map_err(half_way)? {
        crate::ui::say!(
            "{repository}:{tag} names {newer}, built from a later commit ({created}, this build {ours}): the tag stays there; this build is published as {}",
            pinned.image
        );
        let pushed = pinned.image.to_string();
        return publisher.record(root, &build, &pushed, &signed, &verified, vec![]);
    }
    let tagged = push_image(root, image, &format!("{repository}:{tag}"), &[]).map_err(half_way)?;
    publisher.record(root, &build, &tagged.reference, &signed, &verified, vec![])
}

/// What `tag` names now, with its `created` time, when that is later than
/// `ours`: `created` is SOURCE_DATE_EPOCH, the time of the commit built.
/// An index, or a time not written as ours are, is not judged (the tag
/// moves, as before this check).
fn newer_at_tag(repository: &ImageRef, tag: &str, ours: &str) -> Result<Option<(String, String)>> {
    use crate::oci::manifest::AnyManifest;
    use futures_util::StreamExt;
    /// An image config is small; a registry sending more is refused.
    const MAX_CONFIG: u64 = 4 << 20;
    let tagged = ImageRef {
        tag: Some(tag.to_string()),
        digest: None,
        ..repository.clone()
    };
    crate::oci::registry::block_on(async {
        let registry = crate::oci::registry::Registry::connect(
            tagged.api_host(),
            crate::oci::auth::Role::Target,
            &crate::oci::auth::CredentialSource::from_environment(),
        )
        .await?;
        if registry.manifest_digest(&tagged).await?.is_none() {
            return Ok(None);
        }
        let bytes = registry.pull_manifest(&tagged).await?;
        let digest = format!("sha256:{}", crate::hash::hex_sha256(&bytes));
        let AnyManifest::Image(manifest) = AnyManifest::parse(&bytes)? else {
            return Ok(None);
        };
        if manifest.config.size > MAX_CONFIG {
            anyhow::bail!(
                "{tagged}: its image config is {} bytes: refused (a config is under {MAX_CONFIG} bytes)",
                manifest.config.size
            );
        }
        let blob = registry
            .pull_blob(&tagged.api_repository(), &manifest.config.digest)
            .await?;
        let mut chunks = std::pin::pin!(crate::oci::transfer::checked(
            blob,
            &manifest.config.digest,
            manifest.config.size
        ));
        let mut config = Vec::new();
        while let Some(chunk) = chunks.next().await {
            config.extend_from_slice(&chunk?);
        }
        let config: serde_json::Value = serde_json::from_slice(&config)
            .with_context(|| format!("{tagged}: its image config is not JSON"))?;
        let theirs = config
            .get("created")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        Ok(is_later(theirs, ours).then(|| (digest, theirs.to_string())))
    })?
}

/// Whether `theirs` is a later time than `ours`, both written as BuildKit
/// writes `created` (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`, UTC); anything else
/// is not judged later.
pub fn is_later(theirs: &str, ours: &str) -> bool {
    fn parts(time: &str) -> Option<(&str, &str)> {
        let time = time.strip_suffix('Z')?;
        let (seconds, fraction) = time.split_at(time.find('.').unwrap_or(time.len()));
        let fraction = fraction.strip_prefix('.').unwrap_or("");
        let shaped = seconds.len() == 19
            && seconds.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b'T',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            })
            && fraction.bytes().all(|b| b.is_ascii_digit())
            && crate::time::is_date(&seconds[..10]);
        shaped.then_some((seconds, fraction.trim_end_matches('0')))
    }
    match (parts(theirs), parts(ours)) {
        // Equal widths compare as text; fractions compare digit by digit.
        (Some(theirs), Some(ours)) => theirs > ours,
        _ => false,
    }
}

/// Signing and verifying, checked once: the key, its password, and that it
/// is the pair of the public key everything is verified against.
pub struct Publisher {
    signing: Signing,
    secrets: Env,
    verifying: Verifying,
}

/// Where `sign` left an image's signature and attestations.
pub struct SignedImage {
    pub pinned: Pinned,
    pub signature: String,
    pub attestations: String,
}

impl Publisher {
    pub fn prepare(key: &KeyArgs, public_key: &Path, cosign: Installed) -> Result<Publisher> {
        let (signing, secrets) = key.signing(cosign)?;
        let verifying = verifying(cosign.generation, public_key, signing.tlog)?;
        check_key_pair(&signing, &secrets, public_key)?;
        Ok(Publisher {
            signing,
            secrets,
            verifying,
        })
    }

    /// Both SBOMs of the image are there, are what they say, and are about
    /// this build's digest (not a stale file of another build).
    pub fn check_sboms(&self, root: &Path, build: &BuildRecord) -> Result<()> {
        let hex = build.manifest_digest.trim_start_matches("sha256:");
        for (kind, path) in &sboms(root, &build.image) {
            let sbom = super::check_sbom(path, *kind)?;
            if !serde_json::to_string(&sbom)?.contains(hex) {
                return fail(format!(
                    "{} does not describe {} (another build's SBOM?): run `cargo xtask sbom {}`",
                    path.display(),
                    build.manifest_digest,
                    build.image
                ));
            }
        }
        Ok(())
    }

    /// Sign the pushed digest and attest both SBOMs and the provenance
    /// (made now from the build record) to it.
    pub fn sign(&self, root: &Path, image: &str, pinned: &Pinned) -> Result<SignedImage> {
        crate::commands::provenance::write(root, image)?;
        let signature = sign(pinned, &self.signing, &self.secrets)?.stored_at;
        let mut attestations = String::new();
        for (kind, path) in &attested(root, image) {
            attestations = attest(pinned, path, *kind, &self.signing, &self.secrets)?.stored_at;
        }
        crate::ui::say!(
            "[{image}] signed {}, SBOMs and provenance attested",
            pinned.image
        );
        Ok(SignedImage {
            pinned: pinned.clone(),
            signature,
            attestations,
        })
    }

    /// Verify the signature and both attestations against the public key,
    /// each predicate equal to its SBOM file.
    pub fn verify(
        &self,
        root: &Path,
        build: &BuildRecord,
        signed: &SignedImage,
    ) -> Result<super::verified::Verified> {
        let sboms = attested(root, &build.image);
        let expected: Vec<(PredicateKind, Option<&Path>)> = sboms
            .iter()
            .map(|(kind, path)| (*kind, Some(path.as_path())))
            .collect();
        let catalog = crate::model::catalog::Catalog::load(root)?;
        // What was pushed with the publishing credentials is read back with them.
        let verified = verify(
            &signed.pinned,
            &self.verifying,
            &expected,
            Access::Write,
            Some(&catalog),
        )?;
        crate::ui::say_more!("{}", verified.render());
        // And it is where the admission policy will look for it.
        let types: Vec<&str> = sboms
            .iter()
            .map(|(kind, _)| kind.predicate_type())
            .collect();
        let [signatures, attestations] = super::check_where_kyverno_reads(&signed.pinned, &types)?;
        crate::ui::say!("  where Kyverno reads them: {signatures}, {attestations}");
        Ok(verified)
    }

    /// The publish record: what went where, and the gates it shipped without.
    pub fn record(
        &self,
        root: &Path,
        build: &BuildRecord,
        pushed: &str,
        signed: &SignedImage,
        verified: &super::verified::Verified,
        waived_gates: Vec<String>,
    ) -> Result<PublishRecord> {
        let record = PublishRecord {
            image: build.image.clone(),
            archive_sha256: build.archive_sha256.clone(),
            manifest_digest: build.manifest_digest.clone(),
            pushed: pushed.to_string(),
            pinned: signed.pinned.image.to_string(),
            signature: signed.signature.clone(),
            attestations: signed.attestations.clone(),
            predicate_types: verified
                .attestations
                .iter()
                .map(|a| a.predicate_type.clone())
                .collect(),
            public_key_sha256: verified.key_sha256.clone(),
            tlog: self.signing.tlog,
            waived_gates,
        };
        record.save(root)?;
        if let Some(note) =
            crate::model::job_image::note_published(root, &record.image, &record.pinned)?
        {
            crate::ui::say!("[{}] {note}", record.image);
        }
        Ok(record)
    }
}

/// Whether `tag` is a release tag (`<stagex-release>-<n>`, e.g.
/// `2026.03.0-1`): immutable once pushed.
pub fn is_release_tag(tag: &str) -> bool {
    let Some((release, n)) = tag.rsplit_once('-') else {
        return false;
    };
    let parts: Vec<&str> = release.split('.').collect();
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    parts.len() == 3 && parts.iter().all(|p| digits(p)) && digits(n) && !n.starts_with('0')
}

/// A release tag never moves: refused (exit 1) when it already names
/// another digest in `repository`; the same digest again is no move.
pub fn check_release_tag(repository: &ImageRef, tag: &str, digest: &str) -> Result<()> {
    if !is_release_tag(tag) {
        return Ok(());
    }
    let tagged = ImageRef {
        tag: Some(tag.to_string()),
        digest: None,
        ..repository.clone()
    };
    let current = crate::oci::registry::block_on(async {
        let registry = crate::oci::registry::Registry::connect(
            tagged.api_host(),
            crate::oci::auth::Role::Target,
            &crate::oci::auth::CredentialSource::from_environment(),
        )
        .await?;
        registry.manifest_digest(&tagged).await
    })??;
    decide_release_tag(&tagged.to_string(), current.as_deref(), digest)
}

/// The pure half of [`check_release_tag`]: `current` is what the tag
/// names now, if anything.
pub fn decide_release_tag(tagged: &str, current: Option<&str>, digest: &str) -> Result<()> {
    match current {
        Some(current) if current != digest => fail(format!(
            "{tagged} is a release tag and already names {current}: release tags never move; publish this build ({digest}) as the next release (`-<n+1>`), or to `{}`",
            crate::model::settings::MOVING_TAG
        )),
        _ => Ok(()),
    }
}

/// The private key must be the pair of the public key everything will be
/// verified against: found out before pushing, not after signing.
fn check_key_pair(signing: &Signing, secrets: &Env, public_key: &Path) -> Result<()> {
    let mut command = signing.public_key();
    for (name, value) in secrets {
        command.secret_env(name, value.clone());
    }
    let output = command.output().with_context(|| {
        format!(
            "reading the public half of the signing key (is {} its password?)",
            crate::tools::cosign::PASSWORD_ENV
        )
    })?;
    let ours = super::verified::key_fingerprint(&output.stdout)?;
    let committed = super::verified::key_fingerprint(
        &std::fs::read(public_key).with_context(|| format!("reading {}", public_key.display()))?,
    )?;
    if ours != committed {
        return fail(format!(
            "the signing key is not the pair of {} (its public key has sha256 {ours}, the file {committed}): use the key `signing-key init` made with it, or commit the matching public key",
            public_key.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tag names now: nothing, an image built from a later commit
    /// (its digest and time), an earlier one or an index (not judged: the
    /// tag moves); a config past 4 MiB is refused.
    #[test]
    fn the_tag_stays_only_on_a_later_build() {
        use crate::oci::stub::{answer, serve};
        let config = |created: &str| format!(r#"{{"created":"{created}"}}"#);
        let manifest = |config: &str, size: usize| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{size}}},"layers":[]}}"#,
                crate::hash::hex_sha256(config.as_bytes())
            )
        };
        let later = config("2026-12-01T00:00:00Z");
        // A config of exactly the limit is read.
        let mut largest = r#"{"created":"2026-12-02T00:00:00Z","pad":""#.to_string();
        largest.push_str(&"x".repeat((4 << 20) - largest.len() - 2));
        largest.push_str(r#""}"#);
        assert_eq!(largest.len(), 4 << 20);
        let largest_config = largest.clone();
        let earlier = config("2026-01-01T00:00:00Z");
        let (later_config, earlier_config) = (later.clone(), earlier.clone());
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let stub = serve(move |asked, _| {
            let manifest_of = |tag: &str| match tag {
                "later" => Some(manifest(&later_config, later_config.len())),
                "earlier" => Some(manifest(&earlier_config, earlier_config.len())),
                "huge" => Some(manifest(&later_config, (4 << 20) + 1)),
                "largest" => Some(manifest(&largest_config, largest_config.len())),
                "index" => Some(index.to_string()),
                _ => None,
            };
            let target = asked.target.as_str();
            if target == "/v2/" {
                return answer("200 OK", &[], "");
            }
            if let Some(tag) = target.strip_prefix("/v2/x/manifests/") {
                return match manifest_of(tag) {
                    None => answer("404 Not Found", &[], ""),
                    Some(body) if asked.method == "HEAD" => answer(
                        "200 OK",
                        &[(
                            "docker-content-digest",
                            &format!("sha256:{}", crate::hash::hex_sha256(body.as_bytes())),
                        )],
                        "",
                    ),
                    Some(body) => answer("200 OK", &[], &body),
                };
            }
            for config in [&later_config, &earlier_config, &largest_config] {
                if target.ends_with(&crate::hash::hex_sha256(config.as_bytes())) {
                    return answer("200 OK", &[], config);
                }
            }
            answer("404 Not Found", &[], "")
        });
        let repository = ImageRef::parse(&format!("{}/x", stub.host)).unwrap();
        let ours = "2026-06-01T00:00:00Z";
        let at = |tag: &str| newer_at_tag(&repository, tag, ours);
        let (digest, created) = at("later").unwrap().unwrap();
        let later_manifest = manifest(&later, later.len());
        assert_eq!(
            digest,
            format!(
                "sha256:{}",
                crate::hash::hex_sha256(later_manifest.as_bytes())
            )
        );
        assert_eq!(created, "2026-12-01T00:00:00Z");
        assert_eq!(at("largest").unwrap().unwrap().1, "2026-12-02T00:00:00Z");
        assert_eq!(at("earlier").unwrap(), None);
        assert_eq!(at("missing").unwrap(), None);
        assert_eq!(at("index").unwrap(), None);
        let error = at("huge").unwrap_err().to_string();
        assert!(
            error.ends_with(&format!("refused (a config is under {} bytes)", 4 << 20)),
            "{error}"
        );
    }

    /// A release tag that names another digest in the registry is
    /// refused; the same digest, a new release tag or a moving tag pass.
    #[test]
    fn a_release_tag_in_the_registry_never_moves() {
        use crate::oci::stub::{answer, serve};
        let ours = format!("sha256:{}", "1".repeat(64));
        let theirs = format!("sha256:{}", "2".repeat(64));
        let served = theirs.clone();
        let stub = serve(move |asked, _| match asked.target.as_str() {
            "/v2/" => answer("200 OK", &[], ""),
            "/v2/x/manifests/2026.03.0-1" => {
                answer("200 OK", &[("docker-content-digest", &served)], "")
            }
            "/v2/x/manifests/latest" => answer("200 OK", &[("docker-content-digest", &served)], ""),
            _ => answer("404 Not Found", &[], ""),
        });
        let repository = ImageRef::parse(&format!("{}/x", stub.host)).unwrap();
        let error = check_release_tag(&repository, "2026.03.0-1", &ours)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "{}/x:2026.03.0-1 is a release tag and already names {theirs}",
                stub.host
            )),
            "{error}"
        );
        check_release_tag(&repository, "2026.03.0-1", &theirs).unwrap();
        check_release_tag(&repository, "2026.03.0-2", &ours).unwrap();
        check_release_tag(&repository, "latest", &ours).unwrap();
        assert_eq!(
            stub.lines().iter().filter(|l| l.contains("latest")).count(),
            0,
            "a moving tag is not asked about"
        );
    }

    /// Both SBOMs must be there, be what they say and name this build's
    /// digest: another build's SBOM is refused, naming the fix.
    #[test]
    fn sboms_must_describe_this_build() {
        use crate::tools::cosign::{Generation, PrivateKey, Signing, Verifying};
        let root = tempfile::tempdir().unwrap();
        let mut build = BuildRecord::example("base", &"a".repeat(64));
        build.manifest_digest = format!("sha256:{}", "1".repeat(64));
        let publisher = Publisher {
            signing: Signing {
                generation: Generation::SigningConfig,
                key: PrivateKey::Environment,
                tlog: false,
            },
            secrets: Env::new(),
            verifying: Verifying {
                generation: Generation::SigningConfig,
                public_key: root.path().join("cosign.pub"),
                tlog: false,
            },
        };
        let dir = image_dir(root.path(), "base");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(
            publisher.check_sboms(root.path(), &build).is_err(),
            "no SBOMs"
        );
        let write = |name: &str, json: String| std::fs::write(dir.join(name), json).unwrap();
        let hex = "1".repeat(64);
        write(
            "sbom.spdx.json",
            format!(r#"{{"spdxVersion":"SPDX-2.3","name":"x@sha256:{hex}"}}"#),
        );
        write(
            "sbom.cdx.json",
            format!(r#"{{"bomFormat":"CycloneDX","serial":"{hex}"}}"#),
        );
        publisher.check_sboms(root.path(), &build).unwrap();
        write(
            "sbom.cdx.json",
            format!(
                r#"{{"bomFormat":"CycloneDX","serial":"{}"}}"#,
                "2".repeat(64)
            ),
        );
        let error = publisher
            .check_sboms(root.path(), &build)
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with(&format!(
                "sbom.cdx.json does not describe {} (another build's SBOM?): run `cargo xtask sbom base`",
                build.manifest_digest
            )),
            "{error}"
        );
    }

    /// `--to` names a repository and maybe a tag (`latest` when none),
    /// never a digest; publish attests both SBOMs and the provenance.
    #[test]
    fn the_target_is_a_tag_and_three_predicates_are_attested() {
        let (repository, tag) = tag_target("registry.example/stagex/base:2026.03").unwrap();
        assert_eq!(
            (repository.to_string(), tag.as_str()),
            ("registry.example/stagex/base".to_string(), "2026.03")
        );
        assert_eq!(tag_target("registry.example/base").unwrap().1, "latest");
        let digest = format!("registry.example/base@sha256:{}", "a".repeat(64));
        assert!(tag_target(&digest)
            .unwrap_err()
            .to_string()
            .contains("name a tag, not a digest"));
        let root = Path::new("/checkout");
        let kinds: Vec<PredicateKind> = attested(root, "base")
            .into_iter()
            .map(|(kind, _)| kind)
            .collect();
        assert_eq!(
            kinds,
            [
                PredicateKind::Spdxjson,
                PredicateKind::Cyclonedx,
                PredicateKind::Slsaprovenance1
            ]
        );
        assert_eq!(
            attested(root, "base")[2].1,
            crate::commands::provenance::path(root, "base")
        );
    }

    /// Only a well-formed later time keeps the tag; equal, earlier or
    /// malformed times (a registry's say) let it move.
    #[test]
    fn a_later_created_time_is_told_apart() {
        let ours = "2023-11-14T22:13:20Z";
        for later in [
            "2023-11-14T22:13:21Z",
            "2024-01-01T00:00:00Z",
            "2023-11-14T22:13:20.5Z",
        ] {
            assert!(is_later(later, ours), "{later}");
        }
        for not_later in [
            ours,
            "2023-11-14T22:13:20.000Z",
            "2023-11-14T22:13:19Z",
            "2023-11-14T22:13:19.999999999Z",
            "9999",
            "2099-13-01T00:00:00Z",
            "2099-01-01T00:00:00+01:00",
            "2099-01-01 00:00:00Z",
            "",
        ] {
            assert!(!is_later(not_later, ours), "{not_later}");
        }
        assert!(is_later(
            "2023-11-14T22:13:20.45Z",
            "2023-11-14T22:13:20.4Z"
        ));
        assert!(!is_later(
            "2023-11-14T22:13:20.45Z",
            "2023-11-14T22:13:20.5Z"
        ));
        assert!(!is_later("2030-01-01T00:00:00Z", "not a time"));
    }

    #[test]
    fn release_tags_are_release_dash_number() {
        for tag in ["2026.03.0-1", "2026.06.12-17"] {
            assert!(is_release_tag(tag), "{tag}");
        }
        for tag in [
            "latest",
            "2026.03.0",
            "2026.03-1",
            "2026.03.0-01",
            "2026.03.0-rc1",
            "v2026.03.0-1",
            "1.0",
        ] {
            assert!(!is_release_tag(tag), "{tag}");
        }
    }

    #[test]
    fn a_release_tag_may_be_taken_once_never_moved() {
        let (a, b) = ("sha256:aa", "sha256:bb");
        assert!(decide_release_tag("r/x:2026.03.0-1", None, a).is_ok());
        assert!(decide_release_tag("r/x:2026.03.0-1", Some(a), a).is_ok());
        let error = decide_release_tag("r/x:2026.03.0-1", Some(b), a).unwrap_err();
        assert!(crate::error::is_failure(&error));
        let text = error.to_string();
        assert!(text.contains("release tags never move"), "{text}");
        assert!(text.contains("already names sha256:bb"), "{text}");
    }
}
