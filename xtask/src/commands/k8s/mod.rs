//! `cargo xtask k8s [--check]`: the Forgejo runners' Kubernetes manifests
//! (`k8s/forgejo-runner/`), the Kyverno image policy (`policies/kyverno/`) and
//! the allow-list (`policies/kubernetes/`), generated from the same settings
//! the workflows use (publishing path, runner labels, transparency log, image
//! digests) and from the key set (`cosign.pub`, and `cosign.rotation.pub`
//! during a key rotation), through the one write-or-check helper.

pub mod plan;

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::files::{ensure_file, Mode, Outcome};
use crate::model::settings::Site;
use crate::records::publish::PublishRecord;

/// Write k8s/forgejo-runner/ and policies/ from the settings and cosign.pub (--check: fail when stale).
#[derive(Debug, Args)]
pub struct K8s {
    /// Change nothing; fail with a diff when a file is not what would be generated.
    #[arg(long)]
    pub check: bool,
}

impl K8s {
    pub fn run(self, root: &Path) -> Result<()> {
        let mode = if self.check { Mode::Check } else { Mode::Write };
        let generated = ensure(root, mode)?;
        for written in &generated.written {
            crate::ui::say!("wrote {written}");
        }
        for gap in &generated.gaps {
            crate::ui::say!("note: {gap}");
        }
        if let Some(hint) = published_runner_hint(root)? {
            crate::ui::say!("note: {hint}");
        }
        if let Some(hint) = published_job_image_hint(root)? {
            crate::ui::say!("note: {hint}");
        }
        if self.check {
            crate::ui::say!(
                "{}, {} and {}: up to date",
                plan::RUNNER_DIR,
                plan::POLICY_DIR,
                plan::ALLOW_LIST_DIR
            );
        }
        Ok(())
    }
}

/// What one generation did, and what is not deployable yet.
pub struct Generated {
    pub written: Vec<String>,
    pub gaps: Vec<String>,
}

/// The keys other than cosign.pub that the policy accepts while a key is
/// rotated in or out (docs/kubernetes.md, "Rotating the signing key").
pub const ROTATION_KEYS: &str = "cosign.rotation.pub";

/// The PEM blocks (`-----BEGIN PUBLIC KEY-----` … `-----END PUBLIC KEY-----`)
/// of `text`; anything else outside them is an error naming the line.
pub fn pem_blocks(text: &str, path: &Path) -> Result<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        match (&mut current, trimmed) {
            (None, "") => {}
            (None, "-----BEGIN PUBLIC KEY-----") => current = Some(format!("{trimmed}\n")),
            (None, _) => bail!(
                "{}:{}: not part of a PEM public key (`{trimmed}`): the file holds only `-----BEGIN PUBLIC KEY-----` blocks",
                path.display(),
                number + 1
            ),
            (Some(block), "-----END PUBLIC KEY-----") => {
                block.push_str(trimmed);
                block.push('\n');
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) if trimmed.starts_with("-----") => bail!(
                "{}:{}: `{trimmed}` inside a public key: a block ends with `-----END PUBLIC KEY-----`",
                path.display(),
                number + 1
            ),
            (Some(block), _) => {
                block.push_str(trimmed);
                block.push('\n');
            }
        }
    }
    if current.is_some() {
        bail!(
            "{}: the last public key has no `-----END PUBLIC KEY-----` line",
            path.display()
        );
    }
    Ok(blocks)
}

/// The project's public key, as committed (PEM), if there is one yet.
pub fn public_key(root: &Path) -> Result<Option<String>> {
    let path = root.join(crate::commands::signing::PUBLIC_KEY);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    if !text.trim_start().starts_with("-----BEGIN PUBLIC KEY-----") {
        bail!(
            "{} is not a PEM public key: restore it from git, or make the key pair with `cargo xtask signing-key init --force`",
            path.display()
        );
    }
    if pem_blocks(&text, &path)?.len() != 1 {
        bail!(
            "{} holds more than one key: it is the one key `publish` signs with; put the others in {ROTATION_KEYS}",
            path.display()
        );
    }
    Ok(Some(text))
}

