//! build, verify-reproducible, push and demo on the real engine and registry,
//! with stand-in StageX images.

mod common;

use std::path::Path;

use common::*;

fn add_image(checkout: &Path, dir: &str, containerfile: &str) {
    std::fs::create_dir_all(checkout.join(dir)).unwrap();
    std::fs::write(checkout.join(dir).join("Containerfile"), containerfile).unwrap();
}

/// A Containerfile like the fixture's images: its `ARG`s, its pinned
/// stand-in busybox, and one exec-form RUN on a scratch image holding it.
fn busybox_image(checkout: &Path, run: &str) -> String {
    let base = std::fs::read_to_string(checkout.join("base/Containerfile")).unwrap();
    let header: String = base
        .lines()
        .filter(|l| l.starts_with("ARG"))
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    let busybox = base.lines().find(|l| l.contains("core-busybox")).unwrap();
    format!("{header}{busybox}\nFROM scratch\nCOPY --from=busybox . /\nRUN {run}\n")
}

#[test]
fn fixture_images_build_and_the_dependent_gets_its_base_from_the_archive() {
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build", "--jobs", "2"]);
    assert!(output.status.success(), "{}", text(&output));
    let report = text(&output);
    for image in ["base", "base-static", "hello"] {
        assert!(root.join(format!("out/{image}.tar")).is_file(), "{image}");
        let record = read_json(&root.join(format!("out/{image}.json")));
        assert_eq!(record["image"], image);
        assert_eq!(
            record["archive_sha256"],
            sha256_file(&root.join(format!("out/{image}.tar")))
        );
        assert_eq!(record["source_date_epoch"], 1700000000);
        assert!(report.contains(&format!("build  {image}")) || report.contains(image));
    }
    let base = read_json(&root.join("out/base.json"));
    let hello = read_json(&root.join("out/hello.json"));
    assert_eq!(hello["built_on"][0]["image"], "base");
    assert_eq!(
        hello["built_on"][0]["manifest_digest"],
        base["manifest_digest"]
    );
    assert_eq!(base["stagex_inputs"].as_array().unwrap().len(), 4);
    // base came from its OCI archive: BuildKit loaded it from the client, and
    // no registry has an image called `base` to pull.
    let log = std::fs::read_to_string(root.join("out/hello.log")).unwrap();
    assert!(log.contains("[context base] OCI load from client"), "{log}");
    assert!(log.contains("oci-layout://"), "{log}");
    let registry = require_engine();
    let (status, _) = registry_get(&registry, "/v2/library/base/tags/list", "*/*");
    assert_eq!(status, 404);

    // The plan is printed, not run, with --dry-run.
    let fresh = demo_checkout();
    let output = xtask_in(fresh.path(), &["build", "hello", "--dry-run"]);
    assert!(output.status.success(), "{}", text(&output));
    let plan = String::from_utf8(output.stdout).unwrap();
    assert!(
        plan.contains("# base\n") && plan.contains("# hello (after base)"),
        "{plan}"
    );
    assert!(plan.contains("--network=none"), "{plan}");
    assert!(!fresh.path().join("out").exists());
}

#[test]
fn two_builds_agree_and_verify_reproducible_passes() {
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = xtask_in(root, &["verify-reproducible"]);
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    for image in ["base", "base-static", "hello"] {
        let record = read_json(&root.join(format!("out/{image}.json")));
        let digest = record["manifest_digest"].as_str().unwrap();
        assert!(
            report.contains(&format!("[{image}] reproducible: {digest}")),
            "{report}"
        );
        let first = root.join(format!("out/reproduce/{image}.first.tar"));
        let second = root.join(format!("out/reproduce/{image}.second.tar"));
        assert_eq!(sha256_file(&first), sha256_file(&second), "{image}");
    }
}

#[test]
fn a_non_reproducible_image_is_caught_and_the_file_named() {
    let checkout = demo_checkout();
    let root = checkout.path();
    add_image(
        root,
        "stamp",
        &busybox_image(
            root,
            r#"["/usr/bin/busybox", "sh", "-c", "date +%s%N > /stamp.txt"]"#,
        ),
    );
    let output = xtask_in(root, &["verify-reproducible", "stamp"]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("[stamp] NOT reproducible"), "{report}");
    assert!(report.contains("~ stamp.txt: content sha256"), "{report}");
    assert!(report.contains("made by `RUN"), "{report}");
    assert!(report.contains("1 file(s) differ"), "{report}");
}

