//! `pins check` and `pins update` on the stand-in checkout, against the real
//! local registry and against release lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

/// Every file of the checkout (outside out/), by content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "out") {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, into);
            } else {
                into.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

fn states(json: &Path) -> BTreeMap<String, String> {
    read_document(json, "pins-check")
        .as_array()
        .unwrap()
        .iter()
        .map(|pin| {
            (
                pin["package"].as_str().unwrap().to_string(),
                pin["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_moved_tag_is_found_and_moved_everywhere() {
    let registry = require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    // A private copy of the stand-ins under their tags (`latest` too, for
    // the pin without one).
    let prefix = format!("{registry}/{}", crate::names::unique("pins"));
    for (package, tag, _) in standins(root) {
        let tag = tag.unwrap_or_else(|| "latest".to_string());
        push_archive(
            &standin_archive(&package),
            &format!("{prefix}/{package}:{tag}"),
        );
    }
    let json = root.join("pins.json");
    let check = |root: &Path| {
        xtask_in(
            root,
            &[
                "pins",
                "check",
                "--registry",
                &prefix,
                "--json",
                json.to_str().unwrap(),
            ],
        )
    };
    let output = check(root);
    assert!(output.status.success(), "{}", text(&output));

    // core-musl:1.2.5 now names other bytes.
    let moved = push_archive(
        &standin_archive("core-busybox"),
        &format!("{prefix}/core-musl:1.2.5"),
    );
    let output = check(root);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let found = states(&json);
    let outdated: Vec<&String> = found
        .iter()
        .filter(|(_, state)| *state != "current")
        .map(|(package, _)| package)
        .collect();
    assert_eq!(outdated, ["core-musl"], "{found:?}");

    let output = xtask_in(root, &["pins", "update", "--registry", &prefix]);
    assert!(output.status.success(), "{}", text(&output));
    let base = std::fs::read_to_string(root.join("base/Containerfile")).unwrap();
    assert!(base.contains(&format!("core-musl:1.2.5@{moved}")), "{base}");
    let digests = std::fs::read_to_string(root.join("DIGESTS.md")).unwrap();
    assert!(
        digests.contains(moved.trim_start_matches("sha256:")),
        "{digests}"
    );
    let output = xtask_in(root, &["lint"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = check(root);
    assert!(output.status.success(), "{}", text(&output));
}

/// A release list in which one package moved: found, moved, and the
/// checkout now pins against that release.
#[test]
fn moving_to_a_release_is_one_command_and_all_or_nothing() {
    let checkout = demo_checkout();
    let root = checkout.path();
    let current = root.join("stagex-release/2026.03.0");
    let next = tempfile::tempdir().unwrap();
    let release = next.path().join("release-2026.04.0-digests");
    copy_tree(&current, &release);
    let new_hex = "e".repeat(64);
    let mut old_hex = String::new();
    for file in ["digests/core.txt", "versions.tsv"] {
        let path = release.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited: String = text
            .lines()
            .map(|line| {
                if line.contains("core-busybox") {
                    let hex = line
                        .split(|c: char| !c.is_ascii_hexdigit())
                        .find(|w| w.len() == 64)
                        .unwrap();
                    old_hex = hex.to_string();
                    format!(
                        "{}\n",
                        line.replace(hex, &new_hex).replace("1.37.0", "1.37.1")
                    )
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(&path, edited).unwrap();
    }
    assert_eq!(old_hex.len(), 64);
    let list = release.to_str().unwrap();
    let output = xtask_in(root, &["pins", "check", "--release-list", list]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("core-busybox"), "{}", text(&output));

    // A release name that is a path is refused before anything is read.
    let before = snapshot(root);
    let output = xtask_in(
        root,
        &[
            "pins",
            "update",
            "--to-release",
            list,
            "--release-name",
            "../x",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(snapshot(root), before, "a file changed");
    // Only one package of a release whose others moved too: refused whole.
    let output = xtask_in(
        root,
        &[
            "pins",
            "update",
            "--to-release",
            list,
            "--package",
            "core-musl",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("core-busybox would stay outside it"),
        "{}",
        text(&output)
    );
    assert_eq!(snapshot(root), before, "a file changed");

    // A Containerfile that cannot be written: nothing changes at all.
    let file = root.join("base/Containerfile");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let output = xtask_in(root, &["pins", "update", "--to-release", list]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("read-only: nothing was changed"),
        "{}",
        text(&output)
    );
    assert_eq!(snapshot(root), before, "a file changed");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    // A write that fails after the first files were written (the release
    // folder is a file, so its lists cannot go there; the Containerfiles
    // come first): every file written is put back (guards the roll_back of
    // `pins update`, which the checks above never reach).
    let blocker = root.join("stagex-release/2026.04.0");
    std::fs::write(&blocker, "in the way\n").unwrap();
    let before = snapshot(root);
    let output = xtask_in(root, &["pins", "update", "--to-release", list]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("pins update: every file is as it was"),
        "{}",
        text(&output)
    );
    assert_eq!(snapshot(root), before, "a file changed");
    std::fs::remove_file(&blocker).unwrap();

    let output = xtask_in(root, &["pins", "update", "--to-release", list]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("moved core-busybox: 1.37.0@"),
        "{}",
        text(&output)
    );
    let base = std::fs::read_to_string(&file).unwrap();
    assert!(
        base.contains(&format!("core-busybox:1.37.1@sha256:{new_hex}")),
        "{base}"
    );
    assert!(!base.contains(&old_hex));
    assert_eq!(
        std::fs::read_to_string(root.join("stagex-release/RELEASE")).unwrap(),
        "2026.04.0\n"
    );
    let output = xtask_in(root, &["lint"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = xtask_in(
        root,
        &[
            "pins",
            "check",
            "--release-list",
            root.join("stagex-release/2026.04.0").to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
}

/// renovate.json is valid for Renovate itself, and its regex manager finds
/// every StageX pin of every Containerfile (node runs Renovate's own regex
/// flavour, JavaScript's).
#[test]
fn renovate_config_is_valid_and_sees_every_pin() {
    let validator = require_tool("renovate-config-validator");
    let output = run_ok(
        std::process::Command::new(&validator)
            .arg("--strict")
            .current_dir(repo_root()),
    );
    assert!(
        text(&output).contains("Config validated successfully"),
        "{}",
        text(&output)
    );
    // A typo is caught: the validator is not a no-op.
    let scratch = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo_root().join("renovate.json")).unwrap();
    std::fs::write(
        scratch.path().join("renovate.json"),
        config.replace("\"groupName\"", "\"groupNam\""),
    )
    .unwrap();
    let output = std::process::Command::new(&validator)
        .arg("--strict")
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", text(&output));

    let node = require_tool("node");
    let script = r#"
const fs = require('fs');
const config = JSON.parse(fs.readFileSync('renovate.json', 'utf8'));
const pattern = new RegExp(config.customManagers[0].matchStrings[0], 'g');
let count = 0;
for (const file of process.argv.slice(1)) {
  count += [...fs.readFileSync(file, 'utf8').matchAll(pattern)].length;
}
console.log(count);
"#;
    let catalog = xtask::model::catalog::Catalog::load(&repo_root()).unwrap();
    let files: Vec<String> = catalog
        .images
        .iter()
        .map(|image| image.containerfile_path())
        .collect();
    let pins: usize = catalog
        .images
        .iter()
        .map(|image| image.stagex_inputs().count())
        .sum();
    let output = run_ok(
        std::process::Command::new(node)
            .arg("-e")
            .arg(script)
            .args(&files)
            .current_dir(repo_root()),
    );
    let matched: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(matched, pins, "Renovate's regex and the catalog disagree");
}