/// The key set the policy accepts: cosign.pub first, then each key of
/// cosign.rotation.pub; empty when there is no cosign.pub.
pub fn public_keys(root: &Path) -> Result<Vec<String>> {
    let Some(key) = public_key(root)? else {
        return Ok(Vec::new());
    };
    let mut keys = pem_blocks(&key, &root.join(crate::commands::signing::PUBLIC_KEY))?;
    let path = root.join(ROTATION_KEYS);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            for block in pem_blocks(&text, &path)? {
                if keys.contains(&block) {
                    bail!(
                        "{}: a key is listed twice (also in cosign.pub or above): remove one",
                        path.display()
                    );
                }
                keys.push(block);
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    Ok(keys)
}

/// Every generated file: path relative to the root, and contents.
pub fn files(site: &Site, public_keys: &[String]) -> Result<Vec<(String, String)>> {
    plan::manifests(site, public_keys)?
        .iter()
        .map(|manifest| Ok((manifest.path.clone(), plan::render(manifest)?)))
        .collect()
}

/// Write (or check) every generated file of `root` from this repository's
/// settings and its key set; `all` and `signing-key init` call it too.
pub fn ensure(root: &Path, mode: Mode) -> Result<Generated> {
    let site = Site::of(root)?;
    let keys = public_keys(root)?;
    let generated = files(&site, &keys)?;
    let mut written = Vec::new();
    for (path, text) in &generated {
        let outcome = ensure_file(&root.join(path), text, mode, "cargo xtask k8s")?;
        if outcome == Outcome::Written {
            written.push(path.clone());
        }
    }
    // A hand-written manifest beside ours would be applied unreviewed by this check.
    let paths: Vec<String> = generated.iter().map(|(path, _)| path.clone()).collect();
    let stray = crate::files::strays(
        root,
        &[plan::RUNNER_DIR, plan::POLICY_DIR, plan::ALLOW_LIST_DIR],
        &paths,
    );
    if !stray.is_empty() {
        return crate::error::fail(format!(
            "{} not generated by `cargo xtask k8s`: these folders hold generated files only (change xtask/src/commands/k8s/); remove it",
            stray.join(", ")
        ));
    }
    Ok(Generated {
        written,
        gaps: plan::gaps(&site, &keys),
    })
}

/// When a publish record of the runner holds another digest than the
/// setting, the line that says what to pin.
fn published_runner_hint(root: &Path) -> Result<Option<String>> {
    let path = PublishRecord::path(root, "forgejo-runner");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let record: PublishRecord = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a publish record", path.display()))?;
    if crate::model::settings::RUNNER_IMAGE_DIGEST == Some(record.manifest_digest.as_str()) {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} published forgejo-runner as {}: set RUNNER_IMAGE_DIGEST = Some(\"{}\") in xtask/src/model/settings.rs and run `cargo xtask k8s`",
        path.display(),
        record.pinned,
        record.manifest_digest
    )))
}

