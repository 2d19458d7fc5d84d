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
        Cmd::new(cargo)
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
