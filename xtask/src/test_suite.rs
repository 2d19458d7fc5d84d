//! `cargo xtask test`: bring up the test services, then run the whole suite
//! against them. This is the command CI runs.

use anyhow::{Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::test_env::{self, Layout};

/// Bring up test-env and run every test against it (the command CI runs).
#[derive(Debug, Args)]
pub struct Test {
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cargo_args: Vec<String>,
}

impl Test {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let layout = Layout::for_root(&sh.current_dir());
        test_env::up(sh, &layout)?;
        let mut command = cmd!(sh, "cargo test --workspace --all-targets --locked");
        for (name, value) in layout.env() {
            command = command.env(name, value);
        }
        let args = &self.cargo_args;
        command
            .args(args)
            .run()
            .map_err(|e| crate::Failure(format!("{e}")))
            .context("cargo test")?;
        Ok(())
    }
}
