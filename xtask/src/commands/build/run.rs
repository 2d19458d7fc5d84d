//! Running a planned build: a scheduler that starts each image after what it
//! builds on, several at once; one buildx run per image; the archive, its OCI
//! layout and its build record written only once the build is proven good.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::plan::ImageBuild;
use crate::model::settings;
use crate::oci::archive::OciArchive;
use crate::records::build::{BuildRecord, BuilderVersions, BuiltOn, RuntimeRecord, SourceInput};
use crate::records::{self};
use crate::report::{Outcome, StepReport};
use crate::tools::process::Env;
use crate::tools::{docker, git};

/// What a run of builds left: one report per image (in plan order) and the
/// records of those that built.
pub struct BuildRun {
    pub reports: Vec<StepReport>,
    pub built: BTreeMap<String, BuildRecord>,
}

/// Run the builds, `jobs` at a time, each after the images it builds on. A
/// failure skips only what depends on it. Reports are named `step`.
pub fn run_builds(builds: &[ImageBuild], jobs: usize, env: &Env, step: &str) -> BuildRun {
    run_builds_on(builds, BTreeMap::new(), jobs, env, step)
}

/// [`run_builds`], with images built earlier (`prebuilt`, by their records)
/// supplied to what builds on them instead of being built again.
pub fn run_builds_on(
    builds: &[ImageBuild],
    prebuilt: BTreeMap<String, BuildRecord>,
    jobs: usize,
    env: &Env,
    step: &str,
) -> BuildRun {
    let jobs = jobs.max(1);
    let mut reports: BTreeMap<String, StepReport> = BTreeMap::new();
    let mut done: BTreeMap<String, BuildRecord> = prebuilt;
    let mut running: BTreeSet<String> = BTreeSet::new();
    let (sender, receiver) = mpsc::channel::<(String, Duration, Result<BuildRecord>)>();
    std::thread::scope(|scope| loop {
        // Skip what builds on a failure.
        for build in builds {
            if reports.contains_key(&build.image) || running.contains(&build.image) {
                continue;
            }
            let blocked = build.depends_on.iter().find(|dep| {
                reports
                    .get(*dep)
                    .is_some_and(|r| !matches!(r.outcome, Outcome::Passed))
            });
            if let Some(dep) = blocked {
                let why = format!("`{dep}` did not build");
                crate::ui::say!("[{}] skipped: {why}", build.image);
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
            let digests: Option<BTreeMap<String, String>> = build
                .depends_on
                .iter()
                .map(|dep| {
                    done.get(dep)
                        .map(|record| (dep.clone(), record.manifest_digest.clone()))
                })
                .collect();
            let Some(digests) = digests else {
                continue;
            };
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
                // The receiver lives until every running build reported.
                let _ = sender.send((build.image.clone(), started.elapsed(), result));
            });
        }
        if running.is_empty() {
            break;
        }
        // Every running build holds a sender clone and always sends once.
        let Ok((image, elapsed, result)) = receiver.recv() else {
            break;
        };
        running.remove(&image);
        let report = match result {
            Ok(built) => {
                crate::ui::say!(
                    "[{image}] built in {:.1}s: {}",
                    elapsed.as_secs_f64(),
                    built.manifest_digest
                );
                let mut report = StepReport::new(&image, step, Outcome::Passed, elapsed);
                report.digest = Some(built.manifest_digest.clone());
                report.size = Some(built.archive_size);
                report.detail = built
                    .runtime
                    .as_ref()
                    .map(|runtime| format!("runtime: {}", runtime.summary));
                done.insert(image.clone(), built);
                report
            }
            Err(error) => {
                anstream::eprintln!("[{image}] FAILED: {error:#}");
                StepReport::from_error(&image, step, &error, elapsed)
            }
        };
        reports.insert(image, report);
    });
    let ordered = builds
        .iter()
        .filter_map(|b| reports.remove(&b.image))
        .collect();
    let built: Vec<&str> = builds.iter().map(|b| b.image.as_str()).collect();
    done.retain(|image, _| built.contains(&image.as_str()));
    BuildRun {
        reports: ordered,
        built: done,
    }
}

