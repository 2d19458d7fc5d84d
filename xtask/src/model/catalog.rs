//! The catalog: every image of the repository, derived from the Containerfiles.
//! An image is a directory with a `Containerfile`; its name is the directory's
//! name; its StageX inputs and its dependencies on our other images come from
//! parsing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::oci::reference::ImageRef;

use super::containerfile::{Containerfile, ExternalRef};
use super::settings;

#[derive(Debug, Clone)]
pub struct Catalog {
    /// In dependency order: an image comes after every image it builds on.
    pub images: Vec<Image>,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    /// Directory relative to the root, `/`-separated: `base-go`, `examples/go-hello`.
    pub dir: String,
    pub containerfile: Containerfile,
    pub inputs: Vec<Input>,
}

/// Something an image pulls in from outside its own Containerfile.
#[derive(Debug, Clone)]
pub struct Input {
    pub line: usize,
    pub context: &'static str,
    pub written: String,
    pub reference: ImageRef,
    pub kind: InputKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    /// A StageX package (`…/stagex/<package>`).
    Stagex { package: String },
    /// Another image of this repository, supplied from its own build.
    Ours { image: String },
    /// A named build context declared in `settings::BUILD_CONTEXTS`.
    Context { name: String },
    /// Anything else: not allowed by lint.
    Other,
}

impl Image {
    /// Relative path of the Containerfile, `/`-separated, for messages and reports.
    pub fn containerfile_path(&self) -> String {
        format!("{}/Containerfile", self.dir)
    }

    pub fn stagex_inputs(&self) -> impl Iterator<Item = (&Input, &str)> {
        self.inputs.iter().filter_map(|input| match &input.kind {
            InputKind::Stagex { package } => Some((input, package.as_str())),
            _ => None,
        })
    }

    pub fn depends_on(&self) -> BTreeSet<&str> {
        self.inputs
            .iter()
            .filter_map(|input| match &input.kind {
                InputKind::Ours { image } => Some(image.as_str()),
                _ => None,
            })
            .collect()
    }
}

impl Catalog {
    pub fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|image| image.name == name)
    }

    /// The named images (all when `names` is empty), in dependency order.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Image>> {
        for name in names {
            if self.image(name).is_none() {
                let known: Vec<&str> = self.images.iter().map(|i| i.name.as_str()).collect();
                let hint = did_you_mean(name, &known)
                    .map(|close| format!(" (did you mean `{close}`?)"))
                    .unwrap_or_default();
                bail!(
                    "no image `{name}`{hint}: known images are {}",
                    known.join(", ")
                );
            }
        }
        Ok(self
            .images
            .iter()
            .filter(|image| names.is_empty() || names.contains(&image.name))
            .collect())
    }

    /// The images under `root`. A directory whose name is no image name is
    /// refused (exit 1): the name lands in references, generated workflows
    /// (where `${{ … }}` would be evaluated) and manifests, so nothing that
    /// did not pass [`is_image_name`] is ever rendered.
    pub fn load(root: &Path) -> Result<Catalog> {
        let mut found = Vec::new();
        for dir in image_dirs(root)? {
            let path = root.join(&dir).join("Containerfile");
            let containerfile = Containerfile::read(&path)?;
            let name = dir.rsplit('/').next().unwrap_or(&dir).to_string();
            if !is_image_name(&name) {
                return crate::error::fail(format!(
                    "{dir}/: `{}` is not an image name: image names are directory names, and must be one path component of an image reference, `[a-z0-9]+([._-][a-z0-9]+)*` (at most 64 characters); rename the directory",
                    name.escape_debug()
                ));
            }
            found.push((name, dir, containerfile));
        }
        let names: BTreeSet<String> = found.iter().map(|(name, _, _)| name.clone()).collect();
        if names.len() != found.len() {
            bail!("two image directories share a name: image names are directory names and must be unique");
        }
        let mut images = Vec::new();
        for (name, dir, containerfile) in found {
            // Paths in messages are relative to the root.
            let relative = Containerfile {
                path: PathBuf::from(format!("{dir}/Containerfile")),
                ..containerfile
            };
            let inputs = relative
                .external_refs()?
                .into_iter()
                .map(|external| classify(external, &names))
                .collect();
            images.push(Image {
                name,
                dir,
                containerfile: relative,
                inputs,
            });
        }
        let images = dependency_order(images)?;
        Ok(Catalog { images })
    }
}

fn classify(external: ExternalRef, our_images: &BTreeSet<String>) -> Input {
    let reference = &external.reference;
    let kind = if is_bare_name(reference) && our_images.contains(reference.name()) {
        InputKind::Ours {
            image: reference.name().to_string(),
        }
    } else if is_bare_name(reference)
        && settings::BUILD_CONTEXTS
            .iter()
            .any(|context| context.name == reference.name())
    {
        InputKind::Context {
            name: reference.name().to_string(),
        }
    } else if reference
        .namespace()
        .is_some_and(|ns| ns.rsplit('/').next() == Some(settings::STAGEX_NAMESPACE))
    {
        InputKind::Stagex {
            package: reference.name().to_string(),
        }
    } else {
        InputKind::Other
    };
    Input {
        line: external.line,
        context: external.context,
        written: external.written,
        reference: external.reference,
        kind,
    }
}

