//! `cargo xtask`: build, verify, scan, sign and publish StageX base images.
//! This file is the command table and nothing else; each subcommand lives in
//! its own module as a struct with `run(self, sh)`.

mod all;
mod bench;
mod bench_mirror;
mod build;
mod catalog;
mod containerfile;
mod demo;
mod digests;
mod doctor;
mod generated;
mod lint;
mod mirror;
mod oci;
mod pgp;
mod push;
mod record;
mod release;
mod report;
mod reproduce;
mod settings;
mod sha;
mod signatures;
mod test_env;
mod test_suite;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xshell::Shell;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, verify and publish StageX base images"
)]
struct Cli {
    /// Work on another checkout with the same layout (default: this repository).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    All(all::All),
    Lint(lint::Lint),
    Build(build::Build),
    VerifyReproducible(reproduce::VerifyReproducible),
    Push(push::Push),
    Signatures(signatures::Signatures),
    Mirror(mirror::Mirror),
    Demo(demo::Demo),
    Bench(bench::Bench),
    Digests(digests::Digests),
    Doctor(doctor::Doctor),
    TestEnv(test_env::TestEnv),
    Test(test_suite::Test),
}

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<Failure>().is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let root = match cli.root {
        Some(root) => root,
        None => project_root(),
    };
    sh.change_dir(
        std::fs::canonicalize(&root)
            .map_err(|e| anyhow::anyhow!("--root {}: {e}", root.display()))?,
    );
    match cli.command {
        Command::All(cmd) => cmd.run(&sh),
        Command::Lint(cmd) => cmd.run(&sh),
        Command::Build(cmd) => cmd.run(&sh),
        Command::VerifyReproducible(cmd) => cmd.run(&sh),
        Command::Push(cmd) => cmd.run(&sh),
        Command::Signatures(cmd) => cmd.run(&sh),
        Command::Mirror(cmd) => cmd.run(&sh),
        Command::Demo(cmd) => cmd.run(&sh),
        Command::Bench(cmd) => cmd.run(&sh),
        Command::Digests(cmd) => cmd.run(&sh),
        Command::Doctor(cmd) => cmd.run(&sh),
        Command::TestEnv(cmd) => cmd.run(&sh),
        Command::Test(cmd) => cmd.run(&sh),
    }
}

/// The repository this xtask was built from.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a subdirectory of the workspace")
        .to_path_buf()
}
