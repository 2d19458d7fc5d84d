//! `cargo xtask all`: the pipeline ([`crate::pipeline::Step::ALL`]), one
//! summary. `demo` runs the same function on its stand-in checkout.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::args::{EngineArgs, JobsArg, JsonArg};
use super::build::{self, plan::BuildOptions, run::run_builds};
use super::malcontent::{self, Risk};
use super::scan::{self, GateArgs};
use super::signing::publish::{Publisher, SignedImage};
use super::signing::{self, KeyArgs};
use super::{digests, k8s, lint, push, reproduce, sbom};
use crate::error::fail;
use crate::files::Mode;
use crate::model::catalog::Catalog;
use crate::oci::reference::ImageRef;
use crate::oci::transfer::Pushed;
use crate::pipeline::{self, Step};
use crate::records::build::BuildRecord;
use crate::records::steps::unmet_gates;
use crate::report::{self, Outcome, StepReport};
use crate::tools::cosign::Generation;
use crate::tools::{self, process::Env};

/// Run the pipeline: lint → digests, cpes checks → build → verify-reproducible
/// → sbom → scan → malcontent → push → sign → verify.
#[derive(Debug, Args)]
pub struct All {
    /// Leave a step out (repeatable).
    #[arg(long, value_name = "STEP", value_enum)]
    pub skip: Vec<Step>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub jobs: JobsArg,
    /// Push every built image to PREFIX/<image>:latest, then sign and verify
    /// it (without it, push, sign and verify are skipped).
    #[arg(long, value_name = "PREFIX")]
    pub push_prefix: Option<String>,
    /// The signing key for what is pushed (`--key`, or COSIGN_KEY; password from COSIGN_PASSWORD).
    #[command(flatten)]
    pub key: KeyArgs,
    /// Sign images that shipped with a gate skipped (their publish record names it);
    /// without it they are pushed but not signed with the release key.
    #[arg(long)]
    pub sign_ungated: bool,
    #[command(flatten)]
    pub scan: GateArgs,
    /// malcontent: fail when a file's risk is this level or above.
    #[arg(long, value_name = "LEVEL", value_enum, default_value_t = Risk::High)]
    pub fail_on_risk: Risk,
    #[command(flatten)]
    pub json: JsonArg,
}

impl All {
    pub fn run(self, root: &Path) -> Result<()> {
        let options = PipelineOptions {
            skip: self.skip,
            engine: self.engine,
            epoch: None,
            jobs: self.jobs.get(),
            env: Env::new(),
            push_prefix: self.push_prefix,
            key: self.key,
            sign_ungated: self.sign_ungated,
            scan: self.scan,
            fail_on_risk: self.fail_on_risk,
        };
        let run = run_pipeline(root, &options)?;
        anstream::eprint!("\n{}", report::coloured_table(&run.reports));
        self.json.write("all", &run.reports, &())?;
        report::fail_if_any(&run.reports, "all")?;
        run.complete()
    }
}

/// How one run of the pipeline goes.
pub struct PipelineOptions {
    pub skip: Vec<Step>,
    pub engine: EngineArgs,
    /// SOURCE_DATE_EPOCH for the builds; `None`: the environment's, else the
    /// last commit's (read only when something builds).
    pub epoch: Option<u64>,
    pub jobs: usize,
    /// Environment for the engine and tools (e.g. test-env's DOCKER_HOST).
    pub env: Env,
    /// Where `push` sends each built image; without one it is skipped (and
    /// sign and verify with it).
    pub push_prefix: Option<String>,
    /// How `sign` signs (and `verify` verifies, against `cosign.pub`).
    pub key: KeyArgs,
    /// Sign images that shipped without a gate (the record names the gates).
    pub sign_ungated: bool,
    /// The scan gate: severity and ignore file.
    pub scan: GateArgs,
    /// The malcontent gate.
    pub fail_on_risk: Risk,
}

/// What one run left: every report in pipeline order, the images built, and
/// where each was pushed.
pub struct PipelineRun {
    pub reports: Vec<StepReport>,
    pub built: BTreeMap<String, BuildRecord>,
    pub pushed: BTreeMap<String, Pushed>,
    /// Gates skipped because their tool is not here, each with how to get it.
    pub incomplete: Vec<String>,
}

