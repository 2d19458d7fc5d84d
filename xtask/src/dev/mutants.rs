//! `cargo xtask mutants [--file PATH]… [--in-diff DIFF]`: cargo-mutants over
//! the security-critical modules, measured against the baseline in
//! `xtask/mutants.md`.
//!
//! Two passes, so the slow suite runs only where it is needed: every mutant
//! against the unit tests (seconds each), then only the survivors against
//! the whole suite with the test services up. Mutation happens in place in a
//! worktree of HEAD under `target/mutants/` (its own target folder, the test
//! services of this checkout linked in), never in the checkout itself. A
//! survivor of both passes must be listed in the baseline with its reason;
//! one that is not fails the run (exit 1), named. In place means one
//! mutant at a time (cargo-mutants' `--jobs` needs copies of the tree).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::test_env::{self, Layout};
use crate::tools::process::{Cmd, Env};

/// The files issue 25 names as security-critical (the default set).
pub const CRITICAL: &[&str] = &[
    "xtask/src/oci/registry.rs",
    "xtask/src/oci/auth.rs",
    "xtask/src/oci/transfer.rs",
    "xtask/src/oci/rootfs.rs",
    "xtask/src/oci/archive.rs",
    "xtask/src/oci/reference.rs",
    "xtask/src/oci/manifest.rs",
    "xtask/src/pgp/*.rs",
    "xtask/src/records/*.rs",
    "xtask/src/commands/push.rs",
    "xtask/src/commands/signing/*.rs",
    "xtask/src/commands/mirror/*.rs",
    "xtask/src/commands/check_runtime/*.rs",
    "xtask/src/tools/process.rs",
    "xtask/src/tools/cosign.rs",
    "xtask/src/http.rs",
];

/// The baseline: surviving mutants, each with its reason.
pub const BASELINE: &str = "xtask/mutants.md";
/// The heading of the baseline's list of survivors.
const SURVIVORS_HEADING: &str = "## Surviving mutants";

/// Mutation testing of the security-critical modules (dev; needs cargo-mutants).
#[derive(Debug, Args)]
pub struct Mutants {
    /// Only mutants in these files (globs as cargo-mutants takes them; default: the security-critical set).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<String>,
    /// Only mutants on the lines a diff changes (`git diff main… > DIFF`), as in pull requests.
    #[arg(long, value_name = "DIFF")]
    pub in_diff: Option<PathBuf>,
    /// The unit pass alone: its survivors are listed, not tried against the
    /// suite (for working through survivors a test at a time).
    #[arg(long)]
    pub unit_only: bool,
    /// The suite pass runs only the tests whose names contain one of these
    /// (`hostile::`, `mirror::`…): minutes less per unit survivor, at the cost
    /// of calling survivors what another test would catch.
    #[arg(long = "suite-test", value_name = "NAME")]
    pub suite_tests: Vec<String>,
    /// Only the mutants FILE lists, one a line (a pass's `missed.txt`: are
    /// they caught now?).
    #[arg(long, value_name = "FILE")]
    pub only_from: Option<PathBuf>,
}

/// One pass of cargo-mutants: which tests, which mutants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub name: &'static str,
    /// Arguments for each cargo invocation (build and test): `--lib` builds
    /// and runs the unit tests alone.
    pub cargo_args: Vec<String>,
    /// Only these mutants (their names, as `--list` prints them), or all.
    pub only: Option<Vec<String>>,
    /// Test-name filters handed to the test binaries (none: every test).
    pub test_filters: Vec<String>,
    /// A mutant whose tests run longer is stopped and counted as caught
    /// (timed out): a mutant that makes a test hang waits no longer.
    pub timeout: std::time::Duration,
}

