//! `cargo xtask workflows --run-local`: the generated workflows run under
//! act (nektos/act, the engine forgejo-runner forks) on this machine, in host
//! mode. Nothing leaves loopback: every action comes from a pinned local copy
//! (act would fetch an unmapped one, so it is refused first), the artifact
//! server listens on 127.0.0.1 under `target/act/`, act's cache server is off.
//!
//! act differs from Forgejo where the plan says so: it rejects `uses:` by
//! full URL (mapped to `actions/<name>@<sha>` for the run), it copies the
//! checkout itself, and the `xtask` job is handed the binary this command
//! runs as instead of compiling it again in release mode.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_yaml::{Mapping, Value};

/// The events a run can be started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Event {
    Push,
    #[value(name = "pull_request", alias = "pull-request")]
    PullRequest,
    Schedule,
    #[value(name = "workflow_dispatch", alias = "workflow-dispatch")]
    WorkflowDispatch,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Push => "push",
            Event::PullRequest => "pull_request",
            Event::Schedule => "schedule",
            Event::WorkflowDispatch => "workflow_dispatch",
        }
    }

    /// The workflow file the event starts.
    pub fn workflow(self) -> &'static str {
        match self {
            Event::PullRequest => "check.yml",
            _ => "build.yml",
        }
    }

    /// The event payload act hands the run (GITHUB_REF and friends).
    pub fn payload(self) -> serde_json::Value {
        match self {
            Event::PullRequest => serde_json::json!({
                "pull_request": {"number": 1, "head": {"ref": "topic"}, "base": {"ref": "main"}}
            }),
            Event::Schedule => serde_json::json!({"schedule": "17 4 * * 1"}),
            _ => serde_json::json!({"ref": "refs/heads/main"}),
        }
    }
}

/// Where Forgejo's actions live, and the prefix act takes instead.
const FORGEJO_ACTIONS: &str = "https://code.forgejo.org/actions/";

/// What the xtask job runs to build the binary (replaced for local runs).
const RELEASE_BUILD: &str = "cargo build --locked --release --package xtask";

/// One run, planned: the rewritten workflow and what act is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub workflow: String,
    /// The workflow as act gets it.
    pub text: String,
    /// Job id → its name, for the jobs that run.
    pub jobs: Vec<(String, String)>,
    /// `actions/<name>@<sha>` → the local copy.
    pub actions: Vec<(String, PathBuf)>,
    /// Runner labels the jobs ask for (each run on this host).
    pub labels: BTreeSet<String>,
    /// Whether the xtask job is handed the binary instead of building it.
    pub handed_binary: bool,
    /// The secrets the jobs read (`${{ secrets.NAME }}`).
    pub secrets: BTreeSet<String>,
    /// Whether a job publishes (its publish prefix replaced by the run's).
    pub publishes: bool,
}

/// Where a local run publishes instead of the site's registry.
#[derive(Debug, Clone, Copy)]
pub struct PublishTo<'a> {
    /// The site's prefix, as the workflows name it.
    pub site: &'a str,
    /// The run's, if given.
    pub run: Option<&'a str>,
}

