//! The two ways a subcommand can fail, and the exit codes they map to (the
//! table in docs/conventions-and-exit-codes.md):
//!
//! - 1: a check ran and failed (a lint finding, a stale generated file, a build
//!   or reproducibility failure, a quorum not met, an archive that changed, a
//!   prerequisite step not done yet). Raised as [`Failure`].
//! - 2: the tool could not do its work (bad usage, an unreadable input, a
//!   missing engine or program, an unreachable registry). Every other error.

use std::process::ExitCode;

/// A check that ran and failed (exit 1), as opposed to a tool that could not
/// run at all (exit 2).
#[derive(Debug)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// `Err(Failure(..))` as an `anyhow::Result`.
pub fn fail<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(Failure(message.into()).into())
}

pub const CHECK_FAILED: u8 = 1;
pub const COULD_NOT_RUN: u8 = 2;

/// Whether the error (or a cause in its chain) is a failed check.
pub fn is_failure(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<Failure>())
}

/// The exit code for an error: 1 when any error in its chain is a [`Failure`].
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    if is_failure(error) {
        ExitCode::from(CHECK_FAILED)
    } else {
        ExitCode::from(COULD_NOT_RUN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_failure_keeps_its_code_under_context() {
        let failed: anyhow::Result<()> = fail("lint: 1 finding");
        let error = failed.context("all").unwrap_err();
        assert_eq!(exit_code(&error), ExitCode::from(1));
        let broken = anyhow::anyhow!("no such file");
        assert_eq!(exit_code(&broken), ExitCode::from(2));
    }
}