/// One buildx run, then its archive (and, for the canonical archive, its
/// layout and record).
pub fn build_once(
    build: &ImageBuild,
    digests: &BTreeMap<String, String>,
    env: &Env,
) -> Result<BuildRecord> {
    if let Some(folder) = build.archive.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut sources = Vec::new();
    for source in &build.sources {
        sources.push(fetch_source(build, source, env)?);
    }
    let argv = build.argv(digests);
    let partial = build.partial_archive();
    let _ = std::fs::remove_file(&partial);
    let log = build.log_file();
    let image = &build.image;
    let built = docker::buildx_build(&argv, env, &log, |seconds, step| {
        anstream::eprintln!("[{image}] {seconds:>5.1}s {step}");
    });
    if let Err(error) = built {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    finish(build, digests, sources)
}

/// Turn a finished buildx run into the archive and its record, in that order.
fn finish(
    build: &ImageBuild,
    digests: &BTreeMap<String, String>,
    sources: Vec<SourceInput>,
) -> Result<BuildRecord> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(rename = "containerimage.digest")]
        digest: String,
    }
    let root = &build.options.root;
    let partial = build.partial_archive();
    let metadata_path = build.metadata_file();
    let metadata: Metadata = serde_json::from_slice(
        &std::fs::read(&metadata_path)
            .with_context(|| format!("reading {}", metadata_path.display()))?,
    )
    .with_context(|| format!("{} has no containerimage.digest", metadata_path.display()))?;
    let archive = OciArchive::open(&partial)?;
    if archive.manifest_digest() != metadata.digest {
        bail!(
            "buildx reported {} but the archive holds {}: not recording it",
            metadata.digest,
            archive.manifest_digest()
        );
    }
    drop(archive);
    let runtime = if build.options.check_runtime {
        Some(check_runtime(build)?)
    } else {
        None
    };
    let archive_sha256 = crate::hash::file_sha256(&partial)?;
    let archive_size = std::fs::metadata(&partial)?.len();
    std::fs::rename(&partial, &build.archive)?;
    // Verification rebuilds land elsewhere and must not replace what later steps use.
    let canonical = build.archive == records::archive_path(root, &build.image);
    if canonical {
        crate::oci::layout::unpack(&build.archive, &records::layout_path(root, &build.image))?;
    }
    let containerfile_bytes = std::fs::read(build.containerfile())?;
    let (engine, buildx) = docker::versions(&Env::new())?;
    let built_on = build
        .depends_on
        .iter()
        .map(|dep| {
            let digest = digests.get(dep).with_context(|| {
                format!("no digest of `{dep}`, which `{}` builds on", build.image)
            })?;
            Ok(BuiltOn {
                image: dep.clone(),
                manifest_digest: digest.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let built_record = BuildRecord {
        image: build.image.clone(),
        containerfile: format!("{}/Containerfile", build.dir),
        containerfile_sha256: crate::hash::hex_sha256(&containerfile_bytes),
        manifest_digest: metadata.digest,
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
        built_on,
        sources,
        runtime,
        builder: Some(BuilderVersions {
            engine: engine.clone(),
            buildx: buildx.clone(),
        }),
        checkout_commit: git::head_commit(root),
    };
    if canonical {
        built_record.save(root)?;
    }
    Ok(built_record)
}

/// The runtime check of the freshly built archive: an image that would not
/// start fails like a failed build, and its archive is kept aside (never
/// where later steps look) for `check-runtime --archive`.
fn check_runtime(build: &ImageBuild) -> Result<RuntimeRecord> {
    use crate::commands::check_runtime as runtime;
    let partial = build.partial_archive();
    let rejected = build.rejected_archive();
    let keep_aside = || {
        std::fs::rename(&partial, &rejected)
            .with_context(|| format!("keeping the rejected archive as {}", rejected.display()))
    };
    let packages = runtime::release_packages(&build.options.root);
    let verdict = match runtime::check_archive_observed(&partial, &packages) {
        Ok((verdict, observed)) => {
            // Where the package facts were wrong, said with the line to paste.
            runtime::Known::load(&build.options.root).compare(&build.image, &observed);
            verdict
        }
        Err(error) => {
            keep_aside()?;
            return Err(error.context(format!(
                "the built archive could not be checked; it is kept as {}",
                rejected.display()
            )));
        }
    };
    crate::ui::say_more!("{}", runtime::render(&build.image, &verdict));
    if !verdict.passed() {
        keep_aside()?;
        return crate::error::fail(format!(
            "it built, but would not start: {}; the archive is kept as {} (`cargo xtask check-runtime --archive {}`)",
            runtime::problems_line(&verdict),
            rejected.display(),
            rejected.display()
        ));
    }
    Ok(RuntimeRecord {
        summary: verdict.summary(),
        argv: verdict.argv,
        program: verdict.program,
        elf_files: verdict.elf_files,
        programs: verdict.programs,
        libraries: verdict.libraries,
        notes: verdict.notes,
    })
}

/// A source build context, checked out at its pinned commit.
fn fetch_source(
    build: &ImageBuild,
    source: &settings::BuildContext,
    env: &Env,
) -> Result<SourceInput> {
    let Some(commit) = source.commit else {
        return crate::error::fail(format!(
            "build context `{}` ({} tag {}) is not pinned to a commit, and a tag alone can be moved: read it with `git ls-remote {} 'refs/tags/{}^{{}}'` and set `commit` in xtask/src/model/settings.rs",
            source.name, source.git, source.tag, source.git, source.tag
        ));
    };
    git::check_commit_id(commit)?;
    let dir = build.source_dir(source);
    crate::ui::say!(
        "[{}] source {} at {} (commit {commit})",
        build.image,
        source.git,
        source.tag
    );
    git::checkout_pinned(source.git, source.tag, commit, &dir, env)?;
    Ok(SourceInput {
        context: source.name.to_string(),
        git: source.git.to_string(),
        tag: source.tag.to_string(),
        commit: commit.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the refusal of fetch_source: a build context without a pinned
    /// commit is refused as a failed check (naming how to pin it) before git
    /// runs, never cloned at its tag alone. (The repository plan's snapshot
    /// shows forgejo-runner's context unpinned; this is what makes that
    /// unpinned context a refusal and not a build.)
    #[test]
    fn an_unpinned_source_is_refused_before_git_runs() {
        let root = crate::files::project_root();
        let catalog = crate::model::catalog::Catalog::load(&root).unwrap();
        let options = super::super::plan::BuildOptions::new(&root, 1_700_000_000);
        let builds =
            super::super::plan::plan(&catalog, &["forgejo-runner".into()], &options).unwrap();
        let build = builds.iter().find(|b| b.image == "forgejo-runner").unwrap();
        let pinned = build.sources[0];
        let unpinned = settings::BuildContext {
            name: pinned.name,
            image: pinned.image,
            git: pinned.git,
            tag: pinned.tag,
            commit: None,
        };
        // No git on this PATH: reaching git would fail otherwise.
        let env = Env::from([("PATH".to_string(), "/nonexistent".to_string())]);
        let error = fetch_source(build, &unpinned, &env).err().unwrap();
        assert!(error.is::<crate::error::Failure>(), "{error:#}");
        assert_eq!(
            error.to_string(),
            format!(
                "build context `{}` ({} tag {}) is not pinned to a commit, and a tag alone can be moved: read it with `git ls-remote {} 'refs/tags/{}^{{}}'` and set `commit` in xtask/src/model/settings.rs",
                pinned.name, pinned.git, pinned.tag, pinned.git, pinned.tag
            )
        );
    }
}
