//! `cargo xtask release-notes --tag <stagex-release>-<n>`: the notes of a
//! versioned release, from the records `publish` left (digest, size, the
//! StageX packages it pins, the scan's counts) and, for what changed, from
//! the previous release's provenance attestations in the registry, verified
//! against `cosign.pub`. Rendering is pure ([`render`]); the run only reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::args::JsonArg;
use super::provenance::plan::KIND_STAGEX;
use super::signing::{self, publish::is_release_tag};
use crate::error::fail;
use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::oci::reference::ImageRef;
use crate::records::{build::BuildRecord, publish::PublishRecord};

/// Write the release notes of a versioned release (`<stagex-release>-<n>`) from the publish records and the previous release's provenance.
#[derive(Debug, Args)]
pub struct ReleaseNotes {
    /// The release: `<stagex-release>-<n>`, its first part the release in stagex-release/RELEASE.
    #[arg(long, value_name = "TAG")]
    pub tag: String,
    /// The release to compare with (default: the git tag of the latest
    /// release before TAG; none: the first release).
    #[arg(long, value_name = "TAG")]
    pub previous: Option<String>,
    /// Where the images are published (default: PUBLISH_REGISTRY_PREFIX).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// The public key the previous release's provenance must verify against (default: cosign.pub).
    #[arg(long, value_name = "PATH")]
    pub public_key: Option<PathBuf>,
    /// Do not require transparency log entries (images signed with --no-tlog).
    #[arg(long)]
    pub no_tlog: bool,
    /// Only check that TAG is a release tag of this checkout's StageX
    /// release (the release workflow's first step), and write nothing.
    #[arg(long, conflicts_with_all = ["previous", "output", "json"])]
    pub check_tag: bool,
    /// Write the markdown here (default: out/release-notes.md).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// One image of a release, as the notes describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Released {
    pub image: String,
    /// `registry/repository@sha256:…`.
    pub pinned: String,
    pub digest: String,
    /// The OCI archive's size in bytes.
    pub size: u64,
    /// StageX package → version (its tag), as pinned.
    pub packages: BTreeMap<String, String>,
    /// Findings per severity from the scan of these bytes, when it ran.
    pub cves: Option<BTreeMap<String, usize>>,
    /// What the previous release shipped for this image, when it did.
    pub previous: Option<Previous>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Previous {
    pub digest: String,
    pub packages: BTreeMap<String, String>,
}

/// The notes, for `--json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Notes {
    pub tag: String,
    pub stagex_release: String,
    pub commit: Option<String>,
    pub previous_tag: Option<String>,
    pub images: Vec<Released>,
    /// The markdown file written.
    pub file: String,
}

impl ReleaseNotes {
    pub fn run(self, root: &Path) -> Result<()> {
        let stagex_release = check_tag(&self.tag, &crate::model::release::current_name(root)?)?;
        if self.check_tag {
            crate::ui::say!(
                "{}: a release tag of StageX release {stagex_release}",
                self.tag
            );
            return Ok(());
        }
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| settings::PUBLISH_REGISTRY_PREFIX.to_string());
        let previous_tag = match &self.previous {
            Some(tag) => {
                check_tag(tag, tag.rsplit_once('-').map(|(r, _)| r).unwrap_or(tag))?;
                Some(tag.clone())
            }
            None => crate::tools::git::previous_release_tag(root, &self.tag),
        };
        let catalog = Catalog::load(root)?;
        let public_key = self
            .public_key
            .clone()
            .unwrap_or_else(|| root.join(signing::PUBLIC_KEY));
        let mut images = Vec::new();
        for image in &catalog.images {
            let Some(mut released) = released(root, &image.name, &prefix, &self.tag)? else {
                continue;
            };
            if let Some(previous) = &previous_tag {
                released.previous =
                    previous_release(&prefix, &image.name, previous, &public_key, !self.no_tlog)?;
            }
            images.push(released);
        }
        if images.is_empty() {
            return fail(format!(
                "no image was published as {prefix}/<image>:{}: publish them first (`cargo xtask publish IMAGE --to {prefix}/IMAGE:{}`)",
                self.tag, self.tag
            ));
        }
        let commit = crate::tools::git::head_commit(root);
        let text = render(
            &self.tag,
            &stagex_release,
            commit.as_deref(),
            previous_tag.as_deref(),
            &images,
        );
        let file = self
            .output
            .clone()
            .unwrap_or_else(|| root.join(crate::records::OUT_DIR).join("release-notes.md"));
        crate::files::write_atomically(&file, text.as_bytes())?;
        crate::ui::say!("{text}");
        crate::ui::say!("release notes written to {}", file.display());
        self.json.write(
            "release-notes",
            &[],
            &Notes {
                tag: self.tag.clone(),
                stagex_release,
                commit,
                previous_tag,
                images,
                file: file.display().to_string(),
            },
        )
    }
}

