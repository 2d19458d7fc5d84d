//! What a CI job expects of the image it runs in (`forgejo-job`): each
//! program a workflow step calls, how to ask it for its version, the oldest
//! that works and which step needs it. `doctor --for-job` runs these first in
//! every job, so a job in an image that lacks one fails at once, naming it,
//! instead of half-way through a build.

use super::process::{Cmd, Env};
use super::{parse_version, version_line, Status};

/// One program the job steps call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgram {
    pub name: &'static str,
    pub argv: &'static [&'static str],
    pub minimum: Option<(u64, u64)>,
    /// Which steps need it.
    pub needed_by: &'static str,
    /// Which jobs call it: every job, or those running these xtask commands.
    pub called_by: CalledBy,
}

/// Which jobs call a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalledBy {
    /// Every job: checkout, artifacts and `run:` steps.
    EveryJob,
    /// The jobs that build xtask or run the tests (no xtask binary yet).
    Toolchain,
    /// The jobs that run one of these xtask commands.
    Commands(&'static [&'static str]),
}

/// Everything forgejo-job/Containerfile promises, in the order a job uses it.
pub const JOB_PROGRAMS: &[JobProgram] = &[
    JobProgram {
        name: "node",
        argv: &["node", "--version"],
        // forgejo-runner runs JavaScript actions with the job's own node;
        // actions/checkout v4 and the artifact actions declare node20.
        minimum: Some((20, 0)),
        needed_by: "every `uses:` step (actions/checkout, upload/download-artifact)",
        called_by: CalledBy::EveryJob,
    },
    JobProgram {
        name: "git",
        argv: &["git", "--version"],
        minimum: None,
        needed_by: "actions/checkout, SOURCE_DATE_EPOCH (build)",
        called_by: CalledBy::EveryJob,
    },
    JobProgram {
        name: "bash",
        argv: &["bash", "--version"],
        minimum: None,
        needed_by: "`run:` steps (shell: bash), .ci/run",
        called_by: CalledBy::EveryJob,
    },
    JobProgram {
        name: "sh",
        argv: &["sh", "-c", "exit 0"],
        minimum: None,
        needed_by: "`run:` steps with the default shell (busybox)",
        called_by: CalledBy::EveryJob,
    },
    JobProgram {
        name: "cargo",
        argv: &["cargo", "--version"],
        minimum: None,
        needed_by: "the xtask job, the tests",
        called_by: CalledBy::Toolchain,
    },
    JobProgram {
        name: "rustc",
        argv: &["rustc", "--version"],
        minimum: None,
        needed_by: "the xtask job, the tests",
        called_by: CalledBy::Toolchain,
    },
    JobProgram {
        name: "cc",
        argv: &["cc", "--version"],
        minimum: None,
        needed_by: "crates with C code (ring) in the xtask job and the tests",
        called_by: CalledBy::Toolchain,
    },
    JobProgram {
        name: "docker",
        argv: &["docker", "--version"],
        minimum: None,
        needed_by: "build, verify-reproducible, publish (the runner's DinD engine)",
        called_by: CalledBy::Commands(&["build", "verify-reproducible"]),
    },
    JobProgram {
        name: "docker buildx",
        argv: &["docker", "buildx", "version"],
        // rewrite-timestamp for reproducible OCI archives came in 0.13.
        minimum: Some((0, 13)),
        needed_by: "build, verify-reproducible",
        called_by: CalledBy::Commands(&["build", "verify-reproducible"]),
    },
    JobProgram {
        name: "cosign",
        argv: &["cosign", "version"],
        minimum: None,
        needed_by: "publish, verify",
        called_by: CalledBy::Commands(&["publish", "sign", "attest", "verify"]),
    },
    JobProgram {
        name: "syft",
        argv: &["syft", "version"],
        minimum: None,
        needed_by: "sbom",
        called_by: CalledBy::Commands(&["sbom"]),
    },
    JobProgram {
        name: "grype",
        argv: &["grype", "version"],
        minimum: None,
        needed_by: "scan",
        called_by: CalledBy::Commands(&["scan"]),
    },
    JobProgram {
        name: "mal",
        argv: &["mal", "--version"],
        minimum: None,
        needed_by: "malcontent",
        called_by: CalledBy::Commands(&["malcontent"]),
    },
];

/// One program's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCheck {
    pub program: JobProgram,
    pub status: Status,
    /// The version found, or what went wrong.
    pub found: String,
}

impl JobProgram {
    /// Ask the program (with `env` on top of ours, `PATH` included): missing
    /// when it does not start or does not exit 0.
    pub fn check(self, env: &Env) -> JobCheck {
        let mut command = Cmd::new(self.argv[0]);
        command.args(&self.argv[1..]).envs(env);
        let (status, found) = match command.output() {
            Err(error) => (
                Status::Missing,
                error.to_string().lines().next().unwrap_or("").to_string(),
            ),
            Ok(output) => {
                let text = String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr);
                match (parse_version(&text), self.minimum) {
                    (Some(v), Some(min)) if (v.0, v.1) < min => {
                        (Status::TooOld, format!("{}.{}.{}", v.0, v.1, v.2))
                    }
                    (Some(v), _) => (Status::Ok, format!("{}.{}.{}", v.0, v.1, v.2)),
                    (None, Some(_)) => (Status::TooOld, version_line(&text)),
                    (None, None) if text.trim().is_empty() => (Status::Ok, "present".into()),
                    (None, None) => (Status::Ok, version_line(&text)),
                }
            }
        };
        JobCheck {
            program: self,
            status,
            found,
        }
    }
}

/// The programs a job running `commands` calls (every one of
/// [`JOB_PROGRAMS`] for `None`: the image as a whole).
pub fn called_by(commands: Option<&[String]>) -> Vec<JobProgram> {
    JOB_PROGRAMS
        .iter()
        .filter(|program| match (commands, program.called_by) {
            (None, _) | (_, CalledBy::EveryJob) => true,
            (Some(_), CalledBy::Toolchain) => false,
            (Some(commands), CalledBy::Commands(callers)) => commands
                .iter()
                .any(|command| callers.contains(&command.as_str())),
        })
        .copied()
        .collect()
}

/// Each of `programs`, checked.
pub fn check(programs: &[JobProgram], env: &Env) -> Vec<JobCheck> {
    programs.iter().map(|program| program.check(env)).collect()
}