impl PipelineRun {
    /// A run with a gate left out for want of its tool did not prove what
    /// `all` promises: a failed check (exit 1) unless that gate was `--skip`ped.
    pub fn complete(&self) -> Result<()> {
        if self.incomplete.is_empty() {
            return Ok(());
        }
        fail(format!(
            "the run is incomplete: {} (or --skip the step to accept that)",
            self.incomplete.join("; ")
        ))
    }
}

impl PipelineOptions {
    /// Gates the caller chose to skip: waived, and push says so (a gate
    /// skipped for want of its tool is not).
    fn waived_gates(&self) -> Vec<Step> {
        Step::GATES
            .iter()
            .copied()
            .filter(|gate| self.skip.contains(gate))
            .collect()
    }

    /// The steps that will run, in order.
    fn steps(&self) -> Vec<Step> {
        Step::ALL
            .iter()
            .copied()
            .filter(|step| !self.skip.contains(step))
            .filter(|step| {
                !matches!(step, Step::Push | Step::Sign | Step::Verify)
                    || self.push_prefix.is_some()
            })
            // Nothing pushed, nothing to sign; nothing signed, nothing to verify.
            .filter(|step| *step != Step::Sign || !self.skip.contains(&Step::Push))
            .filter(|step| {
                *step != Step::Verify
                    || !(self.skip.contains(&Step::Sign) || self.skip.contains(&Step::Push))
            })
            .collect()
    }
}

