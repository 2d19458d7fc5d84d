//! The command table: global options, one variant per subcommand, dispatch,
//! and the exit code. Nothing else lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

use crate::commands::{
    all, build, check_runtime, clean, compare, digests, doctor, k8s, keys, lint, malcontent,
    mirror, pins, provenance, push, release_notes, reproduce, run_example, sbom, scan, signatures,
    signing, summary, workflows,
};
use crate::dev::{bench, demo, docs, mutants, test_env, test_suite};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, verify and publish StageX base images",
    after_help = "Development (hidden): `test-env up|down|env` provisions the test services under \
                  target/; `bench build|mirror|sbom` prints the figures docs/development.md quotes; \
                  `docs` regenerates docs/cli.md, docs/lint-rules.md and docs/schemas/; `mutants` runs \
                  cargo-mutants against the baseline in xtask/mutants.md. Exit codes: \
                  0 ok, 1 a check failed, 2 the tool could not run \
                  (docs/conventions-and-exit-codes.md)."
)]
pub struct Cli {
    /// The checkout to work on (default: the one the working folder is in;
    /// CI sets XTASK_ROOT to the job's checkout).
    #[arg(long, global = true, value_name = "DIR", env = "XTASK_ROOT")]
    pub root: Option<PathBuf>,
    /// Say less: results, warnings and errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: also every command run, secrets masked (what XTASK_COMMAND_LOG records).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Colour on stderr: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    All(all::All),
    Lint(lint::Lint),
    Digests(digests::Digests),
    Pins(pins::Pins),
    Compare(compare::Compare),
    Build(build::Build),
    VerifyReproducible(reproduce::VerifyReproducible),
    CheckRuntime(check_runtime::CheckRuntime),
    Sbom(sbom::Sbom),
    Scan(scan::Scan),
    Malcontent(malcontent::Malcontent),
    Provenance(provenance::Provenance),
    Push(push::Push),
    Sign(signing::Sign),
    Attest(signing::Attest),
    Verify(signing::Verify),
    Publish(signing::publish::Publish),
    ReleaseNotes(release_notes::ReleaseNotes),
    SigningKey(signing::key::SigningKey),
    Workflows(workflows::Workflows),
    K8s(k8s::K8s),
    RunExample(run_example::RunExample),
    Summary(summary::Summary),
    Signatures(signatures::Signatures),
    Mirror(mirror::Mirror),
    Keys(keys::Keys),
    Doctor(doctor::Doctor),
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    Test(test_suite::Test),
    #[command(hide = true)]
    TestEnv(test_env::TestEnv),
    Demo(demo::Demo),
    Clean(clean::Clean),
    #[command(hide = true)]
    Bench(bench::Bench),
    #[command(hide = true)]
    Docs(docs::Docs),
    #[command(hide = true)]
    Mutants(mutants::Mutants),
}

/// Parse the command line, run, and map the outcome to the README's exit codes.
pub fn main() -> ExitCode {
    use clap::FromArgMatches;
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            anstream::eprintln!("{} {error:#}", crate::ui::error_label());
            crate::error::exit_code(&error)
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let level = if cli.quiet {
        crate::ui::Level::Quiet
    } else if cli.verbose {
        crate::ui::Level::Verbose
    } else {
        crate::ui::Level::Normal
    };
    crate::ui::set(
        level,
        match cli.color {
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        },
    );
    if let Command::Completions { shell } = cli.command {
        return completions(shell);
    }
    // `--root`/`XTASK_ROOT` win; else the checkout the working folder is in
    // (never the one this binary was compiled in).
    let root = match &cli.root {
        Some(dir) => crate::files::given_root(dir)?,
        None => crate::files::find_root(&std::env::current_dir().context("the working folder")?)?,
    };
    // Tools `test-env up` provisioned under target/ are found without
    // exporting anything (after PATH, so a user's own tools win).
    // So is the test engine, when it runs and the machine has none of its own.
    let layout = test_env::Layout::for_root(&root);
    crate::tools::process::use_provisioned(layout.path_dirs(), layout.engine_env_if_running());
    // Docker credential helpers run through the one process runner.
    crate::oci::auth::use_credential_helpers(crate::tools::credential_helper::get);
    dispatch(cli.command, &root)
}

/// The subcommands by what a maintainer does, in the order they do it.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("Start here", &["doctor", "demo", "all"]),
    (
        "Check and build",
        &[
            "lint",
            "digests",
            "pins",
            "build",
            "check-runtime",
            "verify-reproducible",
            "compare",
            "run-example",
        ],
    ),
    (
        "Gate what ships",
        &["sbom", "scan", "malcontent", "provenance"],
    ),
    (
        "Sign and ship",
        &[
            "push",
            "publish",
            "release-notes",
            "signing-key",
            "sign",
            "attest",
            "verify",
        ],
    ),
    ("Upstream StageX", &["mirror", "signatures", "keys"]),
    ("CI and clusters", &["workflows", "k8s", "summary"]),
    ("Housekeeping", &["test", "clean", "completions", "help"]),
];

