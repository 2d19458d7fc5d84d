//! The workflows, planned from the image catalog: pure, snapshot-tested.
//!
//! `build.yml` (push to main, weekly, manual):
//! `xtask` (the binary, built once) → `mirror-deps` → `build-scan` (a leg per
//! base image) → `publish` (a leg per base image; the only job with the
//! signing key and the publishing registry's credentials) and `build-apps`
//! (a leg per image built on one of ours, with its bases' archives) →
//! `summary` (every leg's reports in one table).
//!
//! `check.yml` (pull requests): `xtask` → `lint` (lint, digests, workflows
//! and cpes.txt checks), and `test`; no secrets, nothing pushed.

use anyhow::{bail, Result};

use super::model::{
    Action, Branches, Concurrency, Cron, Empty, Job, Matrix, Ordered, Permissions, Step, Strategy,
    Triggers, Workflow,
};
use crate::model::catalog::Catalog;
use crate::model::settings::{self, Site};

/// Actions, by full URL, pinned to the commit of the version named.
pub const CHECKOUT: Action = Action {
    url: "https://code.forgejo.org/actions/checkout",
    commit: "11bd71901bbe5b1630ceea73d27597364c9af683",
    version: "v4.2.2",
};
pub const UPLOAD_ARTIFACT: Action = Action {
    url: "https://code.forgejo.org/actions/upload-artifact",
    commit: "a8a3f3ad30e3422c9c7b888a15615d19a852ae32",
    version: "v3.1.3",
};
pub const DOWNLOAD_ARTIFACT: Action = Action {
    url: "https://code.forgejo.org/actions/download-artifact",
    commit: "9bc31d5ccc31df68ecc42ccf4149144866c47d8a",
    version: "v3.0.2",
};
pub const ACTIONS: &[Action] = &[CHECKOUT, UPLOAD_ARTIFACT, DOWNLOAD_ARTIFACT];

/// Where each job keeps the xtask binary it downloaded.
const BIN_DIR: &str = ".xtask-bin";
/// The artifact every leg adds its JSON reports to (v3 artifacts merge).
const REPORTS: &str = "reports";

/// One generated file: its name under `.forgejo/workflows/` and its model.
pub struct Planned {
    pub file: &'static str,
    pub workflow: Workflow,
}

/// The images `build-scan` builds (built on no image of ours) and those
/// `build-apps` builds, each with the images it builds on; and those left
/// out, with why.
pub struct Split {
    pub bases: Vec<String>,
    pub apps: Vec<(String, Vec<String>)>,
    pub left_out: Vec<(String, String)>,
}

/// Why an image cannot build anywhere yet (a source context with no pinned
/// commit: `build` refuses it), if it cannot.
fn cannot_build(image: &crate::model::catalog::Image) -> Option<String> {
    settings::BUILD_CONTEXTS
        .iter()
        .find(|context| context.image == image.name && context.commit.is_none())
        .map(|context| {
            format!(
                "its source `{}` ({} {}) has no pinned commit in xtask/src/model/settings.rs",
                context.name, context.git, context.tag
            )
        })
}

pub fn split(catalog: &Catalog) -> Result<Split> {
    let mut bases = Vec::new();
    let mut apps = Vec::new();
    let mut left_out = Vec::new();
    for image in &catalog.images {
        // A leg that fails on every run would hide the ones that fail for a reason.
        if let Some(why) = cannot_build(image) {
            left_out.push((image.name.clone(), why));
            continue;
        }
        let on: Vec<String> = image.depends_on().iter().map(|s| s.to_string()).collect();
        if on.is_empty() {
            bases.push(image.name.clone());
        } else {
            apps.push((image.name.clone(), on));
        }
    }
    for (app, on) in &apps {
        if let Some(app_base) = on.iter().find(|b| !bases.contains(b)) {
            bail!(
                "`{app}` builds on `{app_base}`, which is itself built on one of our images: the workflows build apps on base images only (one level); build `{app_base}` from StageX images, or extend xtask/src/commands/workflows/plan.rs"
            );
        }
    }
    Ok(Split {
        bases,
        apps,
        left_out,
    })
}

/// The (step, image) reports a complete `build.yml` run leaves (publish is
/// judged apart: it runs on main only).
pub fn expected_reports(split: &Split) -> Vec<(String, String)> {
    let mut expected = Vec::new();
    for image in split
        .bases
        .iter()
        .chain(split.apps.iter().map(|(app, _)| app))
    {
        for step in GATE_STEPS {
            expected.push((step.to_string(), image.clone()));
        }
    }
    expected
}

