//! `cargo xtask doctor`: is this machine able to run the pipeline?

use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::args::JsonArg;
use crate::error::fail;
use crate::pipeline::Step;
use crate::tools::{process::Env, Check, Status, Tool};

/// Check Docker, the containerd image store, buildx and the supply-chain tools.
#[derive(Debug, Args)]
pub struct Doctor {
    /// Check the programs a CI job calls instead (node, git, bash, cargo, docker, buildx, cosign, syft, grype, mal), or only those a job running these xtask commands calls (`--for-job build,scan`): the first step of every job; exit 1 naming each one missing or too old.
    #[arg(
        long,
        value_name = "COMMAND,…",
        num_args = 0..=1,
        value_delimiter = ',',
        conflicts_with = "json"
    )]
    pub for_job: Option<Vec<String>>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// One tool's check, with what uses it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Diagnosis {
    #[serde(flatten)]
    pub check: Check,
    /// Steps and other uses that need it.
    pub needed_by: Vec<&'static str>,
    /// Whether `all` cannot run without it.
    pub required: bool,
    /// Whether `all` runs without it but skips a gate and reports the run incomplete.
    pub incomplete_without: bool,
}

/// Uses of tools outside the pipeline's steps.
fn other_uses(tool: Tool) -> &'static [&'static str] {
    match tool {
        Tool::Cosign => &["sign", "verify"],
        Tool::Skopeo => &["interop tests", "mirror benchmark"],
        Tool::Hadolint => &["tests"],
        Tool::Act => &["workflows --run-local", "tests"],
        _ => &[],
    }
}

impl Doctor {
    pub fn run(self, _root: &Path) -> Result<()> {
        if let Some(commands) = &self.for_job {
            let commands = (!commands.is_empty()).then_some(commands.as_slice());
            return for_job(commands, &Env::new());
        }
        let diagnoses = diagnose(&Env::new());
        self.json.write("doctor", &[], &diagnoses)?;
        crate::ui::say_more!("{}", render(&diagnoses));
        let blocking: Vec<&str> = diagnoses
            .iter()
            .filter(|d| d.required && d.check.status != Status::Ok)
            .map(|d| d.check.name)
            .collect();
        if blocking.is_empty() {
            crate::ui::say!("doctor: everything the pipeline needs is here");
            Ok(())
        } else {
            fail(format!(
                "doctor: missing or too old: {}",
                blocking.join(", ")
            ))
        }
    }
}

/// `doctor --for-job [COMMANDS]`: every program the job image promises (or
/// a job running `commands` calls), or exit 1 naming what is missing, what
/// needs it and where the image comes from.
pub fn for_job(commands: Option<&[String]>, env: &Env) -> Result<()> {
    let programs = crate::tools::job::called_by(commands);
    let checks = crate::tools::job::check(&programs, env);
    crate::ui::say_more!("{}", render_job(&checks));
    let failed: Vec<String> = checks
        .iter()
        .filter(|check| check.status != Status::Ok)
        .map(|check| {
            let minimum = check
                .program
                .minimum
                .map(|(a, b)| format!(", {a}.{b} or newer needed"))
                .unwrap_or_default();
            let what = match check.status {
                Status::TooOld => "too old",
                _ => "missing",
            };
            format!(
                "{} {what} ({}{minimum}; needed by {})",
                check.program.name, check.found, check.program.needed_by
            )
        })
        .collect();
    if failed.is_empty() {
        crate::ui::say!(
            "doctor --for-job: all {} programs the job steps call are here",
            checks.len()
        );
        return Ok(());
    }
    fail(format!(
        "doctor --for-job: this job's image lacks what its steps call: {}. Jobs run in forgejo-job (the digest in forgejo-job/PUBLISHED); a job in another image, or in an older forgejo-job, needs its container: set to that one (docs/ci-job-image.md)",
        failed.join("; ")
    ))
}

fn render_job(checks: &[crate::tools::job::JobCheck]) -> String {
    let mut out = String::new();
    for check in checks {
        let mark = match check.status {
            Status::Ok => "ok     ",
            Status::Missing => "MISSING",
            Status::TooOld => "TOO OLD",
        };
        out.push_str(&format!(
            "{mark}  {:<14} {:<28} needed by {}\n",
            check.program.name, check.found, check.program.needed_by
        ));
    }
    out
}

pub fn diagnose(env: &Env) -> Vec<Diagnosis> {
    Tool::ALL
        .iter()
        .map(|&tool| {
            let required: Vec<&'static str> = Step::ALL
                .iter()
                .filter(|step| step.tools().contains(&tool))
                .map(|step| step.name())
                .collect();
            let optional = Step::ALL
                .iter()
                .filter(|step| step.optional_tools().contains(&tool));
            let incomplete = optional.clone().any(|step| step.skipped_without_its_tool());
            Diagnosis {
                check: tool.check(env),
                required: !required.is_empty(),
                incomplete_without: incomplete,
                needed_by: {
                    // Each user once, in pipeline order (a step that uses
                    // the tool and a command named like it are one use).
                    let mut users: Vec<&'static str> = Vec::new();
                    for user in required
                        .iter()
                        .copied()
                        .chain(optional.map(|step| step.name()))
                        .chain(other_uses(tool).iter().copied())
                    {
                        if !users.contains(&user) {
                            users.push(user);
                        }
                    }
                    users
                },
            }
        })
        .collect()
}

