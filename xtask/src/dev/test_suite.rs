//! `cargo xtask test`: bring up the test services, then run the whole suite
//! against them. This is the command CI runs.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

use super::test_env::{self, Layout};
use crate::error::Failure;
use crate::tools::process::Cmd;

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
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut command = Cmd::new(cargo);
        // `cargo xtask` (cargo run) hands this process the package's
        // CARGO_PKG_*/CARGO_MANIFEST_* variables; build scripts such as
        // ring's watch some of them, so passing them on would rebuild ring,
        // rustls and reqwest for the tests, and again for the next build.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            {
                command.env_remove(name.into_owned());
            }
        }
        command
            .args(["test", "--workspace", "--all-targets", "--locked"])
            .args(&self.cargo_args)
            .envs(&layout.env())
            .dir(root)
            .run_attached()
            // Failing tests are a failed check (exit 1), not a broken tool.
            .map_err(|e| Failure(format!("{e:#}")))
            .context("cargo test")
    }
}
