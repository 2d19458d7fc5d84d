//! `cargo xtask build`: reproducible buildx builds to OCI archives, in
//! dependency order and in parallel, each leaving a build record.
//!
//! Planning is pure (`plan`, `ImageBuild::argv`); running (`run_builds`) is the
//! only part that starts processes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::catalog::{Catalog, Image, InputKind};
use crate::containerfile::ImageRef;
use crate::oci::archive::OciArchive;
use crate::record::{self, BuildRecord, BuiltOn, SourceInput};
use crate::report::{self, Outcome, StepReport};
use crate::settings;

/// Build images with buildx into out/<image>.tar, with a build record each.
#[derive(Debug, Args, Clone, Default)]
pub struct Build {
    /// Images to build (default: all); what they build on is built too.
    pub images: Vec<String>,
    /// Build every image (the default when none is named).
    #[arg(long, conflicts_with = "images")]
    pub all: bool,
    /// How many images build at once (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Pull StageX images through this prefix instead of the Containerfiles' default
    /// (e.g. `registry.internal/stagex`).
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
    /// Build without BuildKit's cache.
    #[arg(long)]
    pub no_cache: bool,
    /// A buildx builder (`docker buildx create …`): remote or Kubernetes BuildKit.
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
    /// Print the exact commands and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Choices that hold for every image of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub root: PathBuf,
    pub source_date_epoch: u64,
    pub registry_prefix: Option<String>,
    pub no_cache: bool,
    pub builder: Option<String>,
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

/// Environment for the docker processes (empty: inherit ours).
pub type Env = BTreeMap<&'static str, String>;

impl Build {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let root = sh.current_dir();
        let catalog = Catalog::load(&root)?;
        let options = BuildOptions {
            source_date_epoch: source_date_epoch(sh)?,
            root: root.clone(),
            registry_prefix: self.registry.clone(),
            no_cache: self.no_cache,
            builder: self.builder.clone(),
        };
        let builds = plan(&catalog, &self.images, &options)?;
        if self.dry_run {
            print!("{}", render_plan(&builds));
            return Ok(());
        }
        let jobs = self.jobs.unwrap_or_else(default_jobs);
        let reports = run_builds(&builds, jobs, &Env::new());
        eprint!("\n{}", report::table(&reports));
        report::fail_if_any(&reports, "build")
    }
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// `SOURCE_DATE_EPOCH` from the environment, else the last commit's time.
pub fn source_date_epoch(sh: &Shell) -> Result<u64> {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH=`{value}` is not a whole number of seconds")
        });
    }
    let output = cmd!(sh, "git log -1 --format=%ct")
        .quiet()
        .ignore_stderr()
        .read()
        .map_err(|_| {
            anyhow::anyhow!(
                "no git history in {} to take SOURCE_DATE_EPOCH from: commit first, or set SOURCE_DATE_EPOCH=<seconds>",
                sh.current_dir().display()
            )
        })?;
    output
        .trim()
        .parse()
        .with_context(|| format!("`git log` gave `{output}` as the commit time"))
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
        archive: record::archive_path(&options.root, &image.name),
        options: options.clone(),
    })
}

impl ImageBuild {
    pub fn containerfile(&self) -> PathBuf {
        self.options.root.join(&self.dir).join("Containerfile")
    }

    pub fn metadata_file(&self) -> PathBuf {
        self.archive.with_extension("metadata.json")
    }

    pub fn partial_archive(&self) -> PathBuf {
        self.archive.with_extension("tar.partial")
    }