#[test]
fn push_keeps_the_digest_and_refuses_a_tampered_archive() {
    let registry = require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build", "base"]);
    assert!(output.status.success(), "{}", text(&output));
    let record = read_json(&root.join("out/base.json"));
    let digest = record["manifest_digest"].as_str().unwrap();
    let repository = format!("push-test-{}", std::process::id());

    let target = format!("{registry}/{repository}/base:v1");
    let output = xtask_in(root, &["push", "base", "--to", &target]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains(digest), "{}", text(&output));

    // Pulled back by digest: the very bytes of the archive's manifest.
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let (status, pulled) = registry_get(
        &registry,
        &format!("/v2/{repository}/base/manifests/{digest}"),
        accept,
    );
    assert_eq!(status, 200);
    let unpacked = tempfile::tempdir().unwrap();
    run_ok(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(root.join("out/base.tar"))
            .arg("-C")
            .arg(unpacked.path()),
    );
    let local = std::fs::read(
        unpacked
            .path()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(pulled, local);

    // A second push uploads nothing new.
    let output = xtask_in(
        root,
        &[
            "push",
            "base",
            "--to",
            &format!("{registry}/{repository}/base:v2"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("0 blob(s) uploaded"),
        "{}",
        text(&output)
    );

    // One byte changed after the build: refused, nothing pushed.
    let mut bytes = std::fs::read(root.join("out/base.tar")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(root.join("out/base.tar"), bytes).unwrap();
    let tampered = format!("{registry}/{repository}/tampered:v1");
    let output = xtask_in(root, &["push", "base", "--to", &tampered]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("changed after it was built"),
        "{}",
        text(&output)
    );
    let (status, _) = registry_get(
        &registry,
        &format!("/v2/{repository}/tampered/tags/list"),
        "*/*",
    );
    assert_eq!(status, 404, "nothing reached the registry");
}

#[test]
fn a_broken_image_skips_its_dependents_only() {
    let checkout = demo_checkout();
    let root = checkout.path();
    add_image(
        root,
        "broken",
        &busybox_image(root, r#"["/usr/bin/busybox", "false"]"#),
    );
    add_image(
        root,
        "examples/after-broken",
        "ARG SOURCE_DATE_EPOCH\nFROM broken\n",
    );
    let output = xtask_in(root, &["build"]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    let row = |image: &str| {
        report
            .lines()
            .find(|l| l.starts_with("build ") && l.split_whitespace().nth(1) == Some(image))
            .unwrap_or_else(|| panic!("no row for {image}:\n{report}"))
            .to_string()
    };
    assert!(row("broken").contains("FAILED"), "{report}");
    assert!(row("after-broken").contains("skipped"), "{report}");
    assert!(
        row("after-broken").contains("`broken` did not build"),
        "{report}"
    );
    for image in ["base", "base-static", "hello"] {
        assert!(row(image).contains("passed"), "{report}");
    }
    assert!(!root.join("out/broken.tar").exists());
    assert!(!root.join("out/broken.tar.partial").exists());
    assert!(!root.join("out/after-broken.json").exists());
}

#[test]
fn the_demo_runs_the_whole_pipeline_and_reports_json() {
    require_engine();
    let dir = tempfile::tempdir_in(repo_root().join("target")).unwrap();
    let json = dir.path().join("demo.json");
    let output = xtask(&[
        "demo",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let report = read_json(&json);
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for image in images {
        assert_eq!(image["reproducible"], true, "{image}");
        assert_eq!(image["pulled_back_identical"], true, "{image}");
        let pushed = image["pushed"].as_str().unwrap();
        assert!(
            pushed.ends_with(image["digest"].as_str().unwrap()),
            "{image}"
        );
        assert!(Path::new(image["archive"].as_str().unwrap()).is_file());
    }
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in ["lint", "build", "verify-reproducible", "push"] {
        assert!(steps.contains(&step), "{steps:?}");
    }
}

#[test]
fn all_runs_every_step_on_the_fixture() {
    let checkout = demo_checkout();
    let output = xtask_in(checkout.path(), &["all"]);
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    for step in ["lint", "digests", "build", "verify-reproducible"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(step) && l.contains("passed")),
            "{step}:\n{report}"
        );
    }
    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("verify-reproducible ") && l.contains("passed"))
            .count(),
        3,
        "{report}"
    );
}
