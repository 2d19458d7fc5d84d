//! The image CI jobs run in (`forgejo-job/`), by digest: the runners' labels
//! (`cargo xtask k8s`) and the workflows' `container:` name it.
//!
//! The digest is committed in [`PIN_FILE`], not read from `out/`: generated
//! files must come from the repository alone, or `--check` would answer
//! differently on two machines. `publish` (and `all --push-prefix`) writes
//! the pin when it has published the job image under
//! [`PUBLISH_REGISTRY_PREFIX`]; the regenerated manifests and workflows are
//! committed with it, and `k8s --check` / `workflows --check` fail while they
//! name another digest. CI never moves its own image: a published digest
//! reaches the jobs only through a reviewed commit of the pin.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::settings::PUBLISH_REGISTRY_PREFIX;
use crate::files::{ensure_file, Mode, Outcome};

/// The job image's directory (and so its name).
pub const IMAGE: &str = "forgejo-job";

/// The committed pin, relative to the checkout.
pub const PIN_FILE: &str = "forgejo-job/PUBLISHED";

const HEADER: &str = "\
# The published forgejo-job image the CI jobs run in, by manifest digest under
# PUBLISH_REGISTRY_PREFIX (xtask/src/model/settings.rs). Written by
# `cargo xtask publish forgejo-job` (and `all --push-prefix`); `cargo xtask k8s`
# and `cargo xtask workflows` name it. Commit it with the files they regenerate.
";

/// The job image's repository: `<PUBLISH_REGISTRY_PREFIX>/forgejo-job`.
pub fn repository(prefix: &str) -> String {
    format!("{prefix}/{IMAGE}")
}

/// The pinned reference, `<prefix>/forgejo-job@sha256:…`, or `None` while
/// the job image was never published (no pin file, or a pin without a digest).
pub fn reference(root: &Path, prefix: &str) -> Result<Option<String>> {
    Ok(digest(root)?.map(|digest| format!("{}@{digest}", repository(prefix))))
}

/// The committed digest (`sha256:<64 hex>`), if any.
pub fn digest(root: &Path) -> Result<Option<String>> {
    let path = root.join(PIN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {PIN_FILE}")),
    };
    parse(&text)
}

/// The digest a pin file holds: one `sha256:<64 lowercase hex>` line, `#`
/// comments and blank lines around it.
pub fn parse(text: &str) -> Result<Option<String>> {
    let mut found: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let value = line.trim();
        if value.is_empty() || value.starts_with('#') {
            continue;
        }
        if found.is_some() {
            bail!("{PIN_FILE}:{line_number}: a second digest (`{value}`): the file pins one image; keep the last published one");
        }
        if !is_digest(value) {
            bail!("{PIN_FILE}:{line_number}: `{value}` is not a manifest digest (`sha256:` and 64 lowercase hex digits): restore it from git, or publish forgejo-job again to rewrite it");
        }
        found = Some(value.to_string());
    }
    Ok(found)
}

