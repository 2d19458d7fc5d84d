//! The typed model of a Forgejo Actions workflow: only what we generate,
//! serialized by serde (`serde_yaml`, the maintained fork) in declaration
//! order, never assembled from strings. Maps whose order matters (jobs, env,
//! `with`) are [`Ordered`] lists.
//!
//! Forgejo features avoided, and why:
//! - `$GITHUB_STEP_SUMMARY`: Forgejo may not show it; the summary is a job
//!   artifact and the job's log instead.
//! - artifact actions v4: Forgejo's server speaks the v3 protocol (v4 only
//!   through Forgejo's own patched forks); we use v3.
//! - `pull_request_target`, reusable workflows (`workflow_call`), job
//!   `container:` images and caches: not needed, and each widens what a
//!   pull request or a poisoned cache could reach.
//! - Short `uses: actions/x@…`: Forgejo prefixes the instance's
//!   `DEFAULT_ACTIONS_URL`, which each instance chooses; full URLs name the
//!   code we run.
//!
//! - `environment:` (deployment environments holding their own secrets):
//!   Forgejo has none; `publish` is the one job whose steps name the signing
//!   key and the registry's credentials.
//!
//! Kept although Forgejo ignores it: `permissions:` (Forgejo's token is
//! read-only for pull requests anyway); it documents each job's needs and
//! holds wherever the files run under GitHub-compatible rules.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// A map that keeps the order it was built in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Ordered<T> {
    pub fn new() -> Ordered<T> {
        Ordered(Vec::new())
    }

    pub fn with(mut self, key: impl Into<String>, value: T) -> Ordered<T> {
        self.0.push((key.into(), value));
        self
    }

    pub fn push(&mut self, key: impl Into<String>, value: T) {
        self.0.push((key.into(), value));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, T)> {
        self.0.iter()
    }
}

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// An action pinned to a full commit, with the version that commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// Full URL of the repository: never the instance's default action host.
    pub url: &'static str,
    pub commit: &'static str,
    pub version: &'static str,
}

impl Action {
    /// `url@commit`, what `uses:` says.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.url, self.commit)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    pub name: String,
    pub on: Triggers,
    /// Workflow-wide permissions: none; each job asks for what it needs.
    pub permissions: Permissions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub env: Ordered<String>,
    pub jobs: Ordered<Job>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Triggers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Branches>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<Branches>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<Cron>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_dispatch: Option<Empty>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Branches {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// Tag patterns (`push` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths_ignore: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cron {
    pub cron: String,
}

/// `{}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Empty {}

/// `permissions:` as scope → `read`/`write`; empty is `{}` (none at all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Permissions(pub Ordered<&'static str>);

impl Permissions {
    pub fn none() -> Permissions {
        Permissions(Ordered::new())
    }

    /// Read the repository's contents (checkout), nothing else.
    pub fn read_contents() -> Permissions {
        Permissions(Ordered::new().with("contents", "read"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Concurrency {
    pub group: String,
    #[serde(rename = "cancel-in-progress")]
    pub cancel_in_progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub name: String,
    #[serde(rename = "runs-on")]
    pub runs_on: String,
    /// The job image by digest, once it is published (`forgejo-job/PUBLISHED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    pub permissions: Permissions,
    #[serde(rename = "timeout-minutes")]
    pub timeout_minutes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub env: Ordered<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Strategy {
    #[serde(rename = "fail-fast")]
    pub fail_fast: bool,
    pub matrix: Matrix,
}

/// `matrix: include: [...]`: each leg's values, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub include: Vec<Ordered<String>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Step {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub with: Ordered<String>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub env: Ordered<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl Step {
    pub fn run(name: &str, command: impl Into<String>) -> Step {
        Step {
            name: name.to_string(),
            run: Some(command.into()),
            ..Step::default()
        }
    }

    pub fn uses(name: &str, action: Action, with: Ordered<String>) -> Step {
        Step {
            name: name.to_string(),
            uses: Some(action.reference()),
            with,
            ..Step::default()
        }
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Step {
        self.env.push(name, value.into());
        self
    }

    pub fn when(mut self, condition: &str) -> Step {
        self.condition = Some(condition.to_string());
        self
    }
}

/// The YAML of `workflow`: a header saying it is generated, then the
/// serialized model, each pinned action's line followed by its version.
pub fn render(workflow: &Workflow, actions: &[Action]) -> anyhow::Result<String> {
    let body = serde_yaml::to_string(workflow)?;
    let mut text = String::from(
        "# Generated by `cargo xtask workflows` from xtask/src/commands/workflows/; do not edit.\n# Change the model, run `cargo xtask workflows`, and commit both.\n",
    );
    for line in body.lines() {
        text.push_str(line);
        // A comment is the one thing serde cannot write: the version of a
        // pinned commit, after the exact reference we put there.
        if let Some(action) = actions.iter().find(|action| {
            line.trim_start()
                .trim_start_matches("- ")
                .strip_prefix("uses: ")
                == Some(&action.reference())
        }) {
            text.push_str(&format!(" # {}", action.version));
        }
        text.push('\n');
    }
    Ok(text)
}