    pub fn source_dir(&self, context: &settings::BuildContext) -> PathBuf {
        self.options
            .root
            .join(record::OUT_DIR)
            .join("sources")
            .join(context.name)
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
                record::layout_path(&self.options.root, dependency).display()
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
            out.push_str(&format!(
                "git clone --depth=1 --branch={} {} {}\n",
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

/// Run the builds, `jobs` at a time, each after the images it builds on. A
/// failure skips only what depends on it.
pub fn run_builds(builds: &[ImageBuild], jobs: usize, env: &Env) -> Vec<StepReport> {
    run_builds_with(builds, jobs, env, "build").0
}

pub fn run_builds_with(
    builds: &[ImageBuild],
    jobs: usize,
    env: &Env,
    step: &str,
) -> (Vec<StepReport>, BTreeMap<String, BuildRecord>) {
    let jobs = jobs.max(1);
    let mut reports: BTreeMap<String, StepReport> = BTreeMap::new();
    let mut done: BTreeMap<String, BuildRecord> = BTreeMap::new();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let (sender, receiver) = mpsc::channel::<(String, Duration, Result<BuildRecord>)>();
    std::thread::scope(|scope| loop {
        // Skip what builds on a failure.
        for build in builds {
            if reports.contains_key(&build.image) || running.contains(&build.image) {
                continue;
            }
            let blocked: Vec<&String> = build
                .depends_on
                .iter()
                .filter(|dep| {
                    reports
                        .get(*dep)
                        .is_some_and(|r| !matches!(r.outcome, Outcome::Passed))
                })
                .collect();
            if let Some(dep) = blocked.first() {
                let why = format!("`{dep}` did not build");
                eprintln!("[{}] skipped: {why}", build.image);
                reports.insert(
                    build.image.clone(),
                    StepReport::new(&build.image, step, Outcome::Skipped(why), Duration::ZERO),
                );
            }
        }
        // Start what is ready.
        for build in builds {
            if running.len() >= jobs {
                break;
            }
            if reports.contains_key(&build.image) || running.contains(&build.image) {
                continue;
            }
            if !build.depends_on.iter().all(|dep| done.contains_key(dep)) {
                continue;
            }
            let digests: BTreeMap<String, String> = build
                .depends_on
                .iter()
                .map(|dep| (dep.clone(), done[dep].manifest_digest.clone()))
                .collect();
            running.insert(build.image.clone());
            let sender = sender.clone();
            scope.spawn(move || {
                let started = Instant::now();
                // A panic must still report back, or the loop would wait forever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    build_once(build, &digests, env)
                }))
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("the build of `{}` panicked", build.image))
                });
                let _ = sender.send((build.image.clone(), started.elapsed(), result));
            });
        }
        if running.is_empty() {
            break;
        }
        let (image, elapsed, result) = receiver.recv().expect("a running build reports back");
        running.remove(&image);
        let outcome = match result {
            Ok(built) => {
                eprintln!(
                    "[{image}] built in {:.1}s: {}",
                    elapsed.as_secs_f64(),
                    built.manifest_digest
                );
                let mut report = StepReport::new(&image, step, Outcome::Passed, elapsed);
                report.digest = Some(built.manifest_digest.clone());
                report.size = Some(built.archive_size);
                done.insert(image.clone(), built);
                report
            }
            Err(error) => {
                eprintln!("[{image}] FAILED: {error:#}");
                StepReport::new(&image, step, Outcome::Failed(format!("{error:#}")), elapsed)
            }
        };
        reports.insert(image, outcome);
    });
    let ordered = builds
        .iter()
        .filter_map(|b| reports.remove(&b.image))
        .collect();
    (ordered, done)
}