/// A release tag whose StageX release is `release`; its StageX release.
pub fn check_tag(tag: &str, release: &str) -> Result<String> {
    if !is_release_tag(tag) {
        bail!("`{tag}` is not a release tag: write `<stagex-release>-<n>`, e.g. `{release}-1`");
    }
    let (named, _) = tag.rsplit_once('-').unwrap_or((tag, ""));
    if named != release {
        bail!(
            "`{tag}` names StageX release {named}, but this checkout pins {release} (stagex-release/RELEASE): tag `{release}-<n>`"
        );
    }
    Ok(release.to_string())
}

/// The packages a build pins, by name, from its StageX references.
fn packages<'a>(references: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    references
        .filter_map(|text| ImageRef::parse(text).ok())
        .map(|r| {
            let version = r.tag.clone().unwrap_or_else(|| "-".into());
            (r.name().to_string(), version)
        })
        .collect()
}

/// `image` as published under `tag`, from its records; `None` when it was not.
fn released(root: &Path, image: &str, prefix: &str, tag: &str) -> Result<Option<Released>> {
    let path = PublishRecord::path(root, image);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let publish: PublishRecord = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a publish record", path.display()))?;
    let wanted = format!("{}/{image}:{tag}", prefix.trim_end_matches('/'));
    if publish.pushed != wanted {
        return Ok(None);
    }
    let build = BuildRecord::load(root, image)?;
    if build.manifest_digest != publish.manifest_digest {
        return fail(format!(
            "{}: the build record is of {}, the publish record of {}: rebuild and publish again",
            image, build.manifest_digest, publish.manifest_digest
        ));
    }
    Ok(Some(Released {
        image: image.to_string(),
        pinned: publish.pinned.clone(),
        digest: publish.manifest_digest.clone(),
        size: build.archive_size,
        packages: packages(build.stagex_inputs.iter().map(String::as_str)),
        cves: cve_counts(root, &build)?,
        previous: None,
    }))
}