/// Plan a run of `event` (only `only` and what it needs, when given), with
/// the actions in `actions_dir` (folders named `actions-<name>@<sha>`).
pub fn plan(
    generated: &[(String, String)],
    event: Event,
    only: Option<&str>,
    actions_dir: &Path,
    available: &BTreeSet<String>,
    publish_to: PublishTo,
) -> Result<Plan> {
    let file = format!("{}/{}", super::WORKFLOWS_DIR, event.workflow());
    let (_, text) = generated
        .iter()
        .find(|(path, _)| *path == file)
        .with_context(|| format!("{file} is not generated"))?;
    let mut workflow: Value = serde_yaml::from_str(text).with_context(|| file.clone())?;
    let jobs = workflow
        .get_mut("jobs")
        .and_then(Value::as_mapping_mut)
        .with_context(|| format!("{file} has no jobs"))?;
    if let Some(only) = only {
        let keep = with_needs(jobs, only)?;
        jobs.retain(|id, _| id.as_str().is_some_and(|id| keep.contains(id)));
    }
    let mut actions = Vec::new();
    let mut labels = BTreeSet::new();
    let mut handed_binary = false;
    let mut publishes = false;
    let mut names = Vec::new();
    for (id, job) in jobs.iter_mut() {
        let id = id.as_str().unwrap_or_default().to_string();
        let name = job
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&id)
            .to_string();
        if let Some(label) = job.get("runs-on").and_then(Value::as_str) {
            labels.insert(label.to_string());
        }
        let steps = job
            .get_mut("steps")
            .and_then(Value::as_sequence_mut)
            .with_context(|| format!("{file}: job {id} has no steps"))?;
        // The binary reaches every job by a copy, not through the artifact
        // server: zipping 36 MB of debug binary in and out of each job cost
        // more than the jobs' own work. Images and reports still travel as
        // artifacts.
        steps.retain(|step| !moves_xtask(step, "upload-artifact"));
        for step in steps.iter_mut() {
            if moves_xtask(step, "download-artifact") {
                *step = serde_yaml::from_str(HANDED_STEP)?;
                handed_binary = true;
            }
        }
        for step in steps.iter_mut().filter_map(Value::as_mapping_mut) {
            let env = step.get_mut("env").and_then(Value::as_mapping_mut);
            for value in env.into_iter().flat_map(|env| env.values_mut()) {
                if value.as_str() == Some(publish_to.site) {
                    let Some(run) = publish_to.run else {
                        bail!(
                            "{file}: job {id} publishes to {}; a local run never does: pass --publish-to PREFIX (a registry of this machine's)",
                            publish_to.site
                        );
                    };
                    *value = run.into();
                    publishes = true;
                }
            }
            if let Some(uses) = step.get("uses").and_then(Value::as_str).map(str::to_string) {
                let short = map_action(&uses, actions_dir, available)
                    .with_context(|| format!("{file}: job {id}"))?;
                if !actions.iter().any(|(known, _)| *known == short.0) {
                    actions.push(short.clone());
                }
                step.insert("uses".into(), short.0.into());
            }
            let builds = step
                .get("run")
                .and_then(Value::as_str)
                .is_some_and(|run| run.contains(RELEASE_BUILD));
            if builds {
                step.insert(
                    "run".into(),
                    "mkdir -p .xtask-bin && cp \"$XTASK_PREBUILT\" .xtask-bin/xtask".into(),
                );
                handed_binary = true;
            }
        }
        names.push((id, name));
    }
    let text = serde_yaml::to_string(&workflow)?;
    let secrets = secrets_read(&text);
    Ok(Plan {
        workflow: event.workflow().to_string(),
        text,
        jobs: names,
        actions,
        labels,
        handed_binary,
        secrets,
        publishes,
    })
}

/// The `NAME`s of every `${{ secrets.NAME }}` in `text`.
fn secrets_read(text: &str) -> BTreeSet<String> {
    text.split("secrets.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Forgejo gives a fork's pull request no secrets; a local run gives none
/// to `pull_request` either.
pub fn gets_secrets(event: Event) -> bool {
    event != Event::PullRequest
}

/// The dotenv file act reads secrets from (`--secret-file`): host-mode jobs
/// inherit act's environment, so secrets never travel in it.
pub fn secret_file(secrets: &[(String, String)]) -> String {
    let mut text = String::new();
    for (name, value) in secrets {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        text.push_str(&format!("{name}=\"{escaped}\"\n"));
    }
    text
}

/// The step a local run puts where a job downloads the xtask binary.
const HANDED_STEP: &str = "name: The xtask binary this command runs as\nrun: mkdir -p .xtask-bin && cp \"$XTASK_PREBUILT\" .xtask-bin/xtask\n";

/// Whether `step` uploads or downloads (`action`) the `xtask` artifact.
fn moves_xtask(step: &Value, action: &str) -> bool {
    let uses = step.get("uses").and_then(Value::as_str).unwrap_or_default();
    let name = step
        .get("with")
        .and_then(|with| with.get("name"))
        .and_then(Value::as_str);
    uses.contains(&format!("/{action}@")) && name == Some("xtask")
}

/// `job` and every job it needs, transitively.
fn with_needs(jobs: &Mapping, job: &str) -> Result<BTreeSet<String>> {
    let mut keep = BTreeSet::new();
    let mut todo = vec![job.to_string()];
    while let Some(next) = todo.pop() {
        let Some(found) = jobs.get(next.as_str()) else {
            let known: Vec<&str> = jobs.keys().filter_map(Value::as_str).collect();
            bail!("no job `{next}`: the jobs are {}", known.join(", "));
        };
        if keep.insert(next.clone()) {
            for need in found
                .get("needs")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                todo.push(need.to_string());
            }
        }
    }
    Ok(keep)
}

/// `https://code.forgejo.org/actions/<name>@<sha>` → `actions/<name>@<sha>`
/// and its local copy; anything else is refused (act would reach out).
fn map_action(
    uses: &str,
    actions_dir: &Path,
    available: &BTreeSet<String>,
) -> Result<(String, PathBuf)> {
    let Some(rest) = uses.strip_prefix(FORGEJO_ACTIONS) else {
        bail!("`uses: {uses}` is not a Forgejo action pinned by URL: it has no local copy, and act would fetch it");
    };
    let Some((name, sha)) = rest.split_once('@') else {
        bail!("`uses: {uses}` is not pinned to a commit");
    };
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`uses: {uses}` is not pinned to a full commit");
    }
    let folder = format!("actions-{name}@{sha}");
    if !available.contains(&folder) {
        bail!(
            "`uses: {uses}` has no local copy: expected {}; act would fetch it from the network, so the run does not start",
            actions_dir.join(&folder).display()
        );
    }
    Ok((format!("actions/{name}@{sha}"), actions_dir.join(folder)))
}

