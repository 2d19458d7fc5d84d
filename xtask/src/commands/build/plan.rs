//! Planning a build, purely: which images, in which order, with which exact
//! `docker buildx build` command. Nothing here touches a process or a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::model::catalog::{Catalog, Image, InputKind};
use crate::model::settings;
use crate::oci::reference::ImageRef;
use crate::records;

/// Choices that hold for every image of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub root: PathBuf,
    pub source_date_epoch: u64,
    pub registry_prefix: Option<String>,
    pub no_cache: bool,
    pub builder: Option<String>,
    /// Prove each image can start before it is recorded (`check-runtime`);
    /// off only for stand-in packages, which are never started.
    pub check_runtime: bool,
}

impl BuildOptions {
    /// Defaults: the Containerfiles' registry prefix, BuildKit's cache, the default builder.
    pub fn new(root: &Path, source_date_epoch: u64) -> BuildOptions {
        BuildOptions {
            root: root.to_path_buf(),
            source_date_epoch,
            registry_prefix: None,
            no_cache: false,
            builder: None,
            check_runtime: true,
        }
    }
}

/// One image's build, planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBuild {
    pub image: String,
    pub dir: String,
    pub depends_on: Vec<String>,
    pub network: bool,
    pub sources: Vec<&'static settings::BuildContext>,
    pub stagex_inputs: Vec<String>,
    pub archive: PathBuf,
    pub options: BuildOptions,
}

/// The images to build, in dependency order: the named ones (all when none)
/// plus everything they build on.
pub fn plan(
    catalog: &Catalog,
    names: &[String],
    options: &BuildOptions,
) -> Result<Vec<ImageBuild>> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<&Image> = catalog.select(names)?;
    while let Some(image) = stack.pop() {
        if wanted.insert(image.name.clone()) {
            stack.extend(
                image
                    .depends_on()
                    .iter()
                    .filter_map(|dep| catalog.image(dep)),
            );
        }
    }
    catalog
        .images
        .iter()
        .filter(|image| wanted.contains(&image.name))
        .map(|image| plan_image(image, options))
        .collect()
}

fn plan_image(image: &Image, options: &BuildOptions) -> Result<ImageBuild> {
    let prefix = options.registry_prefix.as_deref();
    let mut stagex_inputs = Vec::new();
    for (input, _) in image.stagex_inputs() {
        stagex_inputs.push(match prefix {
            Some(prefix) => {
                // As pulled: the same repository name and pin under the other prefix.
                let pinned = ImageRef {
                    registry: None,
                    repository: format!("{prefix}/{}", input.reference.name()),
                    ..input.reference.clone()
                };
                pinned.to_string()
            }
            None => input.reference.to_string(),
        });
    }
    let sources = image
        .inputs
        .iter()
        .filter_map(|input| match &input.kind {
            InputKind::Context { name } => settings::BUILD_CONTEXTS.iter().find(|c| c.name == name),
            _ => None,
        })
        .collect();
    Ok(ImageBuild {
        image: image.name.clone(),
        dir: image.dir.clone(),
        depends_on: image.depends_on().iter().map(|d| d.to_string()).collect(),
        network: settings::NEEDS_NETWORK
            .iter()
            .any(|(name, _)| *name == image.name),
        sources,
        stagex_inputs,
        archive: records::archive_path(&options.root, &image.name),
        options: options.clone(),
    })
}

impl ImageBuild {
    pub fn containerfile(&self) -> PathBuf {
        self.options.root.join(&self.dir).join("Containerfile")
    }

