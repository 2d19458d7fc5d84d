//! `cargo xtask workflows`: the committed files are what the model makes,
//! the linters CI people use accept them, and the catalog drives them.

use std::path::Path;

use crate::common::*;

fn workflow(root: &Path, file: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(root.join(".forgejo/workflows").join(file)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn the_committed_workflows_are_up_to_date() {
    let output = xtask(&["workflows", "--check"]);
    assert!(output.status.success(), "{}", text(&output));

    // A hand edit is caught, with the diff and the command that fixes it.
    let checkout = copy_checkout();
    let root = checkout.path();
    copy_tree(&repo_root().join(".forgejo"), &root.join(".forgejo"));
    let build = root.join(".forgejo/workflows/build.yml");
    let edited = std::fs::read_to_string(&build)
        .unwrap()
        .replace("timeout-minutes: 120", "timeout-minutes: 999");
    std::fs::write(&build, edited).unwrap();
    let output = xtask(&["--root", root.to_str().unwrap(), "workflows", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = text(&output);
    assert!(report.contains("-    timeout-minutes: 999"), "{report}");
    assert!(report.contains("+    timeout-minutes: 120"), "{report}");
    assert!(report.contains("run `cargo xtask workflows`"), "{report}");
}

#[test]
fn actionlint_and_zizmor_accept_the_workflows() {
    let actionlint = require_tool("actionlint");
    let files = [
        ".forgejo/workflows/build.yml",
        ".forgejo/workflows/check.yml",
        ".forgejo/workflows/release.yml",
    ];
    let output = run_ok(
        std::process::Command::new(&actionlint)
            .current_dir(repo_root())
            .arg("-config-file")
            .arg(".forgejo/actionlint.yaml")
            .args(files),
    );
    assert!(text(&output).trim().is_empty(), "{}", text(&output));
    // Without the config, actionlint does find what the config explains
    // (so the config is not silencing a linter that checks nothing).
    let bare = std::process::Command::new(&actionlint)
        .current_dir(repo_root())
        .arg("-config-file")
        .arg("/dev/null")
        .args(files)
        .output()
        .unwrap();
    assert!(
        text(&bare).contains("label \"stagex-build\" is unknown"),
        "{}",
        text(&bare)
    );

    let zizmor = require_tool("zizmor");
    let output = run_ok(
        std::process::Command::new(zizmor)
            .current_dir(repo_root())
            .args(["--offline", "--min-severity", "medium", "--format", "json"])
            .args(files),
    );
    let findings: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(findings, serde_json::json!([]), "{}", text(&output));
}

/// A new base directory adds a `build-scan` and a `publish` leg; an example
/// built on it lands in `build-apps`, which waits for `build-scan` and takes
/// the base's archive.
#[test]
fn the_catalog_drives_the_matrix_and_the_needs() {
    let checkout = copy_checkout();
    let root = checkout.path();
    let base = std::fs::read_to_string(root.join("base-static/Containerfile")).unwrap();
    add_image(root, "base-extra", &base);
    add_image(
        root,
        "examples/extra-app",
        "ARG SOURCE_DATE_EPOCH\nFROM base-extra\nENTRYPOINT []\n",
    );
    let output = xtask(&["--root", root.to_str().unwrap(), "workflows"]);
    assert!(output.status.success(), "{}", text(&output));
    let build = workflow(root, "build.yml");
    let legs = |job: &str| -> Vec<String> {
        build["jobs"][job]["strategy"]["matrix"]["include"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|leg| leg["image"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(legs("build-scan").contains(&"base-extra".to_string()));
    assert!(legs("publish").contains(&"base-extra".to_string()));
    assert!(!legs("build-scan").contains(&"extra-app".to_string()));
    assert!(legs("build-apps").contains(&"extra-app".to_string()));
    let app_leg = build["jobs"]["build-apps"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|leg| leg["image"] == "extra-app")
        .unwrap()
        .clone();
    assert_eq!(app_leg["builds-on"], "base-extra");
    assert_eq!(
        build["jobs"]["build-apps"]["needs"],
        serde_yaml::from_str::<serde_yaml::Value>("[xtask, build-scan]").unwrap()
    );
    let downloads: Vec<&str> = build["jobs"]["build-apps"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|step| step["with"]["name"].as_str())
        .collect();
    assert!(downloads.contains(&"image-base-extra"), "{downloads:?}");
    // The graph says so too.
    let output = xtask(&["--root", root.to_str().unwrap(), "workflows", "--graph"]);
    assert!(
        text(&output).contains("extra-app (on base-extra)"),
        "{}",
        text(&output)
    );
}

/// The shell commands of every `run:` in a workflow.
fn run_lines(workflow: &serde_yaml::Value) -> Vec<String> {
    let mut lines = Vec::new();
    for (_, job) in workflow["jobs"].as_mapping().unwrap() {
        for step in job["steps"].as_sequence().unwrap() {
            if let Some(run) = step["run"].as_str() {
                for command in run.split("&&").flat_map(|c| c.split(';')) {
                    lines.push(command.trim().to_string());
                }
            }
        }
    }
    lines
}

/// No drift between the workflows and the CLI: each `xtask …` and
/// `cargo xtask …` command in them parses with the real clap definition.
#[test]
fn every_xtask_command_in_the_workflows_parses() {
    use clap::Parser as _;
    let mut parsed = 0;
    for file in ["build.yml", "check.yml", "release.yml"] {
        for line in run_lines(&workflow(&repo_root(), file)) {
            let args = if let Some(rest) = line.strip_prefix("cargo xtask ") {
                rest
            } else if let Some(rest) = line.strip_prefix("xtask ") {
                rest
            } else {
                continue;
            };
            let args = args
                .replace("$IMAGE", "base-go")
                .replace("$STAGEX_MIRROR", "registry.example/stagex")
                .replace("$REGISTRY_PREFIX", "registry.example/images")
                .replace("$RELEASE", "2026.03.0-1")
                .replace('"', "");
            assert!(
                !args.contains('$'),
                "{file}: a variable the test does not know: {line}"
            );
            let argv = std::iter::once("cargo xtask").chain(args.split_whitespace());
            if let Err(error) = xtask::cli::Cli::try_parse_from(argv) {
                panic!("{file}: `{line}` does not parse: {error}");
            }
            parsed += 1;
        }
    }
    assert!(parsed >= 12, "only {parsed} xtask commands found");
}

/// A hand-written workflow beside the generated ones fails the check.
#[test]
fn a_hand_written_workflow_is_refused() {
    let checkout = copy_checkout();
    let root = checkout.path();
    copy_tree(&repo_root().join(".forgejo"), &root.join(".forgejo"));
    std::fs::write(root.join(".forgejo/workflows/mine.yml"), "name: mine\n").unwrap();
    let output = xtask(&["--root", root.to_str().unwrap(), "workflows", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(".forgejo/workflows/mine.yml not generated"),
        "{}",
        text(&output)
    );
}

/// The generated check workflow's lint job (and the xtask job it needs)
/// runs under act, offline, with the pinned actions' local copies: every job
/// passes, and the table says the binary was handed over.
#[test]
fn the_lint_job_runs_under_act_with_the_pinned_actions() {
    require_engine();
    require_tool("act");
    let actions = repo_root().join("../shared/actions");
    assert!(
        actions.is_dir(),
        "{}: the local copies of the pinned actions (shared/actions beside the checkout)",
        actions.display()
    );
    let output = xtask(&[
        "workflows",
        "--run-local",
        "pull_request",
        "--job",
        "lint",
        "--actions",
        actions.to_str().unwrap(),
    ]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("\nxtask  -      passed"), "{log}");
    assert!(log.contains("\nlint   -      passed"), "{log}");
    assert!(
        log.contains("handed the binary this command runs as"),
        "{log}"
    );
    assert!(
        log.contains("Success - Main Lint"),
        "the lint step ran: {log}"
    );
}