/// The scan's findings per severity, when the scan ran on these bytes.
fn cve_counts(root: &Path, build: &BuildRecord) -> Result<Option<BTreeMap<String, usize>>> {
    let scanned = crate::records::steps::StepRecord::load(root, &build.image, "scan")?;
    if scanned.is_none_or(|s| s.archive_sha256 != build.archive_sha256) {
        return Ok(None);
    }
    let path = crate::records::image_dir(root, &build.image).join("grype.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        // A gate record set without grype's output (by hand): nothing to count.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let mut counts = BTreeMap::new();
    for finding in crate::commands::scan::findings::parse_grype(&bytes)? {
        *counts
            .entry(format!("{:?}", finding.severity).to_lowercase())
            .or_insert(0) += 1;
    }
    Ok(Some(counts))
}

/// What the previous release shipped for `image`: its digest and, from its
/// verified provenance, its packages. `None` when it had no such image.
fn previous_release(
    prefix: &str,
    image: &str,
    tag: &str,
    public_key: &Path,
    tlog: bool,
) -> Result<Option<Previous>> {
    let tagged = ImageRef::parse(&format!("{}/{image}:{tag}", prefix.trim_end_matches('/')))?;
    let digest = crate::oci::registry::block_on(async {
        let registry = crate::oci::registry::Registry::connect(
            tagged.api_host(),
            crate::oci::auth::Role::Source,
            &crate::oci::auth::CredentialSource::docker_config_only(),
        )
        .await?;
        registry.manifest_digest(&tagged).await
    })??;
    let Some(digest) = digest else {
        return Ok(None);
    };
    let pinned = signing::by_digest(&format!(
        "{}@{digest}",
        ImageRef {
            tag: None,
            ..tagged.clone()
        }
    ))?;
    let predicate = super::provenance::verified(&pinned, public_key, tlog, None)
        .with_context(|| format!("the previous release {tagged}"))?;
    let names = predicate
        .build_definition
        .resolved_dependencies
        .iter()
        .filter(|d| d.kind() == KIND_STAGEX)
        .map(|d| d.name.as_str());
    Ok(Some(Previous {
        digest,
        packages: packages(names),
    }))
}

/// What changed in one image since the previous release.
pub fn changes(released: &Released, previous_tag: Option<&str>) -> String {
    let Some(previous_tag) = previous_tag else {
        return "first release".into();
    };
    let Some(previous) = &released.previous else {
        return format!("new since {previous_tag}");
    };
    if previous.digest == released.digest {
        return "unchanged (same digest)".into();
    }
    let mut changed = Vec::new();
    for (name, version) in &released.packages {
        match previous.packages.get(name) {
            None => changed.push(format!("+{name} {version}")),
            Some(old) if old != version => changed.push(format!("{name} {old} → {version}")),
            _ => {}
        }
    }
    for (name, version) in &previous.packages {
        if !released.packages.contains_key(name) {
            changed.push(format!("−{name} {version}"));
        }
    }
    if changed.is_empty() {
        "rebuilt: same packages, another digest (its Containerfile or build changed)".into()
    } else {
        format!("rebuilt: {}", changed.join(", "))
    }
}

fn cves(counts: &Option<BTreeMap<String, usize>>) -> String {
    let Some(counts) = counts else {
        return "not scanned".into();
    };
    let total: usize = counts.values().sum();
    if total == 0 {
        return "none".into();
    }
    ["critical", "high", "medium", "low", "negligible", "unknown"]
        .iter()
        .filter_map(|s| counts.get(*s).map(|n| format!("{n} {s}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The markdown of a release.
pub fn render(
    tag: &str,
    stagex_release: &str,
    commit: Option<&str>,
    previous_tag: Option<&str>,
    images: &[Released],
) -> String {
    let mut text = format!("# Release {tag}\n\n");
    text.push_str(&format!(
        "StageX release {stagex_release}{}; {}.\n\n",
        commit
            .map(|c| format!(", built from commit {c}"))
            .unwrap_or_default(),
        match previous_tag {
            Some(previous) => format!("changes since {previous}"),
            None => "the first release".into(),
        }
    ));
    text.push_str(
        "| image | digest | size | CVEs | since the previous release |\n|---|---|---|---|---|\n",
    );
    for image in images {
        text.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            image.image,
            image.digest,
            crate::report::human_size(image.size),
            cves(&image.cves),
            changes(image, previous_tag)
        ));
    }
    text.push_str("\n## StageX packages\n\n");
    for image in images {
        let packages: Vec<String> = image
            .packages
            .iter()
            .map(|(name, version)| format!("{name} {version}"))
            .collect();
        text.push_str(&format!("- **{}**: {}\n", image.image, packages.join(", ")));
    }
    text.push_str(
        "\n## Verify\n\nPull by digest; check the signature and the provenance with the project's key (docs/verifying-images.md):\n\n```sh\n",
    );
    let tlog = if settings::SIGN_WITH_TRANSPARENCY_LOG {
        ""
    } else {
        " --insecure-ignore-tlog=true"
    };
    for image in images {
        text.push_str(&format!(
            "cosign verify --key cosign.pub{tlog} {0}\ncosign verify-attestation --key cosign.pub{tlog} --type slsaprovenance1 {0}\n",
            image.pinned
        ));
    }
    text.push_str("```\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, digest: &str, musl: &str, previous: Option<Previous>) -> Released {
        Released {
            image: name.into(),
            pinned: format!("registry.internal/stagex-images/{name}@{digest}"),
            digest: digest.into(),
            size: 1_600_000,
            packages: BTreeMap::from([
                ("core-musl".to_string(), musl.to_string()),
                ("core-busybox".to_string(), "1.37.0".to_string()),
            ]),
            cves: Some(BTreeMap::from([("medium".to_string(), 1)])),
            previous,
        }
    }

    #[test]
    fn release_tags_name_the_checkouts_release() {
        assert_eq!(check_tag("2026.03.0-2", "2026.03.0").unwrap(), "2026.03.0");
        let error = check_tag("2026.06.0-1", "2026.03.0")
            .unwrap_err()
            .to_string();
        assert!(error.contains("this checkout pins 2026.03.0"), "{error}");
        assert!(check_tag("latest", "2026.03.0").is_err());
    }

    #[test]
    fn notes_say_what_changed() {
        let same = "sha256:".to_string() + &"a".repeat(64);
        let other = "sha256:".to_string() + &"b".repeat(64);
        let old_packages = BTreeMap::from([
            ("core-musl".to_string(), "1.2.4".to_string()),
            ("core-zlib".to_string(), "1.3".to_string()),
            ("core-busybox".to_string(), "1.37.0".to_string()),
        ]);
        let images = vec![
            image(
                "base",
                &same,
                "1.2.5",
                Some(Previous {
                    digest: same.clone(),
                    packages: BTreeMap::new(),
                }),
            ),
            image(
                "base-go",
                &other,
                "1.2.5",
                Some(Previous {
                    digest: same.clone(),
                    packages: old_packages,
                }),
            ),
            image("base-rust", &other, "1.2.5", None),
        ];
        let text = render(
            "2026.03.0-2",
            "2026.03.0",
            Some("0123456789abcdef0123456789abcdef01234567"),
            Some("2026.03.0-1"),
            &images,
        );
        insta::assert_snapshot!(text);
        assert_eq!(changes(&images[2], None), "first release");
    }
}