    /// The folder this build writes in (the archive's).
    fn folder(&self) -> PathBuf {
        self.archive
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    pub fn metadata_file(&self) -> PathBuf {
        self.folder().join("buildx-metadata.json")
    }

    pub fn partial_archive(&self) -> PathBuf {
        self.folder().join("image.tar.partial")
    }

    /// Where a built archive that fails the runtime check is kept, to look at.
    pub fn rejected_archive(&self) -> PathBuf {
        self.folder().join("image.rejected.tar")
    }

    pub fn log_file(&self) -> PathBuf {
        self.folder().join("build.log")
    }

    pub fn source_dir(&self, context: &settings::BuildContext) -> PathBuf {
        records::source_dir(&self.options.root, context.name)
    }

    /// The exact `docker buildx build` command. `dependency_digests` gives the
    /// manifest digest of each image this one builds on.
    pub fn argv(&self, dependency_digests: &BTreeMap<String, String>) -> Vec<String> {
        let mut argv: Vec<String> = ["docker", "buildx", "build"].map(String::from).to_vec();
        if let Some(builder) = &self.options.builder {
            argv.push(format!("--builder={builder}"));
        }
        argv.extend([
            "--progress=plain".to_string(),
            "--provenance=false".to_string(),
            "--sbom=false".to_string(),
        ]);
        if !self.network {
            argv.push("--network=none".into());
        }
        if self.options.no_cache {
            argv.push("--no-cache".into());
        }
        argv.push(format!("--file={}", self.containerfile().display()));
        argv.push(format!(
            "--build-arg=SOURCE_DATE_EPOCH={}",
            self.options.source_date_epoch
        ));
        if let Some(prefix) = &self.options.registry_prefix {
            argv.push(format!("--build-arg={}={prefix}", settings::REGISTRY_ARG));
        }
        for dependency in &self.depends_on {
            let digest = dependency_digests
                .get(dependency)
                .cloned()
                .unwrap_or_else(|| format!("<digest of {dependency}>"));
            argv.push(format!(
                "--build-context={dependency}=oci-layout://{}@{digest}",
                records::layout_path(&self.options.root, dependency).display()
            ));
        }
        for source in &self.sources {
            argv.push(format!(
                "--build-context={}={}",
                source.name,
                self.source_dir(source).display()
            ));
        }
        argv.push(format!(
            "--metadata-file={}",
            self.metadata_file().display()
        ));
        argv.push(format!(
            "--output=type=oci,dest={},rewrite-timestamp=true",
            self.partial_archive().display()
        ));
        argv.push(self.options.root.join(&self.dir).display().to_string());
        argv
    }

    /// Same build, archive elsewhere (verify-reproducible builds twice).
    pub fn with_archive(&self, archive: PathBuf) -> ImageBuild {
        ImageBuild {
            archive,
            ..self.clone()
        }
    }
}

/// `--dry-run` output: one block per image, paths relative to the root.
pub fn render_plan(builds: &[ImageBuild]) -> String {
    let mut out = String::new();
    for build in builds {
        let root = format!("{}/", build.options.root.display());
        out.push_str(&format!("# {}", build.image));
        if !build.depends_on.is_empty() {
            out.push_str(&format!(" (after {})", build.depends_on.join(", ")));
        }
        out.push('\n');
        for source in &build.sources {
            let pin = match source.commit {
                Some(commit) => format!("accepted only at commit {commit}"),
                None => "no commit pinned: the build refuses it".to_string(),
            };
            out.push_str(&format!(
                "git clone --depth=1 --branch={} {} {}  # {pin}\n",
                source.tag,
                source.git,
                build
                    .source_dir(source)
                    .display()
                    .to_string()
                    .replace(&root, "")
            ));
        }
        let argv: Vec<String> = build
            .argv(&BTreeMap::new())
            .iter()
            .map(|a| a.replace(&root, ""))
            .collect();
        let (program, flags) = argv.split_at(3);
        let mut lines = vec![program.join(" ")];
        lines.extend(flags.iter().cloned());
        out.push_str(&lines.join(" \\\n    "));
        out.push_str("\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(root: &Path) -> BuildOptions {
        BuildOptions::new(root, 1_700_000_000)
    }

    #[test]
    fn the_repository_plan() {
        let root = crate::files::project_root();
        let catalog = Catalog::load(&root).unwrap();
        let builds = plan(&catalog, &[], &options(&root)).unwrap();
        insta::assert_snapshot!(render_plan(&builds));
    }

    #[test]
    fn naming_an_image_brings_what_it_builds_on_and_options_show() {
        let root = crate::files::project_root();
        let catalog = Catalog::load(&root).unwrap();
        let mut options = options(&root);
        options.registry_prefix = Some("registry.internal/stagex".into());
        options.no_cache = true;
        options.builder = Some("remote".into());
        let builds = plan(&catalog, &["go-hello".into()], &options).unwrap();
        let names: Vec<&str> = builds.iter().map(|b| b.image.as_str()).collect();
        assert_eq!(names, ["base-go", "go-hello"]);
        assert!(builds[0]
            .stagex_inputs
            .iter()
            .all(|r| r.starts_with("registry.internal/stagex/")));
        insta::assert_snapshot!(render_plan(&builds));
        let error = plan(&catalog, &["nope".into()], &options).unwrap_err();
        assert!(
            error.to_string().contains("known images are base"),
            "{error}"
        );
    }

    #[test]
    fn a_source_context_shows_its_pin_in_the_plan() {
        let root = crate::files::project_root();
        let catalog = Catalog::load(&root).unwrap();
        let builds = plan(&catalog, &["forgejo-runner".into()], &options(&root)).unwrap();
        let text = render_plan(&builds);
        let source = &settings::BUILD_CONTEXTS[0];
        let clone_line = text
            .lines()
            .find(|l| l.starts_with("git clone"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(clone_line.contains(source.tag), "{clone_line}");
        match source.commit {
            Some(commit) => assert!(clone_line.contains(commit), "{clone_line}"),
            None => assert!(clone_line.contains("the build refuses it"), "{clone_line}"),
        }
    }

    #[test]
    fn digests_of_dependencies_go_into_the_context() {
        let root = Path::new("/r");
        let build = ImageBuild {
            image: "app".into(),
            dir: "examples/app".into(),
            depends_on: vec!["base".into()],
            network: false,
            sources: vec![],
            stagex_inputs: vec![],
            archive: crate::records::archive_path(root, "app"),
            options: options(root),
        };
        let argv = build.argv(&BTreeMap::from([("base".into(), "sha256:abc".into())]));
        assert!(argv.contains(
            &"--build-context=base=oci-layout:///r/out/base/image.oci@sha256:abc".to_string()
        ));
        assert!(argv.contains(&"--network=none".to_string()));
        assert!(argv.contains(
            &"--output=type=oci,dest=/r/out/app/image.tar.partial,rewrite-timestamp=true"
                .to_string()
        ));
    }
}
