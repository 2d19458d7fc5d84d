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
