//! Docker and buildx: running a planned `docker buildx build` with its output
//! in a log and its progress on the terminal.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::process::{Cmd, CommandFailed, Env};
use crate::error::Failure;

/// Run a `docker buildx build` argv; the full output goes to `log`, each new
/// build step to `on_step` (with the seconds since the start).
pub fn buildx_build(
    argv: &[String],
    env: &Env,
    log: &Path,
    mut on_step: impl FnMut(f64, &str),
) -> Result<()> {
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let started = Instant::now();
    let mut announced = BTreeSet::new();
    let mut command = Cmd::from_argv(argv);
    command.envs(env);
    let streamed = command.stream(&mut file, |line| {
        if let Some(step) = progress_step(line) {
            if announced.insert(step.to_string()) {
                on_step(started.elapsed().as_secs_f64(), step);
            }
        }
    });
    match streamed {
        // buildx ran and said no: the image does not build (a failed check).
        Err(error)
            if error
                .downcast_ref::<CommandFailed>()
                .is_some_and(|f| f.status.starts_with("exit status")) =>
        {
            Err(Failure(format!("{error} (full log: {})", log.display())).into())
        }
        other => other.with_context(|| format!("full log: {}", log.display())),
    }
}

/// The engine's server version and buildx's version, asked once per run
/// (the build record and the provenance name them).
pub fn versions(env: &Env) -> Result<(String, String)> {
    static ASKED: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    if let Some(known) = ASKED.get() {
        return Ok(known.clone());
    }
    let mut engine = Cmd::new("docker");
    engine
        .args(["version", "--format", "{{.Server.Version}}"])
        .envs(env);
    let engine = engine.read()?;
    let mut buildx = Cmd::new("docker");
    buildx.args(["buildx", "version"]).envs(env);
    let buildx = buildx_version(&buildx.read()?);
    Ok(ASKED.get_or_init(|| (engine, buildx)).clone())
}

/// `github.com/docker/buildx v0.13.1 788433953af1…` → `0.13.1`; Debian's
/// `github.com/docker/buildx 0.13.1+ds1-3 ` keeps its suffix.
fn buildx_version(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let version = words.nth(1).unwrap_or(line);
    version.trim_start_matches('v').to_string()
}

/// `#7 [build 2/4] RUN […]` → `[build 2/4] RUN […]`: the step lines worth showing.
fn progress_step(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?;
    let (number, rest) = rest.split_once(' ')?;
    if !number.chars().all(|c| c.is_ascii_digit()) || !rest.starts_with('[') {
        return None;
    }
    Some(rest.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_versions() {
        assert_eq!(
            buildx_version(
                "github.com/docker/buildx v0.13.1 788433953af10f2a698f5c07611dddce2e08c7a0\n"
            ),
            "0.13.1"
        );
        assert_eq!(
            buildx_version("github.com/docker/buildx 0.13.1+ds1-3 \n"),
            "0.13.1+ds1-3"
        );
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_step("#7 [build 2/4] RUN [\"go\"]\n"),
            Some("[build 2/4] RUN [\"go\"]")
        );
        assert_eq!(progress_step("#7 DONE 0.1s\n"), None);
        assert_eq!(
            progress_step("#1 [internal] load build definition\n"),
            Some("[internal] load build definition")
        );
        assert_eq!(progress_step("some text"), None);
    }

    /// Without buildx, docker says "unknown flag: --progress" and then a hint
    /// to read its help: the error shows the former.
    #[test]
    fn a_failed_build_shows_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("docker");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'unknown flag: --progress' >&2\necho \"See 'docker --help'.\" >&2\nexit 125\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let argv: Vec<String> = [
            fake.to_str().unwrap(),
            "buildx",
            "build",
            "--progress=plain",
        ]
        .map(String::from)
        .to_vec();
        let log = dir.path().join("build.log");
        let error = buildx_build(&argv, &Env::new(), &log, |_, _| {}).unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("failed (exit status: 125): unknown flag: --progress"),
            "{text}"
        );
        assert!(
            text.contains(&format!("full log: {}", log.display())),
            "{text}"
        );
    }
}