/// The steps every image's leg runs, in order.
pub const GATE_STEPS: &[&str] = &["build", "verify-reproducible", "sbom", "scan", "malcontent"];

fn checkout() -> Step {
    Step::uses(
        "Check out (no credentials kept)",
        CHECKOUT,
        Ordered::new().with("persist-credentials", "false".to_string()),
    )
}

/// The steps that give a job the binary the `xtask` job built.
fn use_xtask() -> Vec<Step> {
    vec![
        Step::uses(
            "The xtask binary, built once in this run",
            DOWNLOAD_ARTIFACT,
            Ordered::new()
                .with("name", "xtask".to_string())
                .with("path", BIN_DIR.to_string()),
        ),
        Step::run(
            "Put xtask on PATH",
            format!("chmod +x {BIN_DIR}/xtask && echo \"$PWD/{BIN_DIR}\" >> \"$GITHUB_PATH\""),
        ),
    ]
}

/// `xtask doctor --for-job` with the xtask commands `steps` run: the job
/// stops at once, naming what its image lacks, before any work.
fn check_job_image(steps: &[Step]) -> Step {
    let mut commands: Vec<&str> = Vec::new();
    for run in steps.iter().filter_map(|step| step.run.as_deref()) {
        let words: Vec<&str> = run.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "xtask" && !commands.contains(&pair[1]) {
                commands.push(pair[1]);
            }
        }
    }
    Step::run(
        "The job image has what these steps call",
        format!("xtask doctor --for-job {}", commands.join(",")),
    )
}

fn upload_reports() -> Step {
    Step::uses(
        "Keep the JSON reports (also when a step failed)",
        UPLOAD_ARTIFACT,
        Ordered::new()
            .with("name", REPORTS.to_string())
            .with("path", format!("{REPORTS}/")),
    )
    .when("always()")
}

/// The job that builds the xtask binary once and hands it on.
fn xtask_job(label: &str) -> Job {
    Job {
        container: None,
        name: "Build the xtask binary".into(),
        runs_on: label.into(),
        needs: vec![],
        condition: None,
        permissions: Permissions::read_contents(),
        timeout_minutes: 30,
        strategy: None,
        env: Ordered::new(),
        steps: vec![
            checkout(),
            Step::run(
                "Build",
                format!("cargo build --locked --release --package xtask && mkdir -p {BIN_DIR} && cp target/release/xtask {BIN_DIR}/xtask"),
            ),
            Step::uses(
                "Hand it to the other jobs",
                UPLOAD_ARTIFACT,
                Ordered::new()
                    .with("name", "xtask".to_string())
                    .with("path", format!("{BIN_DIR}/xtask"))
                    // A re-run of a later job days after needs it still.
                    .with("retention-days", "7".to_string()),
            ),
        ],
    }
}

/// A job of `steps` after `needs`, reading the repository only, on the
/// trusted runners.
fn job(name: &str, needs: &[&str], timeout_minutes: u32, steps: Vec<Step>) -> Job {
    job_on(settings::RUNNER_LABEL, name, needs, timeout_minutes, steps)
}