/// A plain name (`base-go`), as our images and build contexts are written.
fn is_bare_name(reference: &ImageRef) -> bool {
    reference.registry.is_none()
        && reference.namespace().is_none()
        && reference.tag.is_none()
        && reference.digest.is_none()
}

/// Top-level directories with a Containerfile, then `examples/*` ones; sorted.
fn image_dirs(root: &Path) -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    let mut collect = |parent: &Path, prefix: &str| -> Result<()> {
        let entries =
            std::fs::read_dir(parent).with_context(|| format!("listing {}", parent.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || settings::NOT_IMAGE_DIRS.contains(&name.as_str()) {
                continue;
            }
            if entry.path().join("Containerfile").is_file() {
                dirs.push(format!("{prefix}{name}"));
            }
        }
        Ok(())
    };
    collect(root, "")?;
    let examples = root.join(settings::EXAMPLES_DIR);
    if examples.is_dir() {
        collect(&examples, &format!("{}/", settings::EXAMPLES_DIR))?;
    }
    dirs.sort();
    Ok(dirs)
}

/// Order images so each comes after its dependencies; ties by name.
fn dependency_order(images: Vec<Image>) -> Result<Vec<Image>> {
    let mut remaining: BTreeMap<String, Image> =
        images.into_iter().map(|i| (i.name.clone(), i)).collect();
    let mut ordered: Vec<Image> = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<String> = remaining
            .values()
            .filter(|image| {
                image
                    .depends_on()
                    .iter()
                    .all(|dep| ordered.iter().any(|done| done.name == *dep))
            })
            .map(|image| image.name.clone())
            .collect();
        if ready.is_empty() {
            let cycle: Vec<&str> = remaining.keys().map(String::as_str).collect();
            bail!(
                "images depend on each other in a cycle: {}; break it by building one on a StageX image instead",
                cycle.join(", ")
            );
        }
        for name in ready {
            ordered.extend(remaining.remove(&name));
        }
    }
    Ok(ordered)
}

/// The known name closest to a mistyped one, when one is close.
pub fn did_you_mean<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|name| (strsim::jaro_winkler(typed, name), *name))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// `[a-z0-9]+([._-][a-z0-9]+)*`, at most 64 characters: a path component of
/// an image reference with single separators.
pub fn is_image_name(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes
            .windows(2)
            .all(|pair| alnum(pair[0]) || alnum(pair[1]))
        && bytes
            .iter()
            .all(|&b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, dir: &str, text: &str) {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join("Containerfile"), text).unwrap();
    }

    #[test]
    fn images_are_discovered_and_ordered_by_dependency() {
        let root = tempfile::tempdir().unwrap();
        let musl = "stagex/core-musl:1.2.5@sha256:816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";
        write(root.path(), "zbase", &format!("FROM {musl}\n"));
        write(root.path(), "examples/app", "FROM zbase\n");
        write(root.path(), "target/ignored", "FROM nothing\n");
        std::fs::create_dir_all(root.path().join("docs")).unwrap();
        let catalog = Catalog::load(root.path()).unwrap();
        let names: Vec<&str> = catalog.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["zbase", "app"]);
        assert_eq!(catalog.images[1].dir, "examples/app");
        assert_eq!(catalog.images[1].depends_on(), BTreeSet::from(["zbase"]));
        assert_eq!(
            catalog.images[0].inputs[0].kind,
            InputKind::Stagex {
                package: "core-musl".into()
            }
        );
    }

    /// The settings name images by directory: keep them pointing at real ones.
    #[test]
    fn settings_name_real_images() {
        let catalog = Catalog::load(&crate::files::project_root()).unwrap();
        let named = settings::NEEDS_NETWORK
            .iter()
            .map(|(image, _)| *image)
            .chain(settings::BUILD_CONTEXTS.iter().map(|context| context.image));
        for image in named {
            assert!(
                catalog.image(image).is_some(),
                "settings.rs names `{image}`"
            );
        }
    }

    #[test]
    fn cycles_are_refused() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "a", "FROM b\n");
        write(root.path(), "b", "FROM a\n");
        let error = Catalog::load(root.path()).unwrap_err();
        assert!(error.to_string().contains("cycle"), "{error}");
    }

    #[test]
    fn image_names_are_reference_components() {
        for good in ["base", "base-go", "node-hello", "a.b_c-1", "x"] {
            assert!(is_image_name(good), "{good}");
        }
        for bad in [
            "basex${{github.token}}",
            "Base",
            "-base",
            "base-",
            "base--go",
            "a._b",
            "",
            "b a",
            &"a".repeat(65),
        ] {
            assert!(!is_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_directory_that_is_no_image_name_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("examples/bad${{github.token}}");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Containerfile"), "FROM scratch\n").unwrap();
        let error = Catalog::load(root.path()).unwrap_err();
        assert!(crate::error::is_failure(&error));
        let text = format!("{error:#}");
        assert!(
            text.contains("examples/bad${{github.token}}/")
                && text.contains("rename the directory"),
            "{text}"
        );
    }

    #[test]
    fn a_mistyped_image_gets_the_closest_name() {
        let known = ["base", "base-go", "base-python", "base-rust"];
        assert_eq!(did_you_mean("base-pyhton", &known), Some("base-python"));
        assert_eq!(did_you_mean("bse-go", &known), Some("base-go"));
        assert_eq!(did_you_mean("nginx", &known), None);
    }
}