fn is_digest(value: &str) -> bool {
    value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The pin file's text for `digest`.
pub fn render(digest: &str) -> String {
    format!("{HEADER}{digest}\n")
}

/// After a publish: when it was the job image, pushed to its repository under
/// the publishing prefix, write the pin and say what to regenerate. `pinned`
/// is `registry/repository@sha256:…` as signed. `None` when nothing was due.
pub fn note_published(root: &Path, image: &str, pinned: &str) -> Result<Option<String>> {
    if image != IMAGE {
        return Ok(None);
    }
    let Some((repository_written, digest)) = pinned.split_once('@') else {
        bail!("the publish record's pinned reference `{pinned}` has no digest");
    };
    if repository_written != repository(PUBLISH_REGISTRY_PREFIX) {
        return Ok(Some(format!(
            "{IMAGE} was published to {repository_written}, not {}: {PIN_FILE} keeps its digest (the runners and workflows pull from the publishing prefix)",
            repository(PUBLISH_REGISTRY_PREFIX)
        )));
    }
    if !is_digest(digest) {
        bail!("the publish record's digest `{digest}` is not a sha256 manifest digest");
    }
    let outcome = ensure_file(
        &root.join(PIN_FILE),
        &render(digest),
        Mode::Write,
        "cargo xtask publish forgejo-job",
    )?;
    Ok(Some(match outcome {
        Outcome::Written => format!(
            "wrote {PIN_FILE} ({digest}): run `cargo xtask k8s` and `cargo xtask workflows`, and commit the three together"
        ),
        Outcome::Unchanged => format!("{PIN_FILE} already pins {digest}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_pin_round_trips_and_bad_pins_name_the_line() {
        assert_eq!(parse(&render(DIGEST)).unwrap().as_deref(), Some(DIGEST));
        assert_eq!(parse("# nothing published yet\n").unwrap(), None);
        let error = parse("# x\nsha256:ABC\n").unwrap_err().to_string();
        assert!(
            error.starts_with("forgejo-job/PUBLISHED:2: `sha256:ABC` is not a manifest digest"),
            "{error}"
        );
        let error = parse(&format!("{DIGEST}\n{DIGEST}\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(":2: a second digest"), "{error}");
        let error = parse("registry.internal/x@sha256:00\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a manifest digest"), "{error}");
    }

    #[test]
    fn publishing_the_job_image_writes_the_pin_and_others_do_not() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(IMAGE)).unwrap();
        assert_eq!(reference(root.path(), "r.example/x").unwrap(), None);
        let pinned = format!("{}@{DIGEST}", repository(PUBLISH_REGISTRY_PREFIX));
        assert_eq!(note_published(root.path(), "base", &pinned).unwrap(), None);
        assert_eq!(digest(root.path()).unwrap(), None);

        let elsewhere = format!("other.example/forgejo-job@{DIGEST}");
        let note = note_published(root.path(), IMAGE, &elsewhere)
            .unwrap()
            .unwrap();
        assert!(note.contains("not registry.internal"), "{note}");
        assert_eq!(digest(root.path()).unwrap(), None);

        let note = note_published(root.path(), IMAGE, &pinned)
            .unwrap()
            .unwrap();
        assert!(note.starts_with("wrote forgejo-job/PUBLISHED"), "{note}");
        assert_eq!(
            reference(root.path(), "r.example/x").unwrap(),
            Some(format!("r.example/x/forgejo-job@{DIGEST}"))
        );
        let again = note_published(root.path(), IMAGE, &pinned)
            .unwrap()
            .unwrap();
        assert!(again.contains("already pins"), "{again}");
    }

    /// The versions the Containerfile stamps into the tools (and YARA-X's
    /// pkg-config record) are the tags its sources are pinned at.
    #[test]
    fn the_containerfile_names_the_pinned_tags() {
        let root = crate::files::project_root();
        let containerfile =
            std::fs::read_to_string(root.join(IMAGE).join("Containerfile")).unwrap();
        let pc = std::fs::read_to_string(root.join(IMAGE).join("yara_x_capi.pc")).unwrap();
        let contexts: Vec<_> = crate::model::settings::BUILD_CONTEXTS
            .iter()
            .filter(|context| context.image == IMAGE)
            .collect();
        assert_eq!(contexts.len(), 5);
        for context in contexts {
            let bare = context.tag.trim_start_matches('v');
            let stamped = [
                format!("gitVersion={}\"", context.tag),
                format!("main.version={bare}\""),
                format!("BuildVersion={}\"", context.tag),
                format!("= {} ||", context.tag),
            ];
            assert!(
                stamped.iter().any(|s| containerfile.contains(s.as_str())),
                "forgejo-job/Containerfile does not stamp {} {}",
                context.name,
                context.tag
            );
            assert!(containerfile.contains(&format!("--from={} ", context.name)));
            if context.name == "yara-x-src" {
                assert!(pc.contains(&format!("Version: {bare}\n")), "{pc}");
            }
        }
    }
}