/// When this machine's publish record of the job image holds another digest
/// than the committed pin, the line that says so (generation follows the
/// pin, never `out/`, so every machine generates the same files).
fn published_job_image_hint(root: &Path) -> Result<Option<String>> {
    use crate::model::job_image;
    let path = PublishRecord::path(root, job_image::IMAGE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let record: PublishRecord = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a publish record", path.display()))?;
    if job_image::digest(root)?.as_deref() == Some(record.manifest_digest.as_str()) {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} published {} as {}, and {} pins {}: publishing writes the pin; restore it, or publish again, then run `cargo xtask k8s` and `cargo xtask workflows`",
        path.display(),
        job_image::IMAGE,
        record.pinned,
        job_image::PIN_FILE,
        job_image::digest(root)?.unwrap_or_else(|| "nothing".to_string())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalog::Catalog;

    /// One setting, every file that repeats it: the workflows push to the
    /// publishing path, the runners pull from it, the policy guards it.
    #[test]
    fn the_registry_setting_moves_workflows_manifests_and_policy_together() {
        let catalog = Catalog::load(&crate::files::project_root()).unwrap();
        let everything = |site: &Site| -> Vec<(String, String)> {
            let mut all = crate::commands::workflows::files(
                &crate::commands::workflows::plan::plan_with(&catalog, site).unwrap(),
            )
            .unwrap();
            all.extend(files(site, &[]).unwrap());
            all
        };
        let ours = Site::ours();
        let moved = Site {
            publish_prefix: "registry.elsewhere.example/base-images".into(),
            ..Site::ours()
        };
        let before = everything(&ours);
        let after = everything(&moved);
        let changed: Vec<&str> = before
            .iter()
            .zip(&after)
            .filter(|((_, a), (_, b))| a != b)
            .map(|((path, _), _)| path.as_str())
            .collect();
        for path in [
            ".forgejo/workflows/build.yml",
            "k8s/forgejo-runner/stagex-build.yaml",
            "k8s/forgejo-runner/stagex-check.yaml",
            "policies/kyverno/stagex-images-signed.yaml",
            "policies/kubernetes/stagex-allowed-images.yaml",
        ] {
            assert!(
                changed.contains(&path),
                "{path} did not change: {changed:?}"
            );
        }
        for (path, text) in &after {
            assert!(
                !text.contains(&ours.publish_prefix),
                "{path} still names {}",
                ours.publish_prefix
            );
        }
    }

    /// The runners' label names the job image by the committed pin: a new
    /// pin without regenerated manifests fails `--check` with the digest in
    /// its diff; regenerated, the label pulls it by digest and the gap is gone.
    #[test]
    fn the_job_image_pin_reaches_the_runner_labels_and_check_catches_drift() {
        use crate::model::job_image;
        let root = tempfile::tempdir().unwrap();
        let generated = ensure(root.path(), Mode::Write).unwrap();
        assert!(generated
            .gaps
            .iter()
            .any(|g| g.contains(job_image::PIN_FILE)));
        let label = root.path().join("k8s/forgejo-runner/stagex-build.yaml");
        assert!(std::fs::read_to_string(&label)
            .unwrap()
            .contains("docker://registry.invalid/"));

        let digest = format!("sha256:{}", "ab".repeat(32));
        std::fs::create_dir(root.path().join(job_image::IMAGE)).unwrap();
        std::fs::write(
            root.path().join(job_image::PIN_FILE),
            job_image::render(&digest),
        )
        .unwrap();
        let stale = match ensure(root.path(), Mode::Check) {
            Ok(_) => panic!("--check passed with a stale job image"),
            Err(error) => format!("{error:#}"),
        };
        assert!(stale.contains(&digest), "{stale}");
        assert!(stale.contains("cargo xtask k8s"), "{stale}");

        let generated = ensure(root.path(), Mode::Write).unwrap();
        assert!(!generated
            .gaps
            .iter()
            .any(|g| g.contains(job_image::PIN_FILE)));
        let text = std::fs::read_to_string(&label).unwrap();
        let expected = format!(
            "stagex-build:docker://{}/forgejo-job@{digest}",
            crate::model::settings::PUBLISH_REGISTRY_PREFIX
        );
        assert!(text.contains(&expected), "{text}");
        assert!(ensure(root.path(), Mode::Check).is_ok());
    }

    #[test]
    fn a_public_key_that_is_not_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(public_key(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join("cosign.pub"), "not a key\n").unwrap();
        let error = public_key(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a PEM public key"), "{error}");
    }

    const KEY_A: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaaaa\n-----END PUBLIC KEY-----\n";
    const KEY_B: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbbbb\n-----END PUBLIC KEY-----\n";

    /// The key set: cosign.pub, then the rotation file's keys, each its own
    /// block; a second key in cosign.pub, a stray line or a duplicate is refused.
    #[test]
    fn the_key_set_is_cosign_pub_and_the_rotation_keys() {
        let dir = tempfile::tempdir().unwrap();
        assert!(public_keys(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join("cosign.pub"), KEY_A).unwrap();
        assert_eq!(public_keys(dir.path()).unwrap(), vec![KEY_A.to_string()]);
        std::fs::write(dir.path().join(ROTATION_KEYS), format!("{KEY_B}\n")).unwrap();
        assert_eq!(
            public_keys(dir.path()).unwrap(),
            vec![KEY_A.to_string(), KEY_B.to_string()]
        );
        std::fs::write(dir.path().join(ROTATION_KEYS), format!("{KEY_B}{KEY_A}")).unwrap();
        let error = public_keys(dir.path()).unwrap_err().to_string();
        assert!(error.contains("listed twice"), "{error}");
        std::fs::write(dir.path().join(ROTATION_KEYS), format!("{KEY_B}stray\n")).unwrap();
        let error = public_keys(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("cosign.rotation.pub:4: not part of a PEM public key"),
            "{error}"
        );
        std::fs::write(dir.path().join(ROTATION_KEYS), &KEY_B[..40]).unwrap();
        let error = public_keys(dir.path()).unwrap_err().to_string();
        assert!(error.contains("no `-----END PUBLIC KEY-----`"), "{error}");
        std::fs::write(dir.path().join("cosign.pub"), format!("{KEY_A}{KEY_B}")).unwrap();
        let error = public_keys(dir.path()).unwrap_err().to_string();
        assert!(error.contains("more than one key"), "{error}");
    }
}