/// The folders of `dir` (the local copies of actions).
pub fn available_actions(dir: &Path) -> Result<BTreeSet<String>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading the actions folder {}: pass --actions DIR (copies of the pinned actions, one folder each, named actions-<name>@<sha>)",
            dir.display()
        )
    })?;
    Ok(entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect())
}

/// What act is run with, for `plan` with its files under `work`.
pub fn act_args(
    plan: &Plan,
    event: Event,
    work: &Path,
    artifact_port: u16,
    vars: &[(String, String)],
) -> Vec<String> {
    let mut args = vec![
        event.name().to_string(),
        // One JSON object a line (job, matrix, step results), with the
        // skipped jobs' lines that only `-v` prints.
        "--json".into(),
        "-v".into(),
        "-W".into(),
        work.join("workflows").display().to_string(),
        "-e".into(),
        work.join("event.json").display().to_string(),
        "--action-offline-mode".into(),
        "--no-cache-server".into(),
        "--artifact-server-addr".into(),
        "127.0.0.1".into(),
        "--artifact-server-port".into(),
        artifact_port.to_string(),
        "--artifact-server-path".into(),
        work.join("artifacts").display().to_string(),
        "--action-cache-path".into(),
        work.join("cache").display().to_string(),
    ];
    if event == Event::Schedule {
        // Forgejo gives a scheduled run the bare branch name as its ref
        // (act would give `refs/heads/<branch>`).
        args.extend(["--env".into(), "GITHUB_REF=main".into()]);
    }
    for label in &plan.labels {
        args.push("-P".into());
        args.push(format!("{label}=-self-hosted"));
    }
    for (action, folder) in &plan.actions {
        args.push("--local-repository".into());
        args.push(format!("{action}={}", folder.display()));
    }
    for (name, value) in vars {
        args.push("--var".into());
        args.push(format!("{name}={value}"));
    }
    if gets_secrets(event) && !plan.secrets.is_empty() {
        args.push("--secret-file".into());
        args.push(work.join("secrets.env").display().to_string());
    }
    args
}

/// One line of act's `--json` log, as far as the table needs it.
#[derive(Debug, serde::Deserialize)]
struct Line {
    #[serde(default)]
    job: String,
    #[serde(rename = "jobID", default)]
    job_id: String,
    #[serde(default)]
    matrix: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    step: String,
    #[serde(rename = "stepResult")]
    step_result: Option<String>,
    #[serde(rename = "jobResult")]
    job_result: Option<String>,
}

/// One leg (a job, or one matrix entry of it) as act ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub id: String,
    /// The matrix's `image`, for a leg of a matrix job.
    pub image: Option<String>,
    pub failed_steps: Vec<String>,
    pub skipped: bool,
    pub ended: bool,
    /// When its first and last lines came, since the run started.
    pub first: std::time::Duration,
    pub last: std::time::Duration,
}

impl Leg {
    /// Passed, failed (which steps) or skipped (its `if:` was false).
    /// act reports one result for all legs of a matrix job, so a leg is
    /// judged by its own steps.
    pub fn outcome(&self) -> crate::report::Outcome {
        use crate::report::Outcome;
        if self.skipped {
            Outcome::Skipped("its `if:` was false".into())
        } else if !self.failed_steps.is_empty() {
            Outcome::Failed(format!("failed: {}", self.failed_steps.join(", ")))
        } else if self.ended {
            Outcome::Passed
        } else {
            Outcome::Failed("did not finish".into())
        }
    }
}

/// The legs of a run, read line by line from act's log.
#[derive(Debug, Default)]
pub struct Legs {
    pub legs: Vec<Leg>,
}