/// The cargo-mutants command line of `pass` over `files`, run in `tree`,
/// its results under `output`.
pub fn argv(
    pass: &Pass,
    files: &[String],
    in_diff: Option<&Path>,
    tree: &Path,
    output: &Path,
) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "mutants".into(),
        "--package".into(),
        "xtask".into(),
        "--dir".into(),
        tree.display().to_string(),
        "--in-place".into(),
        // The unmutated tree passed `cargo xtask test` before this runs.
        "--baseline".into(),
        "skip".into(),
        "--timeout".into(),
        pass.timeout.as_secs().to_string(),
        "--output".into(),
        output.display().to_string(),
        "--no-shuffle".into(),
        "--colors".into(),
        "never".into(),
    ];
    for file in files {
        argv.push("--file".into());
        argv.push(file.clone());
    }
    if let Some(diff) = in_diff {
        argv.push("--in-diff".into());
        argv.push(diff.display().to_string());
    }
    if let Some(only) = &pass.only {
        for name in only {
            argv.push("--re".into());
            argv.push(name_pattern(name));
        }
    }
    for arg in &pass.cargo_args {
        argv.push(format!("--cargo-arg={arg}"));
    }
    if !pass.test_filters.is_empty() {
        argv.push("--cargo-test-arg=--".into());
        for filter in &pass.test_filters {
            argv.push(format!("--cargo-test-arg={filter}"));
        }
    }
    argv
}

/// A regular expression matching the mutant `name` (`file:line:col: what`)
/// at any line and column: a list from an earlier commit still finds its
/// mutants after edits above them moved their lines.
fn name_pattern(name: &str) -> String {
    let mut parts = name.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(line), Some(column), Some(what))
            if line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok() =>
        {
            format!(
                "^{}:[0-9]+:[0-9]+:{}$",
                regex_escape(file),
                regex_escape(what)
            )
        }
        _ => format!("^{}$", regex_escape(name)),
    }
}

