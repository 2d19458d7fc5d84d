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
    PullRequest,
    Schedule,
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
}

/// Plan a run of `event` (only `only` and what it needs, when given), with
/// the actions in `actions_dir` (folders named `actions-<name>@<sha>`).
pub fn plan(
    generated: &[(String, String)],
    event: Event,
    only: Option<&str>,
    actions_dir: &Path,
    available: &BTreeSet<String>,
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
        for step in steps.iter_mut().filter_map(Value::as_mapping_mut) {
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
    Ok(Plan {
        workflow: event.workflow().to_string(),
        text,
        jobs: names,
        actions,
        labels,
        handed_binary,
    })
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
    args
}

/// A job's end as act prints it: `[<workflow>/<job name>] 🏁  Job succeeded`.
pub fn job_result(line: &str) -> Option<(&str, bool)> {
    let rest = line.strip_prefix('[')?;
    let (who, after) = rest.split_once(']')?;
    let (_, job) = who.split_once('/')?;
    if after.contains("Job succeeded") {
        Some((job.trim(), true))
    } else if after.contains("Job failed") {
        Some((job.trim(), false))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated() -> Vec<(String, String)> {
        let catalog = crate::model::catalog::Catalog::load(&crate::files::project_root()).unwrap();
        super::super::files(&super::super::plan::plan(&catalog).unwrap()).unwrap()
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
        )
        .unwrap();
        assert_eq!(plan.workflow, "check.yml");
        let ids: Vec<&str> = plan.jobs.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["xtask", "lint"]);
        assert!(plan.handed_binary);
        assert!(!plan.text.contains("code.forgejo.org"), "{}", plan.text);
        assert!(!plan.text.contains(RELEASE_BUILD), "{}", plan.text);
        assert_eq!(plan.actions.len(), 3);
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
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("no job `nosuch`"));
    }

    #[test]
    fn job_ends_are_read_from_acts_lines() {
        assert_eq!(
            job_result("[check/Lint, and generated files up to date] 🏁  Job succeeded"),
            Some(("Lint, and generated files up to date", true))
        );
        assert_eq!(
            job_result("[build/Publish base] 🏁  Job failed"),
            Some(("Publish base", false))
        );
        assert_eq!(
            job_result("[check/lint]   ✅  Success - Main xtask lint"),
            None
        );
    }
}
