//! `cargo xtask k8s`: the committed manifests are what the settings make,
//! Kubernetes' own schemas accept them, the Kyverno policy fits Kyverno's
//! CRD schema, and `run-example` runs an example on the real engine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

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
}

#[test]
fn kubernetes_validate_accepts_every_runner_manifest() {
    let validate = require_tool("kubernetes-validate");
    let mut files = generated("k8s/forgejo-runner");
    files.extend(generated("policies/kubernetes"));
    for file in files {
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

/// The real CRD's schema of one served version (`openAPIV3Schema`, from
/// testdata/kyverno/, unmodified upstream files), as a JSON Schema file in
/// `dir` that treats an unknown field as the mistake it is: the API server
/// would prune it silently, so every object that lists its properties is
/// closed (`additionalProperties: false`) unless it keeps unknown fields.
fn crd_schema(dir: &Path, crd: &str, version: &str) -> PathBuf {
    fn close(node: &mut serde_json::Value) {
        match node {
            serde_json::Value::Object(map) => {
                let keeps = map.get("x-kubernetes-preserve-unknown-fields")
                    == Some(&serde_json::Value::Bool(true));
                if map.contains_key("properties")
                    && !map.contains_key("additionalProperties")
                    && !keeps
                {
                    map.insert(
                        "additionalProperties".into(),
                        serde_json::Value::Bool(false),
                    );
                }
                for value in map.values_mut() {
                    close(value);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    let path = repo_root().join("xtask/tests/testdata/kyverno").join(crd);
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let served = parsed["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version && v["served"] == true)
        .unwrap_or_else(|| panic!("{} serves no {version}", path.display()))
        .clone();
    let mut schema = served["schema"]["openAPIV3Schema"].clone();
    close(&mut schema);
    let out = dir.join(format!("{crd}-{version}.schema.json"));
    std::fs::write(&out, serde_json::to_vec(&schema).unwrap()).unwrap();
    out
}

fn check_schema(schema: &Path, document: &Path) -> std::process::Output {
    Command::new(require_tool("check-jsonschema"))
        .arg("--schemafile")
        .arg(schema)
        .arg(document)
        .output()
        .unwrap()
}

/// The image policy as each API renders it, with a two-key set.
fn policies(dir: &Path) -> Vec<(xtask::model::settings::PolicyApi, PathBuf)> {
    use xtask::model::settings::{PolicyApi, Site};
    let keys = vec![
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEk8nGmQPnJ1\n-----END PUBLIC KEY-----\n".to_string(),
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnextkey\n-----END PUBLIC KEY-----\n".to_string(),
    ];
    [PolicyApi::ClusterPolicy, PolicyApi::ImageValidatingPolicy]
        .into_iter()
        .map(|api| {
            let site = Site {
                policy_api: api,
                ..Site::ours()
            };
            let (_, text) = xtask::commands::k8s::files(&site, &keys)
                .unwrap()
                .into_iter()
                .find(|(path, _)| path == "policies/kyverno/stagex-images-signed.yaml")
                .unwrap();
            let path = dir.join(format!("{api:?}.yaml"));
            std::fs::write(&path, text).unwrap();
            (api, path)
        })
        .collect()
}

/// Both APIs against the real CRDs: ClusterPolicy against Kyverno 1.13.0's
/// and 1.18.2's, ImageValidatingPolicy against 1.18.2's `v1`; the committed
/// policy too; and the schemas are not vacuous.
#[test]
fn both_policy_apis_fit_kyvernos_real_crds() {
    use xtask::model::settings::PolicyApi;
    let dir = tempfile::tempdir().unwrap();
    let cluster_policy = [
        crd_schema(dir.path(), "v1.13.0-kyverno.io_clusterpolicies.yaml", "v1"),
        crd_schema(dir.path(), "v1.18.2-kyverno.io_clusterpolicies.yaml", "v1"),
    ];
    let image_validating = [crd_schema(
        dir.path(),
        "v1.18.2-policies.kyverno.io_imagevalidatingpolicies.yaml",
        "v1",
    )];
    let schemas = |api: PolicyApi| -> Vec<PathBuf> {
        match api {
            PolicyApi::ClusterPolicy => cluster_policy.to_vec(),
            PolicyApi::ImageValidatingPolicy => image_validating.to_vec(),
        }
    };
    let mut checked = 0;
    for (api, policy) in policies(dir.path()) {
        for schema in schemas(api) {
            let output = check_schema(&schema, &policy);
            assert!(
                output.status.success(),
                "{api:?} against {}: {}",
                schema.display(),
                text(&output)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
    for file in generated("policies/kyverno") {
        for schema in schemas(xtask::model::settings::POLICY_API) {
            let output = check_schema(&schema, &file);
            assert!(
                output.status.success(),
                "{}: {}",
                file.display(),
                text(&output)
            );
        }
    }
    // Not vacuous: a misspelt field or a wrong enum fails each schema.
    let broken = |api: PolicyApi, from: &str, to: &str, why: &str| {
        let (_, path) = policies(dir.path())
            .into_iter()
            .find(|(a, _)| *a == api)
            .unwrap();
        let original = std::fs::read_to_string(&path).unwrap();
        assert!(original.contains(from), "{from}");
        let mutated = dir.path().join("mutated.yaml");
        std::fs::write(&mutated, original.replacen(from, to, 1)).unwrap();
        for schema in schemas(api) {
            let output = check_schema(&schema, &mutated);
            assert!(!output.status.success(), "{to} passed {}", schema.display());
            assert!(text(&output).contains(why), "{}", text(&output));
        }
    };
    broken(
        PolicyApi::ClusterPolicy,
        "imageReferences:",
        "imageReference:",
        "'imageReference' was unexpected",
    );
    broken(
        PolicyApi::ClusterPolicy,
        "failureAction: Enforce",
        "failureAction: Deny",
        "'Deny' is not one of",
    );
    broken(
        PolicyApi::ClusterPolicy,
        "ignoreTlog: true",
        "ignoreTLog: true",
        "'ignoreTLog' was unexpected",
    );
    broken(
        PolicyApi::ImageValidatingPolicy,
        "insecureIgnoreTlog: true",
        "ignoreTlog: true",
        "'ignoreTlog' was unexpected",
    );
    broken(
        PolicyApi::ImageValidatingPolicy,
        "- Deny",
        "- Refuse",
        "'Refuse' is not one of",
    );
    broken(
        PolicyApi::ImageValidatingPolicy,
        "matchImageReferences:",
        "imageReferences:",
        "'imageReferences' was unexpected",
    );
}

/// The registration, written by the init container's own command, is one
/// the runner (uid 1000, no capabilities, read-only root) can rewrite, as it
/// does after declaring itself; the `cp` the manifests used before kept the
/// Secret's 0440 and the rewrite failed. Both on the real engine.
#[test]
fn the_runner_can_rewrite_its_registration_as_uid_1000() {
    require_engine();
    let busybox = standin_root().join("bin/busybox");
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(&busybox, context.path().join("busybox")).unwrap();
    std::fs::write(context.path().join("registration"), "{\"uuid\":\"test\"}\n").unwrap();
    // The Secret as the kubelet mounts it with fsGroup 1000 and defaultMode 0440.
    std::fs::write(
        context.path().join("Containerfile"),
        "FROM scratch\nCOPY busybox /usr/bin/busybox\nCOPY --chown=0:1000 --chmod=0440 registration /etc/forgejo-runner/registration/.runner\n",
    )
    .unwrap();
    let tag = format!("xtask-wt23-registration-{}:test", std::process::id());
    run_ok(
        Command::new("docker")
            .args(["build", "--quiet", "--tag", &tag, "--file"])
            .arg(context.path().join("Containerfile"))
            .arg(context.path()),
    );
    let unprivileged = [
        "--user",
        "1000:1000",
        "--cap-drop",
        "ALL",
        "--read-only",
        "--security-opt",
        "no-new-privileges",
    ];
    // One pod: /data an empty directory (0777, as an emptyDir), the init
    // container's command, then the runner's rewrite (open with O_TRUNC, as
    // Go's os.Create), each as uid 1000 without capabilities.
    let run = |init: &[String], name: &str| -> std::process::Output {
        let volume = format!("xtask-wt23-data-{}-{name}", std::process::id());
        let mount = format!("{volume}:/data");
        let docker = |args: &[&str]| {
            Command::new("docker")
                .args(["run", "--rm", "--volume", &mount])
                .args(args)
                .output()
                .unwrap()
        };
        let made = docker(&[&tag, "/usr/bin/busybox", "chmod", "0777", "/data"]);
        assert!(made.status.success(), "{}", text(&made));
        let mut init_args: Vec<&str> = unprivileged.to_vec();
        init_args.push(&tag);
        init_args.extend(init.iter().map(String::as_str));
        let copied = docker(&init_args);
        assert!(copied.status.success(), "{init:?}: {}", text(&copied));
        let mut rewrite: Vec<&str> = unprivileged.to_vec();
        rewrite.extend([
            tag.as_str(),
            "/usr/bin/busybox",
            "sh",
            "-c",
            "stat -c 'mode %a uid %u' /data/.runner && echo '{\"uuid\":\"declared\"}' > /data/.runner && cat /data/.runner",
        ]);
        let output = docker(&rewrite);
        let _ = Command::new("docker")
            .args(["volume", "rm", "--force", &volume])
            .output();
        output
    };
    // Before: the copy keeps 0440, and the runner cannot rewrite it.
    let before: Vec<String> = [
        "/usr/bin/busybox",
        "cp",
        "/etc/forgejo-runner/registration/.runner",
        "/data/.runner",
    ]
    .map(String::from)
    .to_vec();
    let output = run(&before, "before");
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("mode 440 uid 1000"),
        "{}",
        text(&output)
    );
    assert!(
        text(&output).contains("Permission denied"),
        "{}",
        text(&output)
    );
    // After: the generated command writes it 0600, and the rewrite works.
    let output = run(&xtask::commands::k8s::plan::registration_command(), "after");
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("mode 600 uid 1000"),
        "{}",
        text(&output)
    );
    assert!(text(&output).contains("declared"), "{}", text(&output));
    let _ = Command::new("docker")
        .args(["image", "rm", "--force", &tag])
        .output();
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