/// One buildx run, then its archive (and, for the canonical archive, its
/// layout and record).
pub fn build_once(
    build: &ImageBuild,
    digests: &BTreeMap<String, String>,
    env: &Env,
) -> Result<BuildRecord> {
    let root = &build.options.root;
    std::fs::create_dir_all(root.join(record::OUT_DIR))?;
    let mut sources = Vec::new();
    for source in &build.sources {
        sources.push(fetch_source(build, source, env)?);
    }
    let started = Instant::now();
    let argv = build.argv(digests);
    let partial = build.partial_archive();
    let _ = std::fs::remove_file(&partial);
    let log_path = build.archive.with_extension("log");
    let mut log = std::fs::File::create(&log_path)?;
    writeln!(log, "$ {}", argv.join(" "))?;
    let mut expression = duct::cmd(&argv[0], &argv[1..])
        .stderr_to_stdout()
        .stdin_null()
        .unchecked();
    for (name, value) in env {
        expression = expression.env(name, value);
    }
    let reader = expression
        .reader()
        .with_context(|| format!("starting `{}`", argv[..3].join(" ")))?;
    let mut last_lines: Vec<String> = Vec::new();
    let mut lines = BufReader::new(&reader);
    let mut line = String::new();
    let mut announced = BTreeSet::new();
    while lines.read_line(&mut line)? > 0 {
        log.write_all(line.as_bytes())?;
        if let Some(step) = progress_step(&line) {
            if announced.insert(step.to_string()) {
                eprintln!(
                    "[{}] {:>5.1}s {step}",
                    build.image,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        last_lines.push(line.trim_end().to_string());
        if last_lines.len() > 15 {
            last_lines.remove(0);
        }
        line.clear();
    }
    let status = reader
        .try_wait()?
        .context("buildx finished its output but not its process")?
        .status;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        let error_lines: Vec<&String> = last_lines
            .iter()
            .filter(|l| l.contains("ERROR") || l.contains("error"))
            .collect();
        let detail = match error_lines.last() {
            Some(line) => line.to_string(),
            None => last_lines.last().cloned().unwrap_or_default(),
        };
        bail!(
            "docker buildx build exited with {status}: {detail} (full log: {})",
            log_path.display()
        );
    }
    finish(build, digests, sources)
}

/// Turn a finished buildx run into the archive and its record, in that order.
fn finish(
    build: &ImageBuild,
    digests: &BTreeMap<String, String>,
    sources: Vec<SourceInput>,
) -> Result<BuildRecord> {
    let root = &build.options.root;
    let partial = build.partial_archive();
    let metadata: serde_json::Value = serde_json::from_slice(
        &std::fs::read(build.metadata_file())
            .with_context(|| format!("reading {}", build.metadata_file().display()))?,
    )?;
    let reported = metadata["containerimage.digest"]
        .as_str()
        .context("buildx metadata has no containerimage.digest")?
        .to_string();
    let archive = OciArchive::open(&partial)?;
    if archive.manifest_digest() != reported {
        bail!(
            "buildx reported {reported} but the archive holds {}: not recording it",
            archive.manifest_digest()
        );
    }
    let archive_sha256 = crate::sha::file_sha256(&partial)?;
    let archive_size = std::fs::metadata(&partial)?.len();
    std::fs::rename(&partial, &build.archive)?;
    // Verification rebuilds land elsewhere and must not replace what later steps use.
    let canonical = build.archive == record::archive_path(root, &build.image);
    if canonical {
        unpack_layout(&build.archive, &record::layout_path(root, &build.image))?;
    }
    let containerfile_bytes = std::fs::read(build.containerfile())?;
    let built_record = BuildRecord {
        image: build.image.clone(),
        containerfile: format!("{}/Containerfile", build.dir),
        containerfile_sha256: crate::sha::hex_sha256(&containerfile_bytes),
        manifest_digest: reported,
        archive: build
            .archive
            .strip_prefix(root)
            .unwrap_or(&build.archive)
            .display()
            .to_string(),
        archive_sha256,
        archive_size,
        source_date_epoch: build.options.source_date_epoch,
        registry_prefix: build
            .options
            .registry_prefix
            .clone()
            .unwrap_or_else(|| settings::UPSTREAM_PREFIX.to_string()),
        network: build.network,
        stagex_inputs: build.stagex_inputs.clone(),
        built_on: build
            .depends_on
            .iter()
            .map(|dep| BuiltOn {
                image: dep.clone(),
                manifest_digest: digests[dep].clone(),
            })
            .collect(),
        sources,
    };
    if canonical {
        built_record.save(root)?;
    }
    Ok(built_record)
}

/// Unpack an OCI archive into a layout directory (replacing an old one whole).
pub fn unpack_layout(archive: &Path, layout: &Path) -> Result<()> {
    let staging = layout.with_extension("oci.partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let file = std::fs::File::open(archive)?;
    tar::Archive::new(file)
        .unpack(&staging)
        .with_context(|| format!("unpacking {}", archive.display()))?;
    if layout.exists() {
        std::fs::remove_dir_all(layout)?;
    }
    std::fs::rename(&staging, layout)?;
    Ok(())
}

fn fetch_source(
    build: &ImageBuild,
    source: &settings::BuildContext,
    env: &Env,
) -> Result<SourceInput> {
    let dir = build.source_dir(source);
    if !dir.join(".git").exists() {
        eprintln!("[{}] fetching {} {}", build.image, source.git, source.tag);
        let mut command = std::process::Command::new("git");
        command
            .args(["clone", "--quiet", "--depth=1"])
            .arg(format!("--branch={}", source.tag))
            .arg(source.git)
            .arg(&dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let output = command.output().context("running git")?;
        if !output.status.success() {
            bail!(
                "git clone {} at {} failed: {}",
                source.git,
                source.tag,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["rev-parse", "HEAD"])
        .output()?;
    Ok(SourceInput {
        context: source.name.to_string(),
        git: source.git.to_string(),
        tag: source.tag.to_string(),
        commit: String::from_utf8_lossy(&output.stdout).trim().to_string(),
    })
}

/// `#7 [build 2/4] RUN […]` → `[build 2/4] RUN […]`: the step lines worth showing.
fn progress_step(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?;
    let (number, rest) = rest.split_once(' ')?;
    if !number.chars().all(|c| c.is_ascii_digit()) || !rest.starts_with('[') {
        return None;
    }
    Some(rest.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(root: &Path) -> BuildOptions {
        BuildOptions::new(root, 1_700_000_000)
    }

    #[test]
    fn the_repository_plan() {
        let root = crate::project_root();
        let catalog = Catalog::load(&root).unwrap();
        let builds = plan(&catalog, &[], &options(&root)).unwrap();
        insta::assert_snapshot!(render_plan(&builds));
    }

    #[test]
    fn naming_an_image_brings_what_it_builds_on_and_options_show() {
        let root = crate::project_root();
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
    fn digests_of_dependencies_go_into_the_context() {
        let root = Path::new("/r");
        let build = ImageBuild {
            image: "app".into(),
            dir: "examples/app".into(),
            depends_on: vec!["base".into()],
            network: false,
            sources: vec![],
            stagex_inputs: vec![],
            archive: root.join("out/app.tar"),
            options: options(root),
        };
        let argv = build.argv(&BTreeMap::from([("base".into(), "sha256:abc".into())]));
        assert!(argv
            .contains(&"--build-context=base=oci-layout:///r/out/base.oci@sha256:abc".to_string()));
        assert!(argv.contains(&"--network=none".to_string()));
        assert!(argv.contains(
            &"--output=type=oci,dest=/r/out/app.tar.partial,rewrite-timestamp=true".to_string()
        ));
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_step("#7 [build 2/4] RUN [\"go\"]\n"),
            Some("[build 2/4] RUN [\"go\"]")
        );
        assert_eq!(progress_step("#7 DONE 0.1s\n"), None);
        assert_eq!(
            progress_step("#1 [internal] load build definition\n"),
            Some("[internal] load build definition")
        );
        assert_eq!(progress_step("some text"), None);
    }
}