pub fn run_pipeline(root: &Path, options: &PipelineOptions) -> Result<PipelineRun> {
    // Stop once, before any work, when a step cannot run here.
    let steps = options.steps();
    tools::require(&pipeline::tools_for(&steps), &options.env, "the pipeline")?;
    // The key, its password and its pair in cosign.pub, before anything is built.
    let publisher = if steps.contains(&Step::Sign) {
        let cosign = Generation::detect(&options.env)?;
        let public_key = root.join(signing::PUBLIC_KEY);
        Some(
            Publisher::prepare(&options.key, &public_key, cosign).context(
                "`all --push-prefix` signs what it pushes (or `--skip sign` ships unsigned)",
            )?,
        )
    } else {
        None
    };
    // Each signed image, and the gates it shipped without.
    let mut signed: BTreeMap<String, (SignedImage, Vec<String>)> = BTreeMap::new();
    let builds = steps.contains(&Step::Build) || steps.contains(&Step::VerifyReproducible);
    let epoch = match options.epoch {
        Some(epoch) => epoch,
        None if builds => build::source_date_epoch(root)?,
        // Nothing will build: no epoch (and no git history) is needed.
        None => 0,
    };
    let build_options = BuildOptions {
        registry_prefix: options.engine.registry.clone(),
        builder: options.engine.builder.clone(),
        ..BuildOptions::new(root, epoch)
    };
    // (A catalog that does not load fails `lint`, which says why.)
    let every_image: Vec<String> = Catalog::load(root)
        .map(|catalog| catalog.images.iter().map(|i| i.name.clone()).collect())
        .unwrap_or_default();
    let mut run = PipelineRun {
        reports: Vec::new(),
        built: BTreeMap::new(),
        pushed: BTreeMap::new(),
        incomplete: Vec::new(),
    };
    // The images later steps work on: after a build only what built (what
    // failed to build has nothing to check), else every image from its
    // earlier build record.
    let build_runs = steps.contains(&Step::Build);
    let later = |run: &PipelineRun| -> Vec<String> {
        if build_runs {
            run.built.keys().cloned().collect()
        } else {
            every_image.clone()
        }
    };
    for &step in Step::ALL {
        if !steps.contains(&step) {
            let why = if options.skip.contains(&step) {
                // Said when the step could not have run anyway (the demo).
                match missing_tool(step, &options.env) {
                    Some(missing) => format!("--skip {step} ({missing})"),
                    None => format!("--skip {step}"),
                }
            } else if matches!(step, Step::Sign | Step::Verify)
                && options.skip.contains(&Step::Push)
            {
                "--skip push: nothing pushed".to_string()
            } else if step == Step::Verify && options.skip.contains(&Step::Sign) {
                "--skip sign: nothing signed to verify".to_string()
            } else {
                "no --push-prefix to push to".to_string()
            };
            run.reports.push(skipped(step, why));
            continue;
        }
        crate::ui::say!("==> {step}");
        let started = Instant::now();
        let whole = |result: Result<()>| match result {
            Ok(()) => StepReport::new("-", step.name(), Outcome::Passed, started.elapsed()),
            Err(error) => {
                anstream::eprintln!("error: {error:#}");
                StepReport::from_error("-", step.name(), &error, started.elapsed())
            }
        };
        match step {
            Step::Lint => run
                .reports
                .push(whole(lint::lint_repository(root).and_then(|l| l.verdict()))),
            Step::Digests => run
                .reports
                .push(whole(digests::ensure(root, Mode::Check).map(drop))),
            Step::Build => match build_all(root, &build_options, options) {
                Ok(built) => {
                    run.reports.extend(built.reports);
                    run.built = built.built;
                }
                Err(error) => run.reports.push(whole(Err(error))),
            },
            Step::Cpes => run
                .reports
                .push(whole(sbom::ensure_cpes(root, Mode::Check).map(drop))),
            Step::K8s => match k8s::ensure(root, Mode::Check) {
                Ok(generated) => {
                    // Up to date, and still not deployable: said, not failed.
                    for gap in &generated.gaps {
                        crate::ui::say!("note: {gap}");
                    }
                    let mut report = whole(Ok(()));
                    if !generated.gaps.is_empty() {
                        report.detail = Some(format!(
                            "up to date; {} gap(s) before it can be deployed (see the notes)",
                            generated.gaps.len()
                        ));
                    }
                    run.reports.push(report);
                }
                Err(error) => run.reports.push(whole(Err(error))),
            },
            Step::VerifyReproducible => {
                let images = later(&run);
                if images.is_empty() {
                    run.reports.push(skipped(step, "no image built".into()));
                    continue;
                }
                let verified = Catalog::load(root).and_then(|catalog| {
                    reproduce::verify(&catalog, &images, &build_options, &options.env)
                });
                match verified {
                    Ok(reports) => run.reports.extend(reports),
                    Err(error) => run.reports.push(whole(Err(error))),
                }
            }
            Step::Sbom | Step::Scan | Step::Malcontent => {
                let images = later(&run);
                if images.is_empty() {
                    run.reports.push(skipped(step, "no image built".into()));
                    continue;
                }
                if let Some(missing) = missing_tool(step, &options.env) {
                    crate::ui::say!("{step} skipped: {missing}");
                    run.incomplete.push(format!("{step} skipped: {missing}"));
                    if step == Step::Malcontent {
                        // The extraction (and its refusals) needs no tool.
                        run.reports
                            .extend(malcontent::extract_only(root, &images, &missing));
                    } else {
                        run.reports.push(skipped(step, missing));
                    }
                    continue;
                }
                let reports = Catalog::load(root).and_then(|catalog| match step {
                    Step::Sbom => sbom::sbom_images(root, &catalog, &images, true, &options.env),
                    Step::Scan => scan::scan_images(root, &images, &options.scan, &options.env)
                        .map(|(reports, _)| reports),
                    _ => malcontent::analyse_images(
                        root,
                        &images,
                        options.fail_on_risk,
                        &options.env,
                    )
                    .map(|(reports, _)| reports),
                });
                match reports {
                    Ok(reports) => run.reports.extend(reports),
                    Err(error) => run.reports.push(whole(Err(error))),
                }
            }
            Step::Push => {
                let Some(prefix) = &options.push_prefix else {
                    continue;
                };
                let images = later(&run);
                if images.is_empty() {
                    run.reports.push(skipped(step, "no image built".into()));
                }
                // Nothing ships from a run that left a gate out unasked.
                if !run.incomplete.is_empty() {
                    run.reports.push(skipped(
                        step,
                        format!("not cleared to ship: {}", run.incomplete.join("; ")),
                    ));
                    continue;
                }
                let waived = options.waived_gates();
                for image in &images {
                    let started = Instant::now();
                    let repository = format!("{}/{image}", prefix.trim_end_matches('/'));
                    // With signing, the image goes in by digest: its tag moves
                    // only once the digest is signed and verified.
                    let pushed = match &publisher {
                        Some(publisher) => BuildRecord::load(root, image)
                            .and_then(|build| publisher.check_sboms(root, &build))
                            .and_then(|()| ImageRef::parse(&repository))
                            .and_then(|repository| {
                                push::push_image_by_digest(root, image, &repository, &waived)
                            }),
                        None => {
                            push::push_image(root, image, &format!("{repository}:latest"), &waived)
                        }
                    };
                    let report = match pushed {
                        Ok(pushed) => {
                            crate::ui::say!(
                                "[{image}] pushed {}@{}",
                                pushed.repository,
                                pushed.digest
                            );
                            let mut report = StepReport::new(
                                image,
                                step.name(),
                                Outcome::Passed,
                                started.elapsed(),
                            );
                            report.digest = Some(pushed.digest.clone());
                            if publisher.is_some() {
                                report.detail =
                                    Some("by digest; the tag moves once verify passed".into());
                            }
                            run.pushed.insert(image.clone(), pushed);
                            report
                        }
                        Err(error) => {
                            anstream::eprintln!("[{image}] push FAILED: {error:#}");
                            StepReport::from_error(image, step.name(), &error, started.elapsed())
                        }
                    };
                    run.reports.push(report);
                }
            }
            Step::Sign | Step::Verify => {
                let Some(publisher) = &publisher else {
                    continue;
                };
                if run.pushed.is_empty() {
                    run.reports.push(skipped(step, "nothing pushed".into()));
                    continue;
                }
                let Some(prefix) = &options.push_prefix else {
                    continue;
                };
                for (image, pushed) in &run.pushed {
                    let started = Instant::now();
                    // Built in this run, or earlier (`--skip build`).
                    let build = match run.built.get(image) {
                        Some(build) => Ok(build.clone()),
                        None => BuildRecord::load(root, image),
                    };
                    let result: Result<Option<String>> = match step {
                        Step::Sign => build.and_then(|build| {
                            let gates: Vec<&str> = Step::GATES.iter().map(|g| g.name()).collect();
                            let unmet = unmet_gates(root, &build, &gates)?;
                            if !unmet.is_empty() && !options.sign_ungated {
                                return Ok(Some(format!(
                                    "not signed with the release key: it shipped without gates ({}); --sign-ungated signs it anyway, and the record says so",
                                    unmet.join("; ")
                                )));
                            }
                            let pinned =
                                signing::by_digest(&format!("{}@{}", pushed.repository, pushed.digest))?;
                            let done = publisher.sign(root, image, &pinned)?;
                            signed.insert(image.clone(), (done, unmet));
                            Ok(None)
                        }),
                        _ => {
                            let Some((done, waived)) = signed.get(image) else {
                                run.reports.push(skipped(step, format!("{image}: not signed")));
                                continue;
                            };
                            build.and_then(|build| {
                                let verified = publisher.verify(root, &build, done)?;
                                // Verified: now the tag may point at it.
                                let to = format!("{}/{image}:latest", prefix.trim_end_matches('/'));
                                let tagged =
                                    push::push_image(root, image, &to, &options.waived_gates())?;
                                publisher.record(
                                    root,
                                    &build,
                                    &tagged.reference,
                                    done,
                                    &verified,
                                    waived.clone(),
                                )?;
                                Ok(None)
                            })
                        }
                    };
                    let report = match result {
                        Ok(None) => {
                            let mut report = StepReport::new(
                                image,
                                step.name(),
                                Outcome::Passed,
                                started.elapsed(),
                            );
                            report.digest = Some(pushed.digest.clone());
                            report
                        }
                        Ok(Some(why)) => {
                            crate::ui::say!("[{image}] {step} skipped: {why}");
                            StepReport::new(
                                image,
                                step.name(),
                                Outcome::Skipped(why),
                                started.elapsed(),
                            )
                        }
                        Err(error) => {
                            anstream::eprintln!("[{image}] {step} FAILED: {error:#}");
                            StepReport::from_error(image, step.name(), &error, started.elapsed())
                        }
                    };
                    run.reports.push(report);
                }
            }
        }
    }
    Ok(run)
}

/// Why `step` cannot run here (its tool is missing), with the fix.
fn missing_tool(step: Step, env: &Env) -> Option<String> {
    if !step.skipped_without_its_tool() {
        return None;
    }
    step.optional_tools().iter().find_map(|tool| {
        let check = tool.check(env);
        (check.status != tools::Status::Ok)
            .then(|| format!("{} not installed ({})", check.name, check.fix))
    })
}

fn skipped(step: Step, why: String) -> StepReport {
    StepReport::new("-", step.name(), Outcome::Skipped(why), Duration::ZERO)
}

fn build_all(
    root: &Path,
    build_options: &BuildOptions,
    options: &PipelineOptions,
) -> Result<build::run::BuildRun> {
    let catalog = Catalog::load(root)?;
    let builds = build::plan::plan(&catalog, &[], build_options)?;
    Ok(run_builds(
        &builds,
        options.jobs,
        &options.env,
        Step::Build.name(),
    ))
}
