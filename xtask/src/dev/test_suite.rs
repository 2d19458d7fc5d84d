//! `cargo xtask test`: bring up the test services, then run the whole suite
//! against them. This is the command CI runs.
//!
//! The suite's binaries (the unit tests and each file of `xtask/tests/`)
//! mostly wait on the engine and the registry, so after one `cargo test
//! --no-run` they run a few at a time, each as cargo would run it (from
//! `xtask/`, with the services' environment), and their output is shown
//! binary by binary. With arguments, `cargo test ARGS` runs as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::test_env::{self, Layout};
use crate::error::Failure;
use crate::tools::process::{Cmd, Env};

/// Test binaries run at once.
const AT_ONCE: usize = 3;

/// Bring up test-env and run every test against it (the command CI runs).
#[derive(Debug, Args)]
pub struct Test {
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cargo_args: Vec<String>,
}

impl Test {
    pub fn run(self, root: &Path) -> Result<()> {
        let layout = Layout::for_root(root);
        test_env::up(&layout)?;
        let env = layout.env();
        if !self.cargo_args.is_empty() {
            return cargo(&["test"], &self.cargo_args, root, &env)
                .run_attached()
                // Failing tests are a failed check (exit 1), not a broken tool.
                .map_err(|e| Failure(format!("{e:#}")))
                .context("cargo test");
        }
        let built = cargo(
            &[
                "test",
                "--no-run",
                "--message-format=json-render-diagnostics",
            ],
            &[],
            root,
            &env,
        )
        .output()
        .context("building the tests")?;
        let binaries = test_binaries(&String::from_utf8_lossy(&built.stdout));
        if binaries.is_empty() {
            anyhow::bail!("cargo built no test binary");
        }
        run_binaries(&binaries, &root.join("xtask"), &env)
    }
}

/// `cargo ARGS… --workspace --all-targets --locked EXTRA…`, without the
/// variables `cargo run` handed this process.
fn cargo(args: &[&str], extra: &[String], root: &Path, env: &Env) -> Cmd {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Cmd::new(cargo);
    // `cargo xtask` (cargo run) hands this process the package's
    // CARGO_PKG_*/CARGO_MANIFEST_* variables; build scripts such as ring's
    // watch some of them, so passing them on would rebuild ring, rustls and
    // reqwest for the tests, and again for the next build.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let handed = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix));
        if handed {
            command.env_remove(name.into_owned());
        }
    }
    command
        .args(args)
        .args(["--workspace", "--all-targets", "--locked"])
        .args(extra)
        .envs(env)
        .dir(root);
    command
}

/// The test executables of `cargo test --no-run --message-format=json`.
fn test_binaries(messages: &str) -> Vec<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["profile"]["test"] == true)
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .collect()
}

/// `(passed, failed)` from libtest's `test result:` lines.
fn counts(output: &str) -> (u64, u64) {
    let mut passed = 0;
    let mut failed = 0;
    for line in output.lines().filter(|l| l.starts_with("test result:")) {
        let number = |word: &str| {
            line.split(';')
                .find(|part| part.trim_end().ends_with(word))
                .and_then(|part| part.split_whitespace().rev().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        passed += number("passed");
        failed += number("failed");
    }
    (passed, failed)
}

/// Run every binary, [`AT_ONCE`] at a time, printing each one's output as
/// it ends; a failed check when any fails.
fn run_binaries(binaries: &[PathBuf], dir: &Path, env: &Env) -> Result<()> {
    let queue = std::sync::Mutex::new(binaries.iter());
    let results = std::sync::Mutex::new(Vec::new());
    let print = std::sync::Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..AT_ONCE.min(binaries.len()) {
            scope.spawn(|| loop {
                let next = queue.lock().map(|mut q| q.next().cloned());
                let Ok(Some(binary)) = next else { break };
                let mut command = Cmd::new(&binary);
                command
                    .envs(env)
                    .env("CARGO_MANIFEST_DIR", dir.display().to_string())
                    .dir(dir);
                let started = std::time::Instant::now();
                let (ok, text) = match command.try_output() {
                    Ok(output) => (
                        output.status.success(),
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&output.stdout),
                            String::from_utf8_lossy(&output.stderr)
                        ),
                    ),
                    Err(error) => (false, format!("{error:#}\n")),
                };
                let name = binary
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Ok(_guard) = print.lock() {
                    println!(
                        "     Running {name} ({:.1}s)\n{text}",
                        started.elapsed().as_secs_f64()
                    );
                }
                if let Ok(mut results) = results.lock() {
                    results.push((name, ok, counts(&text)));
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let passed: u64 = results.iter().map(|(_, _, (p, _))| p).sum();
    let failed: u64 = results.iter().map(|(_, _, (_, f))| f).sum();
    let broken: Vec<&str> = results
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(name, _, _)| name.as_str())
        .collect();
    println!("{passed} passed, {failed} failed");
    if broken.is_empty() && results.len() == binaries.len() {
        Ok(())
    } else {
        crate::error::fail(format!(
            "the suite failed in {}",
            if broken.is_empty() {
                "a binary that did not report".to_string()
            } else {
                broken.join(", ")
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_every_binarys_result_line() {
        let output = "test a ... ok\ntest result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s\n\
                      test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s\n";
        assert_eq!(counts(output), (5, 1));
        assert_eq!(counts("nothing"), (0, 0));
    }

    #[test]
    fn test_binaries_are_read_from_cargos_messages() {
        let messages = r#"{"reason":"compiler-artifact","profile":{"test":true},"executable":"/t/deps/archives-1"}
{"reason":"compiler-artifact","profile":{"test":false},"executable":"/t/xtask"}
{"reason":"compiler-artifact","profile":{"test":true},"executable":null}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            test_binaries(messages),
            [PathBuf::from("/t/deps/archives-1")]
        );
    }
}