impl Legs {
    /// Take one line of act's log, come `at` into the run; returns what a
    /// person should see of it.
    pub fn read(&mut self, line: &str, at: std::time::Duration) -> Option<String> {
        let Ok(line) = serde_json::from_str::<Line>(line) else {
            // act's own messages before and after the jobs.
            return Some(line.trim_end().to_string());
        };
        if line.job_id.is_empty() {
            return (line.level == "info").then(|| line.msg.trim_end().to_string());
        }
        let image = line
            .matrix
            .get("image")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let index = match self
            .legs
            .iter()
            .position(|leg| leg.id == line.job_id && leg.image == image)
        {
            Some(index) => index,
            None => {
                self.legs.push(Leg {
                    id: line.job_id.clone(),
                    image,
                    failed_steps: Vec::new(),
                    skipped: false,
                    ended: false,
                    first: at,
                    last: at,
                });
                self.legs.len() - 1
            }
        };
        let leg = &mut self.legs[index];
        leg.last = at;
        if line.step_result.as_deref() == Some("failure") && !leg.failed_steps.contains(&line.step)
        {
            leg.failed_steps.push(line.step.clone());
        }
        match line.job_result.as_deref() {
            Some("skipped") => leg.skipped = true,
            Some(_) => leg.ended = true,
            None => {}
        }
        // A step's output can come as several lines in one message: each
        // line gets the job's name.
        (line.level == "info").then(|| {
            let job = line.job.trim();
            line.msg
                .trim_end()
                .lines()
                .map(|text| format!("[{job}] {text}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated() -> Vec<(String, String)> {
        let catalog = crate::model::catalog::Catalog::load(&crate::files::project_root()).unwrap();
        super::super::files(&super::super::plan::plan(&catalog).unwrap()).unwrap()
    }

    fn publish_to(run: Option<&str>) -> PublishTo<'_> {
        PublishTo {
            site: crate::model::settings::PUBLISH_REGISTRY_PREFIX,
            run,
        }
    }

    fn all_actions() -> BTreeSet<String> {
        [
            "actions-checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
            "actions-upload-artifact@a8a3f3ad30e3422c9c7b888a15615d19a852ae32",
            "actions-download-artifact@9bc31d5ccc31df68ecc42ccf4149144866c47d8a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn actions_are_mapped_to_local_copies_and_the_binary_is_handed_over() {
        let dir = Path::new("/actions");
        let plan = plan(
            &generated(),
            Event::PullRequest,
            Some("lint"),
            dir,
            &all_actions(),
            publish_to(None),
        )
        .unwrap();
        assert_eq!(plan.workflow, "check.yml");
        let ids: Vec<&str> = plan.jobs.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["xtask", "lint"]);
        assert!(plan.handed_binary);
        assert!(!plan.text.contains("code.forgejo.org"), "{}", plan.text);
        assert!(!plan.text.contains(RELEASE_BUILD), "{}", plan.text);
        // The binary is copied into each job, never zipped through artifacts.
        assert!(!plan.text.contains("name: xtask\n"), "{}", plan.text);
        assert_eq!(
            plan.text.matches("cp \"$XTASK_PREBUILT\"").count(),
            2,
            "{}",
            plan.text
        );
        // Only checkout is left: the binary no longer travels as an artifact.
        assert_eq!(plan.actions.len(), 1);
        let args = act_args(&plan, Event::PullRequest, Path::new("/work"), 4567, &[]);
        let joined = args.join(" ");
        assert!(
            joined.contains("--artifact-server-addr 127.0.0.1"),
            "{joined}"
        );
        assert!(joined.contains("--no-cache-server"), "{joined}");
        assert!(joined.contains("-P stagex-check=-self-hosted"), "{joined}");
        assert!(joined.contains(
            "--local-repository actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683=/actions/actions-checkout@11bd71901bbe5b1630ceea73d27597364c9af683"
        ));
    }

    #[test]
    fn an_action_without_a_local_copy_stops_the_run_before_act() {
        let mut some = all_actions();
        some.remove("actions-upload-artifact@a8a3f3ad30e3422c9c7b888a15615d19a852ae32");
        let error = plan(
            &generated(),
            Event::Push,
            None,
            Path::new("/actions"),
            &some,
            publish_to(Some("127.0.0.1:1/x")),
        )
        .unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("upload-artifact") && text.contains("no local copy"),
            "{text}"
        );
        let error = plan(
            &generated(),
            Event::Push,
            Some("nosuch"),
            Path::new("/a"),
            &all_actions(),
            publish_to(None),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("no job `nosuch`"));
    }

    /// Each matrix leg is judged by its own steps (act gives every leg of
    /// a matrix job the job's one result); skipped jobs are told apart.
    #[test]
    fn legs_are_read_from_acts_json_lines() {
        let lines = [
            r#"{"job":"build/Build and scan one-1","jobID":"build-scan","level":"info","matrix":{"image":"one"},"msg":"⭐ Run Main xtask build","step":"Build","stepID":["3"]}"#,
            r#"{"job":"build/Build and scan two-2","jobID":"build-scan","level":"info","matrix":{"image":"two"},"msg":"  ❌  Failure - Main Build","step":"Build","stepResult":"failure"}"#,
            r#"{"job":"build/Build and scan one-1","jobID":"build-scan","jobResult":"failure","level":"info","matrix":{"image":"one"},"msg":"🏁  Job failed"}"#,
            r#"{"job":"build/Build and scan two-2","jobID":"build-scan","jobResult":"failure","level":"info","matrix":{"image":"two"},"msg":"🏁  Job failed"}"#,
            r#"{"job":"build/Publish one    ","jobID":"publish","jobResult":"skipped","level":"debug","matrix":{"image":"one"},"msg":"Skipping job 'Publish'"}"#,
            r#"{"job":"build/Summary","jobID":"summary","level":"info","matrix":{},"msg":"step  image\nbuild base\n","raw_output":true}"#,
            "Error: Job 'Build and scan ${{ matrix.image }}' failed",
        ];
        let mut legs = Legs::default();
        let shown: Vec<Option<String>> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| legs.read(line, std::time::Duration::from_secs(i as u64)))
            .collect();
        assert_eq!(
            legs.legs[0].last - legs.legs[0].first,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            shown[0].as_deref(),
            Some("[build/Build and scan one-1] ⭐ Run Main xtask build")
        );
        assert_eq!(shown[4], None, "debug lines are not shown");
        assert_eq!(
            shown[5].as_deref(),
            Some("[build/Summary] step  image\n[build/Summary] build base")
        );
        assert_eq!(shown[6].as_deref(), Some(lines[6]));
        let outcomes: Vec<(&str, Option<&str>, String)> = legs
            .legs
            .iter()
            .map(|leg| {
                (
                    leg.id.as_str(),
                    leg.image.as_deref(),
                    format!("{:?}", leg.outcome()),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                ("build-scan", Some("one"), "Passed".to_string()),
                (
                    "build-scan",
                    Some("two"),
                    "Failed(\"failed: Build\")".to_string()
                ),
                (
                    "publish",
                    Some("one"),
                    "Skipped(\"its `if:` was false\")".to_string()
                ),
                ("summary", None, "Failed(\"did not finish\")".to_string()),
            ]
        );
    }

    /// Secrets reach act in a file it parses as dotenv, escaped so a PEM
    /// key's lines and quotes arrive whole; pull requests get none.
    #[test]
    fn secrets_go_in_a_file_and_never_to_pull_requests() {
        let text = secret_file(&[("COSIGN_KEY".into(), "-----BEGIN \"X\"-----\nab\\c\n".into())]);
        assert_eq!(
            text,
            "COSIGN_KEY=\"-----BEGIN \\\"X\\\"-----\\nab\\\\c\\n\"\n"
        );
        let planned = plan(
            &generated(),
            Event::Push,
            None,
            Path::new("/a"),
            &all_actions(),
            publish_to(Some("127.0.0.1:5000/run")),
        )
        .unwrap();
        assert!(planned.publishes);
        assert!(
            planned.secrets.contains("COSIGN_KEY") && planned.secrets.contains("MIRROR_PASSWORD"),
            "{:?}",
            planned.secrets
        );
        assert!(
            planned.text.contains("127.0.0.1:5000/run")
                && !planned
                    .text
                    .contains(crate::model::settings::PUBLISH_REGISTRY_PREFIX)
        );
        let args = act_args(&planned, Event::Push, Path::new("/work"), 1, &[]).join(" ");
        assert!(args.contains("--secret-file /work/secrets.env"), "{args}");
        let args = act_args(&planned, Event::PullRequest, Path::new("/work"), 1, &[]).join(" ");
        assert!(!args.contains("secret"), "{args}");
        // Without a prefix of its own, a run that publishes does not start.
        let error = plan(
            &generated(),
            Event::Schedule,
            None,
            Path::new("/a"),
            &all_actions(),
            publish_to(None),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("pass --publish-to PREFIX"),
            "{error:#}"
        );
    }
}