fn job_on(label: &str, name: &str, needs: &[&str], timeout_minutes: u32, steps: Vec<Step>) -> Job {
    let mut all = vec![checkout()];
    all.extend(use_xtask());
    all.push(check_job_image(&steps));
    all.extend(steps);
    Job {
        container: None,
        name: name.into(),
        runs_on: label.into(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        condition: None,
        permissions: Permissions::read_contents(),
        timeout_minutes,
        strategy: None,
        env: Ordered::new(),
        steps: all,
    }
}

/// A leg per image, the image's name in `$IMAGE` (never `${{ }}` in a `run:`).
fn per_image(mut job: Job, legs: Vec<Ordered<String>>) -> Job {
    job.strategy = Some(Strategy {
        fail_fast: false,
        matrix: Matrix { include: legs },
    });
    job.env.push("IMAGE", "${{ matrix.image }}".to_string());
    job
}

/// Builds pull StageX through the mirror `mirror-deps` filled.
fn from_mirror(mut job: Job) -> Job {
    job.env
        .push("STAGEX_MIRROR", "${{ vars.STAGEX_MIRROR }}".to_string());
    job
}

fn leg(image: &str) -> Ordered<String> {
    Ordered::new().with("image", image.to_string())
}

/// `xtask <step> "$IMAGE" …` for each gate step, each leaving its report;
/// `build_flags` for the build (`--on-recorded` for apps).
fn gate_steps(build_flags: &str) -> Vec<Step> {
    vec![
        // Without BuildKit's cache: a cached layer keeps the time it was
        // first made, and the runner's engine outlives jobs, so a layer made
        // before this commit would put an older mtime in the archive than the
        // clean rebuilds of the next step make (seen under act).
        Step::run(
            "Build (and prove it can start)",
            format!("xtask build \"$IMAGE\" --no-cache{build_flags} --registry \"$STAGEX_MIRROR\" --json {REPORTS}/build-\"$IMAGE\".json"),
        ),
        Step::run(
            "Verify it builds reproducibly",
            format!("xtask verify-reproducible \"$IMAGE\" --registry \"$STAGEX_MIRROR\" --json {REPORTS}/verify-reproducible-\"$IMAGE\".json"),
        ),
        Step::run(
            "SBOM",
            format!("xtask sbom \"$IMAGE\" --json {REPORTS}/sbom-\"$IMAGE\".json"),
        ),
        Step::run(
            "Scan",
            format!("xtask scan \"$IMAGE\" --json {REPORTS}/scan-\"$IMAGE\".json"),
        ),
        Step::run(
            "malcontent",
            format!("xtask malcontent \"$IMAGE\" --json {REPORTS}/malcontent-\"$IMAGE\".json"),
        ),
    ]
}

/// The image's folder (archive, layout, records, SBOMs) for later jobs;
/// the reproducibility rebuilds stay behind.
fn upload_image() -> Step {
    Step::uses(
        "Keep the image, its records and SBOMs",
        UPLOAD_ARTIFACT,
        Ordered::new()
            .with("name", "image-${{ matrix.image }}".to_string())
            .with(
                "path",
                "out/${{ matrix.image }}/\n!out/${{ matrix.image }}/reproduce/\n".to_string(),
            )
            .with("retention-days", "7".to_string()),
    )
}

fn download_image(image: &str) -> Step {
    Step::uses(
        &format!("The archive of {image}"),
        DOWNLOAD_ARTIFACT,
        Ordered::new()
            .with("name", format!("image-{image}"))
            .with("path", format!("out/{image}")),
    )
}

fn build_workflow(split: &Split, site: &Site) -> Workflow {
    let mirror_env = |step: Step| step.env("STAGEX_MIRROR", "${{ vars.STAGEX_MIRROR }}");
    let mirror = job(
        "Mirror the pinned StageX images (signature quorum checked)",
        &["xtask"],
        60,
        vec![
            mirror_env(
                Step::run(
                    "Mirror",
                    format!(
                        "xtask mirror --to-prefix \"$STAGEX_MIRROR\" --json {REPORTS}/mirror.json"
                    ),
                )
                // The mirror's own credentials, for this job only.
                .env("XTASK_REGISTRY_USERNAME", "${{ secrets.MIRROR_USERNAME }}")
                .env("XTASK_REGISTRY_PASSWORD", "${{ secrets.MIRROR_PASSWORD }}"),
            ),
            upload_reports(),
        ],
    );

    let mut scan_steps: Vec<Step> = gate_steps("");
    scan_steps.push(upload_image());
    scan_steps.push(upload_reports());
    let build_scan = from_mirror(per_image(
        job(
            "Build and scan ${{ matrix.image }}",
            &["xtask", "lint", "mirror-deps"],
            120,
            scan_steps,
        ),
        split.bases.iter().map(|b| leg(b)).collect(),
    ));

    let tlog = if settings::SIGN_WITH_TRANSPARENCY_LOG {
        ""
    } else {
        " --no-tlog"
    };
    let mut publish_steps = vec![download_image_matrix()];
    publish_steps.push(
        Step::run(
            "Publish: push, sign, attest, verify",
            format!("xtask publish \"$IMAGE\" --to \"$REGISTRY_PREFIX/$IMAGE:latest\"{tlog} --json {REPORTS}/publish-\"$IMAGE\".json"),
        )
        // The one publishing path: k8s/ and policies/ name it too.
        .env("REGISTRY_PREFIX", site.publish_prefix.clone())
        .env("XTASK_REGISTRY_USERNAME", "${{ secrets.REGISTRY_USERNAME }}")
        .env("XTASK_REGISTRY_PASSWORD", "${{ secrets.REGISTRY_PASSWORD }}")
        .env("COSIGN_KEY", "${{ secrets.COSIGN_KEY }}")
        .env("COSIGN_PASSWORD", "${{ secrets.COSIGN_PASSWORD }}"),
    );
    publish_steps.push(upload_reports());
    let mut publish = per_image(
        job(
            "Publish ${{ matrix.image }}",
            &["xtask", "test", "build-scan"],
            30,
            publish_steps,
        ),
        split.bases.iter().map(|b| leg(b)).collect(),
    );
    // Only what main built is published: pushes to main, the weekly run and
    // manual runs on main (Forgejo gives scheduled runs the bare branch name
    // as `github.ref`), nothing else; a leg whose image did not pass has no
    // artifact and fails alone, instead of one failed base stopping every
    // publish.
    publish.condition = Some(PUBLISH_CONDITION.into());

    let mut app_bases: Vec<&String> = split.apps.iter().flat_map(|(_, on)| on).collect();
    app_bases.sort();
    app_bases.dedup();
    let mut app_steps: Vec<Step> = app_bases.iter().map(|b| download_image(b)).collect();
    // The bases come from their artifacts, as build-scan checked them: never rebuilt.
    app_steps.extend(gate_steps(" --on-recorded"));
    app_steps.push(upload_reports());
    let mut build_apps = from_mirror(per_image(
        job(
            "Build and scan ${{ matrix.image }} (on its base)",
            &["xtask", "build-scan"],
            120,
            app_steps,
        ),
        split
            .apps
            .iter()
            .map(|(app, on)| leg(app).with("builds-on", on.join(" ")))
            .collect(),
    ));

    // An app whose base did not pass fails at its download, alone.
    build_apps.condition = Some("!cancelled()".into());
    let mut summary = job(
        "One table of every leg's reports",
        &[
            "xtask",
            "lint",
            "mirror-deps",
            "build-scan",
            "publish",
            "build-apps",
        ],
        15,
        vec![
            Step::uses(
                "Every leg's reports",
                DOWNLOAD_ARTIFACT,
                Ordered::new()
                    .with("name", REPORTS.to_string())
                    .with("path", REPORTS.to_string()),
            ),
            Step::run(
                "Summary (the log shows the table)",
                format!("xtask summary {REPORTS} --markdown summary.md --expect-build-workflow"),
            ),
            Step::uses(
                "Keep the summary",
                UPLOAD_ARTIFACT,
                Ordered::new()
                    .with("name", "summary".to_string())
                    .with("path", "summary.md".to_string()),
            )
            .when("always()"),
        ],
    );
    summary.condition = Some("always()".into());

    let mut jobs = Ordered::new()
        .with("xtask", xtask_job(settings::RUNNER_LABEL))
        .with("lint", lint_job(settings::RUNNER_LABEL))
        .with("test", test_job(settings::RUNNER_LABEL))
        .with("mirror-deps", mirror)
        .with("build-scan", build_scan)
        .with("publish", publish);
    if !split.apps.is_empty() {
        jobs.push("build-apps", build_apps);
    } else if let Some(needs) = summary.needs.iter().position(|n| n == "build-apps") {
        summary.needs.remove(needs);
    }
    jobs.push("summary", summary);
    Workflow {
        name: "build".into(),
        on: Triggers {
            push: Some(Branches {
                branches: vec!["main".into()],
                paths_ignore: DOCS_ONLY.iter().map(|p| p.to_string()).collect(),
                ..Branches::default()
            }),
            schedule: vec![Cron {
                // Weekly, off the hour: new StageX fixes and scanner data.
                cron: "17 4 * * 1".into(),
            }],
            workflow_dispatch: Some(Empty {}),
            ..Triggers::default()
        },
        permissions: Permissions::none(),
        concurrency: Some(Concurrency {
            // One release run at a time; a newer push waits rather than
            // cancelling a publish half done.
            group: "build-${{ github.ref }}".into(),
            cancel_in_progress: false,
        }),
        env: root_env(),
        jobs,
    }
}

fn download_image_matrix() -> Step {
    Step::uses(
        "The image, its records and SBOMs",
        DOWNLOAD_ARTIFACT,
        Ordered::new()
            .with("name", "image-${{ matrix.image }}".to_string())
            .with("path", "out/${{ matrix.image }}".to_string()),
    )
}

/// Every job runs xtask on the checkout it is in.
fn root_env() -> Ordered<String> {
    Ordered::new()
        .with("XTASK_ROOT", "${{ github.workspace }}".to_string())
        .with("CARGO_TERM_COLOR", "never".to_string())
}

/// Lint, and every generated file up to date: before anything builds (in
/// build.yml too: a push to main is not published unlinted).
fn lint_job(label: &str) -> Job {
    job_on(
        label,
        "Lint, and generated files up to date",
        &["xtask"],
        15,
        vec![
            Step::run("Lint", "xtask lint"),
            Step::run("DIGESTS.md", "xtask digests --check"),
            Step::run("Workflows", "xtask workflows --check"),
            Step::run(
                "Kubernetes manifests and admission policy",
                "xtask k8s --check",
            ),
            Step::run("cpes.txt", "xtask sbom --cpes --check"),
        ],
    )
}

/// When `publish` runs: see its comment in [`build_workflow`].
pub const PUBLISH_CONDITION: &str = "!cancelled() && needs.test.result == 'success' && (github.event_name == 'push' || github.event_name == 'schedule' || github.event_name == 'workflow_dispatch') && (github.ref == 'refs/heads/main' || github.ref == 'main')";

/// Pushes that change only documentation build and publish nothing.
pub const DOCS_ONLY: &[&str] = &["docs/**", "**/*.md"];

/// The whole suite on the runner's own engine (what CI runs on a fresh machine).
fn test_job(label: &str) -> Job {
    Job {
        container: None,
        name: "Formatting, clippy and the test suite (real engine and registry under target/)"
            .into(),
        runs_on: label.into(),
        needs: vec![],
        condition: None,
        permissions: Permissions::read_contents(),
        timeout_minutes: 45,
        strategy: None,
        env: Ordered::new(),
        // What CI runs on a fresh machine: fmt, clippy, the suite, and no
        // process left behind.
        steps: vec![checkout(), Step::run("CI", "bash .ci/run")],
    }
}

fn check_workflow() -> Workflow {
    let label = settings::CHECK_RUNNER_LABEL;
    let test = test_job(label);
    Workflow {
        name: "check".into(),
        on: Triggers {
            pull_request: Some(Branches {
                branches: vec!["main".into()],
                ..Branches::default()
            }),
            ..Triggers::default()
        },
        permissions: Permissions::none(),
        concurrency: Some(Concurrency {
            group: "check-${{ github.ref }}".into(),
            cancel_in_progress: true,
        }),
        env: root_env(),
        jobs: Ordered::new()
            .with("xtask", xtask_job(label))
            .with("lint", lint_job(label))
            .with("test", test),
    }
}

/// `release.yml` (a pushed tag `<stagex-release>-<n>`): every image through
/// the gates, each base image published under the tag (`publish` refuses a
/// tag that would move), then the release notes, compared with the previous
/// release tag (the whole history is fetched for `git describe`).
fn release_workflow(split: &Split, site: &Site) -> Workflow {
    let tlog = if settings::SIGN_WITH_TRANSPARENCY_LOG {
        ""
    } else {
        " --no-tlog"
    };
    let mut steps = vec![Step::uses(
        "Check out with the tags (no credentials kept)",
        CHECKOUT,
        Ordered::new()
            .with("persist-credentials", "false".to_string())
            .with("fetch-depth", "0".to_string()),
    )];
    steps.extend(use_xtask());
    steps.push(Step::run(
        "The tag names this checkout's StageX release",
        "xtask release-notes --tag \"$RELEASE\" --check-tag",
    ));
    steps.push(Step::run(
        "Every image through the gates",
        format!("xtask all --registry \"$STAGEX_MIRROR\" --json {REPORTS}/all.json"),
    ));
    let secrets = |step: Step| {
        step.env(
            "XTASK_REGISTRY_USERNAME",
            "${{ secrets.REGISTRY_USERNAME }}",
        )
        .env(
            "XTASK_REGISTRY_PASSWORD",
            "${{ secrets.REGISTRY_PASSWORD }}",
        )
        .env("COSIGN_KEY", "${{ secrets.COSIGN_KEY }}")
        .env("COSIGN_PASSWORD", "${{ secrets.COSIGN_PASSWORD }}")
    };
    for image in &split.bases {
        steps.push(secrets(Step::run(
            &format!("Publish {image} under the release tag"),
            format!("xtask publish {image} --to \"$REGISTRY_PREFIX/{image}:$RELEASE\"{tlog} --json {REPORTS}/publish-{image}.json"),
        )));
    }
    steps.push(Step::run(
        "Release notes",
        format!("xtask release-notes --tag \"$RELEASE\"{tlog} --output release-notes.md --json {REPORTS}/release-notes.json"),
    ));
    steps.push(
        Step::uses(
            "Keep the release notes",
            UPLOAD_ARTIFACT,
            Ordered::new()
                .with("name", "release-notes".to_string())
                .with("path", "release-notes.md".to_string()),
        )
        .when("always()"),
    );
    steps.push(upload_reports());
    let mut release = Job {
        container: None,
        name: "Publish the release ${{ github.ref_name }}".into(),
        runs_on: settings::RUNNER_LABEL.into(),
        needs: vec!["xtask".into(), "lint".into()],
        condition: None,
        permissions: Permissions::read_contents(),
        timeout_minutes: 240,
        strategy: None,
        env: Ordered::new(),
        steps,
    };
    release
        .env
        .push("RELEASE", "${{ github.ref_name }}".to_string());
    release
        .env
        .push("REGISTRY_PREFIX", site.publish_prefix.clone());
    release
        .env
        .push("STAGEX_MIRROR", "${{ vars.STAGEX_MIRROR }}".to_string());
    Workflow {
        name: "release".into(),
        on: Triggers {
            push: Some(Branches {
                tags: vec!["[0-9]+.[0-9]+.[0-9]+-[0-9]+".into()],
                ..Branches::default()
            }),
            ..Triggers::default()
        },
        permissions: Permissions::none(),
        concurrency: Some(Concurrency {
            group: "release-${{ github.ref }}".into(),
            cancel_in_progress: false,
        }),
        env: root_env(),
        jobs: Ordered::new()
            .with("xtask", xtask_job(settings::RUNNER_LABEL))
            .with("lint", lint_job(settings::RUNNER_LABEL))
            .with("release", release),
    }
}

/// Both workflows, from the catalog and this repository's settings.
pub fn plan(catalog: &Catalog) -> Result<Vec<Planned>> {
    plan_with(catalog, &Site::ours())
}

/// The three workflows, from the catalog and `site`.
pub fn plan_with(catalog: &Catalog, site: &Site) -> Result<Vec<Planned>> {
    let split = split(catalog)?;
    let mut planned = vec![
        Planned {
            file: "build.yml",
            workflow: build_workflow(&split, site),
        },
        Planned {
            file: "check.yml",
            workflow: check_workflow(),
        },
        Planned {
            file: "release.yml",
            workflow: release_workflow(&split, site),
        },
    ];
    // Every job runs in the job image, by digest, once it is published.
    if let Some(image) = &site.job_image {
        for planned in &mut planned {
            for (_, job) in planned.workflow.jobs.0.iter_mut() {
                job.container = Some(image.clone());
            }
        }
    }
    Ok(planned)
}

/// The job graph as text, for people (docs/workflows-and-k8s.md shows it), and the images
/// left out.
pub fn graph(planned: &[Planned], split: &Split) -> String {
    let mut text = String::new();
    for (image, why) in &split.left_out {
        text.push_str(&format!("left out until it can build: {image}: {why}\n"));
    }
    for planned in planned {
        text.push_str(&format!(".forgejo/workflows/{}\n", planned.file));
        for (name, job) in planned.workflow.jobs.iter() {
            let legs = job
                .strategy
                .as_ref()
                .map(|s| {
                    let names: Vec<String> = s
                        .matrix
                        .include
                        .iter()
                        .map(|leg| {
                            let image = leg.get("image").cloned().unwrap_or_default();
                            match leg.get("builds-on") {
                                Some(on) => format!("{image} (on {on})"),
                                None => image,
                            }
                        })
                        .collect();
                    format!(" [{}]", names.join(", "))
                })
                .unwrap_or_default();
            let after = if job.needs.is_empty() {
                String::new()
            } else {
                format!("  ← {}", job.needs.join(", "))
            };
            text.push_str(&format!("  {name}{legs}{after}\n"));
        }
    }
    text
}
