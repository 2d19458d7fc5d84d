//! `cargo xtask k8s`: the committed manifests are what the settings make,
//! Kubernetes' own schemas accept them, the Kyverno policy fits Kyverno's
//! CRD schema, and `run-example` runs an example on the real engine.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn generated(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{dir} is empty");
    files
}

#[test]
fn the_committed_manifests_are_up_to_date_and_a_hand_edit_is_caught() {
    let output = xtask(&["k8s", "--check"]);
    assert!(output.status.success(), "{}", text(&output));
    // No key is committed yet: the check says so rather than failing.
    if !repo_root().join("cosign.pub").exists() {
        assert!(
            text(&output).contains("note: cosign.pub is missing"),
            "{}",
            text(&output)
        );
    }

    let checkout = copy_checkout();
    let root = checkout.path();
    let deployment = root.join("k8s/forgejo-runner/stagex-build.yaml");
    let edited = std::fs::read_to_string(&deployment)
        .unwrap()
        .replace("replicas: 1", "replicas: 3");
    std::fs::write(&deployment, edited).unwrap();
    let output = xtask(&["--root", root.to_str().unwrap(), "k8s", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = text(&output);
    assert!(report.contains("-  replicas: 3"), "{report}");
    assert!(report.contains("+  replicas: 1"), "{report}");
    assert!(report.contains("run `cargo xtask k8s`"), "{report}");

    // `all` runs the same check, as its own step.
    let output = xtask(&[
        "--root",
        root.to_str().unwrap(),
        "all",
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
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("all failed for: k8s"),
        "{}",
        text(&output)
    );

    // A manifest written beside the generated ones is refused.
    let output = xtask(&["--root", root.to_str().unwrap(), "k8s"]);
    assert!(output.status.success(), "{}", text(&output));
    std::fs::write(root.join("policies/kyverno/mine.yaml"), "kind: x\n").unwrap();
    let output = xtask(&["--root", root.to_str().unwrap(), "k8s", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("policies/kyverno/mine.yaml not generated"));
}

/// A key written to cosign.pub ends up in the policy on regeneration.
#[test]
fn the_policy_embeds_cosign_pub() {
    let checkout = copy_checkout();
    let root = checkout.path();
    let key = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEk8nGmQPnJ1+fZSK1Vj5kM3pTvYQe\n-----END PUBLIC KEY-----\n";
    std::fs::write(root.join("cosign.pub"), key).unwrap();
    let output = xtask(&["--root", root.to_str().unwrap(), "k8s", "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let output = xtask(&["--root", root.to_str().unwrap(), "k8s"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        !text(&output).contains("cosign.pub is missing"),
        "{}",
        text(&output)
    );
    let policy =
        std::fs::read_to_string(root.join("policies/kyverno/stagex-images-signed.yaml")).unwrap();
    assert!(
        policy.contains("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEk8nGmQPnJ1"),
        "{policy}"
    );
    assert!(!policy.contains("MISSING"), "{policy}");
    check_policy(&root.join("policies/kyverno/stagex-images-signed.yaml"));
}

#[test]
fn kubernetes_validate_accepts_every_runner_manifest() {
    let validate = require_tool("kubernetes-validate");
    for file in generated("k8s/forgejo-runner") {
        let output = Command::new(&validate)
            .arg("--strict")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            text(&output)
        );
        assert!(text(&output).contains("passed"), "{}", text(&output));
    }
    // It does reject what Kubernetes would: a field that does not exist.
    let broken = tempfile::tempdir().unwrap();
    let path = broken.path().join("deployment.yaml");
    let text_in = std::fs::read_to_string(repo_root().join("k8s/forgejo-runner/stagex-build.yaml"))
        .unwrap()
        .replace(
            "automountServiceAccountToken: false\n      containers:",
            "automountServiceAccountToken: false\n      containerz: []\n      containers:",
        );
    assert!(text_in.contains("containerz"));
    std::fs::write(&path, text_in).unwrap();
    let output = Command::new(&validate)
        .arg("--strict")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", text(&output));
}

/// check-jsonschema against the excerpt of Kyverno's CRD schema (testdata).
fn check_policy(policy: &Path) -> std::process::Output {
    let check = require_tool("check-jsonschema");
    let schema = repo_root().join("xtask/tests/testdata/kyverno/clusterpolicy-v1.schema.json");
    Command::new(check)
        .arg("--schemafile")
        .arg(schema)
        .arg(policy)
        .output()
        .unwrap()
}

#[test]
fn the_policy_fits_kyvernos_schema() {
    for file in generated("policies/kyverno") {
        let output = check_policy(&file);
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            text(&output)
        );
    }
    // The schema is not vacuous: a misspelt field and a wrong enum fail it.
    let committed =
        std::fs::read_to_string(repo_root().join("policies/kyverno/stagex-images-signed.yaml"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, why) in [
        (
            "imageReferences:",
            "imageReference:",
            "'imageReference' was unexpected",
        ),
        (
            "failureAction: Enforce",
            "failureAction: Deny",
            "'Deny' is not one of",
        ),
        (
            "ignoreTlog: true",
            "ignoreTLog: true",
            "'ignoreTLog' was unexpected",
        ),
    ] {
        let path = dir.path().join("policy.yaml");
        assert!(committed.contains(from), "{from}");
        std::fs::write(&path, committed.replacen(from, to, 1)).unwrap();
        let output = check_policy(&path);
        assert!(!output.status.success(), "{to}: {}", text(&output));
        assert!(text(&output).contains(why), "{}", text(&output));
    }
}

/// The stand-in example goes through the same code path as the real ones:
/// built (with its base), loaded into the engine, run, its output compared.
#[test]
fn run_example_prints_the_expected_line_and_a_broken_example_shows_its_log() {
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["run-example", "hello"]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("[hello] printed the expected output: hello from the demo"),
        "{log}"
    );

    // Another expectation: the same run fails, showing both lines.
    std::fs::write(root.join("examples/hello/expected-output"), "goodbye\n").unwrap();
    let output = xtask_in(root, &["run-example", "hello"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("printed\n  hello from the demo"),
        "{}",
        text(&output)
    );

    // A step that fails: exit 1, and the end of its build log.
    let base = std::fs::read_to_string(root.join("examples/hello/Containerfile")).unwrap();
    let broken = base.replace(
        "RUN [\"/bin/sh\", \"-c\", \"echo hello from the demo > /home/user/hello.txt\"]",
        "RUN [\"/bin/sh\", \"-c\", \"echo this example is broken >&2; exit 7\"]",
    );
    assert_ne!(broken, base);
    add_image(root, "examples/broken", &broken);
    std::fs::write(root.join("examples/broken/expected-output"), "never\n").unwrap();
    let output = xtask_in(root, &["run-example", "broken"]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("`broken` did not build"), "{log}");
    assert!(log.contains("--- the end of"), "{log}");
    assert!(log.contains("this example is broken"), "{log}");

    // An image that is not an example is a usage error.
    let output = xtask_in(root, &["run-example", "base"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}