/// `text` matched literally by a regular expression.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The names in one of cargo-mutants' outcome lists (`missed.txt`, …),
/// one mutant a line.
pub fn names(list: &str) -> Vec<String> {
    list.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// The survivors the baseline explains: the first backquoted name of each
/// `- ` line under [`SURVIVORS_HEADING`].
pub fn explained(baseline: &str) -> BTreeSet<String> {
    let mut inside = false;
    let mut names = BTreeSet::new();
    for line in baseline.lines() {
        if line.starts_with("## ") {
            inside = line.trim() == SURVIVORS_HEADING;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(rest) = line.strip_prefix("- `") {
            if let Some((name, _)) = rest.split_once('`') {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// The survivors the baseline does not explain, in the order found.
pub fn unexplained(survivors: &[String], explained: &BTreeSet<String>) -> Vec<String> {
    survivors
        .iter()
        .filter(|name| !explained.contains(*name))
        .cloned()
        .collect()
}

/// What one pass left: (caught, missed, unviable, timed out) names.
struct Outcomes {
    caught: Vec<String>,
    missed: Vec<String>,
    unviable: Vec<String>,
    timeout: Vec<String>,
}

impl Outcomes {
    fn tested(&self) -> usize {
        self.caught.len() + self.missed.len() + self.unviable.len() + self.timeout.len()
    }
}

/// A pass's outcomes, refused when cargo-mutants stopped before it had
/// tested every mutant it listed (killed, or failed): a partial pass would
/// read as "nothing survived".
fn complete_outcomes(output: &Path) -> Result<Outcomes> {
    let outcomes = read_outcomes(output)?;
    let listed = output.join("mutants.out/mutants.json");
    let text = std::fs::read_to_string(&listed)
        .with_context(|| format!("cargo-mutants left no {}", listed.display()))?;
    let mutants: Vec<serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a list of mutants", listed.display()))?;
    if outcomes.tested() < mutants.len() {
        bail!(
            "cargo-mutants stopped after {} of the {} mutants it listed ({}): the pass is not complete",
            outcomes.tested(),
            mutants.len(),
            output.display()
        );
    }
    Ok(outcomes)
}

fn read_outcomes(output: &Path) -> Result<Outcomes> {
    let dir = output.join("mutants.out");
    let list = |file: &str| -> Result<Vec<String>> {
        let path = dir.join(file);
        Ok(names(&std::fs::read_to_string(&path).with_context(
            || format!("cargo-mutants left no {}", path.display()),
        )?))
    };
    Ok(Outcomes {
        caught: list("caught.txt")?,
        missed: list("missed.txt")?,
        unviable: list("unviable.txt")?,
        timeout: list("timeout.txt")?,
    })
}

impl Mutants {
    pub fn run(self, root: &Path) -> Result<()> {
        Cmd::new("cargo")
            .args(["mutants", "--version"])
            .output()
            .context("cargo-mutants is needed: `cargo install --locked cargo-mutants`")?;
        let layout = Layout::for_root(root);
        test_env::up(&layout)?;
        let work = root.join("target/mutants");
        let tree = work.join("tree");
        fresh_worktree(root, &tree)?;
        let mut env: Env = layout.env();
        env.insert(
            "CARGO_TARGET_DIR".into(),
            work.join("target").display().to_string(),
        );
        let files: Vec<String> = if self.files.is_empty() {
            CRITICAL.iter().map(|f| f.to_string()).collect()
        } else {
            self.files.clone()
        };
        let in_diff = self.in_diff.as_ref().map(std::path::absolute).transpose()?;
        let started = std::time::Instant::now();
        let only = match &self.only_from {
            Some(list) => Some(names(&std::fs::read_to_string(list).with_context(
                || format!("reading the mutants to run from {}", list.display()),
            )?)),
            None => None,
        };
        let unit = Pass {
            name: "unit",
            cargo_args: vec!["--lib".into()],
            only,
            test_filters: Vec::new(),
            // The unit tests take seconds.
            timeout: std::time::Duration::from_secs(60),
        };
        let first = run_pass(&unit, &files, in_diff.as_deref(), &tree, &work, &env)?;
        let mut caught_by_suite = Vec::new();
        let mut survivors = Vec::new();
        let mut timeouts = first.timeout.clone();
        if self.unit_only {
            crate::ui::say!(
                "mutants: unit pass only, in {:.0} min: {} caught, {} unviable, {} timed out, {} survived (not tried against the suite):\n  {}",
                started.elapsed().as_secs_f64() / 60.0,
                first.caught.len(),
                first.unviable.len(),
                first.timeout.len(),
                first.missed.len(),
                first.missed.join("\n  ")
            );
            return Ok(());
        }
        if !first.missed.is_empty() {
            let suite = Pass {
                name: "suite",
                cargo_args: Vec::new(),
                only: Some(first.missed.clone()),
                test_filters: self.suite_tests.clone(),
                // The suite takes two minutes; its stall tests wait on purpose.
                timeout: std::time::Duration::from_secs(600),
            };
            let second = run_pass(&suite, &files, in_diff.as_deref(), &tree, &work, &env)?;
            caught_by_suite = second.caught;
            survivors = second.missed;
            timeouts.extend(second.timeout);
        }
        let baseline = std::fs::read_to_string(root.join(BASELINE)).unwrap_or_default();
        let unexplained = unexplained(&survivors, &explained(&baseline));
        let total = first.tested();
        crate::ui::say!(
            "mutants: {total} in {} file pattern(s) in {:.0} min: {} caught by the unit tests, {} more by the suite, {} unviable, {} timed out, {} survived ({} explained in {BASELINE})",
            files.len(),
            started.elapsed().as_secs_f64() / 60.0,
            first.caught.len(),
            caught_by_suite.len(),
            first.unviable.len(),
            timeouts.len(),
            survivors.len(),
            survivors.len() - unexplained.len(),
        );
        if unexplained.is_empty() {
            return Ok(());
        }
        crate::error::fail(format!(
            "{} surviving mutant(s) not explained in {BASELINE} (a test that fails on each, or a line under `{SURVIVORS_HEADING}` with why it cannot be caught):\n  {}",
            unexplained.len(),
            unexplained.join("\n  ")
        ))
    }
}

fn run_pass(
    pass: &Pass,
    files: &[String],
    in_diff: Option<&Path>,
    tree: &Path,
    work: &Path,
    env: &Env,
) -> Result<Outcomes> {
    let output = work.join(pass.name);
    if output.exists() {
        std::fs::remove_dir_all(&output)?;
    }
    std::fs::create_dir_all(&output)?;
    crate::ui::say!("mutants: {} pass", pass.name);
    let argv = argv(pass, files, in_diff, tree, &output);
    // cargo-mutants exits 2 when a mutant survives: its lists say which.
    let ran = Cmd::new("cargo")
        .args(&argv)
        .envs(env)
        .dir(tree)
        .run_attached();
    let outcomes = complete_outcomes(&output);
    match (ran, outcomes) {
        (_, Ok(outcomes)) => Ok(outcomes),
        (Err(error), Err(_)) => Err(error),
        (Ok(()), Err(error)) => Err(error),
    }
}

/// A worktree of HEAD at `tree`, made anew, with this checkout's test
/// services linked in (the suite finds them under target/test-env).
fn fresh_worktree(root: &Path, tree: &Path) -> Result<()> {
    if tree.exists() {
        Cmd::new("git")
            .arg("-C")
            .arg(root)
            .args(["worktree", "remove", "--force"])
            .arg(tree)
            .output()?;
    }
    Cmd::new("git")
        .arg("-C")
        .arg(root)
        .args(["worktree", "add", "--detach"])
        .arg(tree)
        .arg("HEAD")
        .output()
        .context("making the worktree cargo-mutants mutates")?;
    std::fs::create_dir_all(tree.join("target"))?;
    std::os::unix::fs::symlink(root.join("target/test-env"), tree.join("target/test-env"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_pass_tests_only_the_unit_passs_survivors() {
        let unit = Pass {
            name: "unit",
            cargo_args: vec!["--lib".into()],
            only: None,
            test_filters: Vec::new(),
            timeout: std::time::Duration::from_secs(60),
        };
        let files = vec!["xtask/src/http.rs".to_string()];
        let line = argv(&unit, &files, None, Path::new("/t"), Path::new("/o")).join(" ");
        assert!(
            line.contains("--in-place") && line.contains("--dir /t"),
            "{line}"
        );
        assert!(line.contains("--file xtask/src/http.rs"), "{line}");
        assert!(line.ends_with("--cargo-arg=--lib"), "{line}");
        assert!(line.contains("--timeout 60 "), "{line}");
        let suite = Pass {
            name: "suite",
            cargo_args: Vec::new(),
            only: Some(vec![
                "xtask/src/http.rs:32:5: replace is_loopback_host -> bool with true".into(),
            ]),
            test_filters: vec!["hostile::".into()],
            timeout: std::time::Duration::from_secs(600),
        };
        let words = argv(
            &suite,
            &files,
            Some(Path::new("/d")),
            Path::new("/t"),
            Path::new("/o"),
        );
        let joined = words.join(" ");
        assert!(joined.contains("--in-diff /d"), "{joined}");
        assert!(!joined.contains("--lib"), "{joined}");
        assert!(
            joined.ends_with("--cargo-test-arg=-- --cargo-test-arg=hostile::"),
            "{joined}"
        );
        assert!(words.contains(
            &r"^xtask/src/http\.rs:[0-9]+:[0-9]+: replace is_loopback_host \-> bool with true$"
                .to_string()
        ));
        assert_eq!(name_pattern("not a name"), "^not a name$");
    }

    /// A pass cargo-mutants did not finish (killed, failed) is an error,
    /// never an empty list of survivors.
    #[test]
    fn a_pass_that_stopped_early_is_not_read_as_complete() {
        let output = tempfile::tempdir().unwrap();
        let dir = output.path().join("mutants.out");
        std::fs::create_dir_all(&dir).unwrap();
        for list in ["caught.txt", "missed.txt", "unviable.txt", "timeout.txt"] {
            std::fs::write(dir.join(list), "").unwrap();
        }
        std::fs::write(dir.join("caught.txt"), "a.rs:1:1: replace f with ()\n").unwrap();
        std::fs::write(dir.join("mutants.json"), "[{}, {}]").unwrap();
        let error = complete_outcomes(output.path()).err().unwrap().to_string();
        assert!(
            error.starts_with("cargo-mutants stopped after 1 of the 2 mutants it listed"),
            "{error}"
        );
        std::fs::write(dir.join("missed.txt"), "b.rs:2:2: replace g with ()\n").unwrap();
        let outcomes = complete_outcomes(output.path()).unwrap();
        assert_eq!(outcomes.missed, ["b.rs:2:2: replace g with ()"]);
    }

    #[test]
    fn survivors_not_in_the_baseline_are_named() {
        let baseline = "# Mutation testing\n\n## Checks removed by hand\n\n- `not a survivor` — elsewhere\n\n## Surviving mutants\n\n- `a.rs:1:1: replace f with ()` — equivalent: f only logs\n- `b.rs:2:2: replace g -> bool with true` — unreachable: …\n\n## Figures\n\n- `c.rs` — not a survivor\n";
        let explained = explained(baseline);
        assert_eq!(explained.len(), 2, "{explained:?}");
        let survivors = names("a.rs:1:1: replace f with ()\n\nd.rs:4:4: replace h with ()\n");
        assert_eq!(
            unexplained(&survivors, &explained),
            ["d.rs:4:4: replace h with ()"]
        );
    }
}