pub fn render(diagnoses: &[Diagnosis]) -> String {
    let mut out = String::new();
    for diagnosis in diagnoses {
        let check = &diagnosis.check;
        let mark = match check.status {
            Status::Ok => "ok     ",
            Status::Missing => "MISSING",
            Status::TooOld => "TOO OLD",
        };
        out.push_str(&format!(
            "{mark}  {:<24} {:<28} needed by {}{}\n",
            check.name,
            check.found,
            diagnosis.needed_by.join(", "),
            if diagnosis.required {
                ""
            } else if diagnosis.incomplete_without {
                " (without it `all` skips that gate and is incomplete)"
            } else {
                " (optional)"
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

    /// A PATH of stand-ins that print what the real programs print
    /// (`v24.9.0`, `git version 2.47.3`, …), `skip` left out.
    fn standins(skip: &str, node: &str) -> (tempfile::TempDir, Env) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let answers = [
            ("node", node.to_string()),
            ("git", "git version 2.47.3".into()),
            ("bash", "GNU bash, version 5.2.37(1)-release".into()),
            ("sh", String::new()),
            ("cargo", "cargo 1.94.0".into()),
            ("rustc", "rustc 1.94.0".into()),
            ("cc", "clang version 21.1.8".into()),
            ("cosign", "GitVersion:    v2.6.1".into()),
            ("syft", "Version: 1.33.0".into()),
            ("grype", "Version: 0.100.0".into()),
            ("mal", "malcontent v1.23.0".into()),
        ];
        for (name, answer) in answers {
            if name == skip {
                continue;
            }
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\necho '{answer}'\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        if skip != "docker" {
            // `docker --version` and `docker buildx version`, as the real CLI answers them.
            let path = dir.path().join("docker");
            std::fs::write(
                &path,
                "#!/bin/sh\nif [ \"$1\" = buildx ]; then echo 'github.com/docker/buildx v0.29.1 stagex'; else echo 'Docker version 28.5.2, build 28.5.2'; fi\n",
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let env = Env::from([("PATH".to_string(), dir.path().display().to_string())]);
        (dir, env)
    }

    #[test]
    fn a_job_image_with_everything_passes() {
        let (_dir, env) = standins("", "v24.9.0");
        for_job(None, &env).unwrap();
    }

    /// The job fails at once, exit 1, naming the one program its image lacks.
    #[test]
    fn a_job_image_without_a_tool_fails_naming_it() {
        for missing in ["mal", "grype", "cargo", "node"] {
            let (_dir, env) = standins(missing, "v24.9.0");
            let error = for_job(None, &env).unwrap_err();
            assert!(crate::error::is_failure(&error), "{error}");
            let text = error.to_string();
            assert!(text.contains(&format!(": {missing} missing (")), "{text}");
            assert_eq!(text.matches(" missing (").count(), 1, "{text}");
        }
        let (_dir, env) = standins("docker", "v24.9.0");
        let text = for_job(None, &env).unwrap_err().to_string();
        assert!(
            text.contains("docker missing") && text.contains("docker buildx missing"),
            "{text}"
        );
    }

    /// A job checks what its own steps call: a lint job in an image without
    /// grype passes, a scanning job there fails naming grype; neither asks
    /// for the toolchain only the xtask job and the tests use.
    #[test]
    fn a_job_checks_only_what_its_commands_call() {
        let commands = |list: &[&str]| list.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let (_dir, env) = standins("grype", "v24.9.0");
        for_job(Some(&commands(&["lint", "digests"])), &env).unwrap();
        for_job(Some(&commands(&["publish"])), &env).unwrap();
        let text = for_job(Some(&commands(&["build", "scan"])), &env)
            .unwrap_err()
            .to_string();
        assert!(text.contains(": grype missing ("), "{text}");
        let (_dir, env) = standins("cargo", "v24.9.0");
        for_job(
            Some(&commands(&["build", "sbom", "scan", "malcontent"])),
            &env,
        )
        .unwrap();
        assert!(for_job(None, &env).is_err());
        let (_dir, env) = standins("cosign", "v24.9.0");
        let text = for_job(Some(&commands(&["publish"])), &env)
            .unwrap_err()
            .to_string();
        assert!(text.contains(": cosign missing ("), "{text}");
    }

    #[test]
    fn an_old_node_is_too_old() {
        let (_dir, env) = standins("", "v18.20.4");
        let text = for_job(None, &env).unwrap_err().to_string();
        assert!(
            text.contains("node too old (18.20.4, 20.0 or newer needed"),
            "{text}"
        );
    }

    #[test]
    fn without_an_engine_the_build_steps_are_blocked_with_the_fix() {
        let env = Env::from([(
            "DOCKER_HOST".to_string(),
            "unix:///nonexistent/docker.sock".to_string(),
        )]);
        let diagnoses = diagnose(&env);
        let engine = diagnoses
            .iter()
            .find(|d| d.check.tool == Tool::DockerEngine)
            .unwrap();
        assert!(engine.required);
        assert_eq!(engine.needed_by, ["build", "verify-reproducible"]);
        for diagnosis in &diagnoses {
            let mut unique = diagnosis.needed_by.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                diagnosis.needed_by.len(),
                "{:?}",
                diagnosis.needed_by
            );
        }
        let text = render(&diagnoses);
        assert!(text.contains("MISSING  docker engine"), "{text}");
        assert!(text.contains("fix: install Docker Engine 25"), "{text}");
    }
}