/// The command table with `--help` listing subcommands by [`GROUPS`].
pub fn command() -> clap::Command {
    let table = Cli::command();
    let about = |name: &str| {
        table
            .find_subcommand(name)
            .and_then(|sub| sub.get_about())
            .map(|about| about.to_string())
            .unwrap_or_else(|| "Print this message or the help of the given subcommand(s)".into())
    };
    let width = GROUPS
        .iter()
        .flat_map(|(_, names)| names.iter())
        .map(|name| name.len())
        .max()
        .unwrap_or(0);
    let mut listing = String::new();
    for (group, names) in GROUPS {
        listing.push_str(&format!("{group}:\n"));
        for name in *names {
            listing.push_str(&format!("  {name:<width$}  {}\n", about(name)));
        }
        listing.push('\n');
    }
    table.help_template(format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{listing}Options:\n{{options}}{{after-help}}"
    ))
}

/// Completions for `cargo xtask …`: a `cargo` command whose one subcommand
/// is `xtask` (they take over `cargo`'s own completion in that shell, which
/// the README says). Written whole, and a closed pipe (`| head`) is no error.
fn completions(shell: clap_complete::Shell) -> Result<()> {
    use std::io::Write;
    let xtask = Cli::command().name("xtask").bin_name("cargo xtask");
    let mut cargo = clap::Command::new("cargo")
        .bin_name("cargo")
        .subcommand(xtask);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cargo, "cargo", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn dispatch(command: Command, root: &Path) -> Result<()> {
    match command {
        Command::All(cmd) => cmd.run(root),
        Command::Lint(cmd) => cmd.run(root),
        Command::Digests(cmd) => cmd.run(root),
        Command::Pins(cmd) => cmd.run(root),
        Command::Compare(cmd) => cmd.run(root),
        Command::Build(cmd) => cmd.run(root),
        Command::VerifyReproducible(cmd) => cmd.run(root),
        Command::CheckRuntime(cmd) => cmd.run(root),
        Command::Sbom(cmd) => cmd.run(root),
        Command::Scan(cmd) => cmd.run(root),
        Command::Malcontent(cmd) => cmd.run(root),
        Command::Provenance(cmd) => cmd.run(root),
        Command::Push(cmd) => cmd.run(root),
        Command::Sign(cmd) => cmd.run(root),
        Command::Attest(cmd) => cmd.run(root),
        Command::Verify(cmd) => cmd.run(root),
        Command::Publish(cmd) => cmd.run(root),
        Command::ReleaseNotes(cmd) => cmd.run(root),
        Command::SigningKey(cmd) => cmd.run(root),
        Command::Workflows(cmd) => cmd.run(root),
        Command::K8s(cmd) => cmd.run(root),
        Command::RunExample(cmd) => cmd.run(root),
        Command::Summary(cmd) => cmd.run(root),
        Command::Signatures(cmd) => cmd.run(root),
        Command::Mirror(cmd) => cmd.run(root),
        Command::Keys(cmd) => cmd.run(root),
        Command::Doctor(cmd) => cmd.run(root),
        Command::Completions { .. } => Ok(()),
        Command::Test(cmd) => cmd.run(root),
        Command::TestEnv(cmd) => cmd.run(root),
        Command::Demo(cmd) => cmd.run(root),
        Command::Clean(cmd) => {
            cmd.run_with(root, || test_env::down(&test_env::Layout::for_root(root)))
        }
        Command::Bench(cmd) => cmd.run(root),
        Command::Docs(cmd) => cmd.run(root, Cli::command()),
        Command::Mutants(cmd) => cmd.run(root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_table_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every shown subcommand is in exactly one group of `--help`.
    #[test]
    fn help_groups_every_subcommand_once() {
        let table = Cli::command();
        let mut shown: Vec<&str> = table
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            .map(|sub| sub.get_name())
            .collect();
        shown.push("help");
        shown.sort();
        let mut grouped: Vec<&str> = GROUPS
            .iter()
            .flat_map(|(_, names)| names.iter().copied())
            .collect();
        grouped.sort();
        assert_eq!(grouped, shown);
        let help = command().render_help().to_string();
        let at = |heading: &str| {
            help.find(heading)
                .unwrap_or_else(|| panic!("{heading} missing: {help}"))
        };
        assert!(at("Start here:") < at("Sign and ship:") && at("Sign and ship:") < at("Options:"));
    }
}
