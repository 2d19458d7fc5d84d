//! build, verify-reproducible, push and demo on the real engine and registry,
//! with stand-in StageX images.

use std::path::Path;

use crate::common::*;

#[test]
fn fixture_images_build_and_the_dependent_gets_its_base_from_the_archive() {
    let checkout = demo_checkout();
    let root = checkout.path();
    let json = root.join("build-report.json");
    let output = xtask_in(
        root,
        &["build", "--jobs", "2", "--json", json.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", text(&output));
    let built = reports(&json);
    let images: Vec<&str> = built.iter().map(|r| r.image.as_str()).collect();
    assert_eq!(
        images,
        ["base", "base-static", "hello"],
        "in dependency order"
    );
    for report in &built {
        let image = report.image.as_str();
        assert_eq!(report.step, "build");
        assert_eq!(report.outcome, xtask::report::Outcome::Passed, "{image}");
        let record = record(root, image);
        assert_eq!(report.digest.as_ref(), Some(&record.manifest_digest));
        assert_eq!(record.image, image);
        assert_eq!(
            record.archive_sha256,
            sha256_file(&root.join(format!("out/{image}/image.tar")))
        );
        assert_eq!(record.source_date_epoch, 1700000000);
    }
    let base = record(root, "base");
    let hello = record(root, "hello");
    assert_eq!(hello.built_on.len(), 1);
    assert_eq!(hello.built_on[0].image, "base");
    assert_eq!(hello.built_on[0].manifest_digest, base.manifest_digest);
    assert_eq!(base.stagex_inputs.len(), 4);
    // base came from its OCI archive: BuildKit loaded it from the client, and
    // no registry has an image called `base` to pull.
    let log = std::fs::read_to_string(root.join("out/hello/build.log")).unwrap();
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
    let json = root.join("verify.json");
    let output = xtask_in(
        root,
        &[
            "verify-reproducible",
            "--all",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    let verified = reports(&json);
    assert_eq!(verified.len(), 3, "{verified:?}");
    for image in ["base", "base-static", "hello"] {
        let digest = record(root, image).manifest_digest;
        let row = verified.iter().find(|r| r.image == image).unwrap();
        assert_eq!(row.outcome, xtask::report::Outcome::Passed, "{row:?}");
        assert_eq!(row.digest.as_deref(), Some(digest.as_str()));
        assert!(
            report.contains(&format!("[{image}] reproducible: {digest}")),
            "{report}"
        );
        let first = root.join(format!("out/{image}/reproduce/first/image.tar"));
        let second = root.join(format!("out/{image}/reproduce/second/image.tar"));
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
            // 16 random bytes: two builds always differ (a clock reading
            // would not within one second, and busybox's date has no %N).
            &[
                r#"["/usr/bin/busybox", "dd", "if=/dev/urandom", "of=/stamp.txt", "bs=16", "count=1"]"#,
            ],
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
    let digest = record(root, "base").manifest_digest;
    let digest = digest.as_str();
    let repository = crate::names::unique("push-test");

    let target = format!("{registry}/{repository}/base:v1");
    // Not cleared to ship: no gate ran on these bytes; each is named with
    // the command that runs it, and nothing reaches the registry.
    let output = xtask_in(root, &["push", "base", "--to", &target]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    for gate in ["sbom", "scan", "malcontent"] {
        assert!(
            log.contains(&format!("{gate} has not run (`cargo xtask {gate} base`)")),
            "{log}"
        );
    }
    assert!(log.contains("--allow-ungated"), "{log}");
    let (status, _) = registry_get(
        &registry,
        &format!("/v2/{repository}/base/tags/list"),
        "*/*",
    );
    assert_eq!(status, 404, "nothing pushed before the gates");
    // The SBOM gate passes; scan and malcontent (their tools are not
    // installable here) are still missing.
    let output = xtask_in(root, &["sbom", "base"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = xtask_in(root, &["push", "base", "--to", &target]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(!log.contains("sbom has not run"), "{log}");
    assert!(log.contains("scan has not run"), "{log}");
    // --allow-ungated ships, saying what it ships without.
    let output = xtask_in(root, &["push", "base", "--to", &target, "--allow-ungated"]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains(digest), "{log}");
    assert!(
        log.contains("warning: base ships ungated: scan has not run")
            && log.contains("warning: base ships ungated: malcontent has not run")
            && !log.contains("ungated: sbom"),
        "{log}"
    );

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
            .arg(root.join("out/base/image.tar"))
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
            "--allow-ungated",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("0 blob(s) uploaded"),
        "{}",
        text(&output)
    );

    // A corrupt layer whose archive sha256 was also rewritten into the record
    // gets past the record check; the streaming digest check refuses it before
    // the upload is complete, and no manifest is pushed.
    let pristine = std::fs::read(root.join("out/base/image.tar")).unwrap();
    let archive = xtask::oci::archive::OciArchive::open(&root.join("out/base/image.tar")).unwrap();
    let layer = archive.manifest.layers.last().unwrap().clone();
    let location = archive.blob_location(&layer.digest).unwrap();
    let mut corrupt = pristine.clone();
    let middle = (location.offset + location.size / 2) as usize;
    corrupt[middle] ^= 0xff;
    std::fs::write(root.join("out/base/image.tar"), &corrupt).unwrap();
    let mut forged = record(root, "base");
    forged.archive_sha256 = sha256_hex(&corrupt);
    forged.save(root).unwrap();
    let streamed = format!("{registry}/{repository}/streamed:v1");
    let output = xtask_in(
        root,
        &["push", "base", "--to", &streamed, "--allow-ungated"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        !text(&output).contains("retrying"),
        "a mismatch is not retried: {}",
        text(&output)
    );
    assert!(
        text(&output).contains(&format!("blob {} reads as sha256:", layer.digest))
            && text(&output).contains("not uploading it"),
        "{}",
        text(&output)
    );
    let (status, _) = registry_get(
        &registry,
        &format!("/v2/{repository}/streamed/manifests/v1"),
        accept,
    );
    assert_eq!(status, 404, "no manifest after a refused blob");
    std::fs::write(root.join("out/base/image.tar"), &pristine).unwrap();
    forged.archive_sha256 = sha256_hex(&pristine);
    forged.save(root).unwrap();

    // One byte changed after the build: refused, nothing pushed.
    let mut bytes = std::fs::read(root.join("out/base/image.tar")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(root.join("out/base/image.tar"), bytes).unwrap();
    let tampered = format!("{registry}/{repository}/tampered:v1");
    let output = xtask_in(
        root,
        &["push", "base", "--to", &tampered, "--allow-ungated"],
    );
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
        &busybox_image(root, &[r#"["/usr/bin/busybox", "false"]"#]),
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
    assert!(!root.join("out/broken/image.tar").exists());
    assert!(!root.join("out/broken/image.tar.partial").exists());
    assert!(!root.join("out/after-broken/build.json").exists());
}

#[test]
fn the_demo_runs_the_whole_pipeline_and_reports_json() {
    let registry = require_engine();
    let mut prefixes = std::collections::BTreeSet::new();
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
    let report = validated_document(&std::fs::read(&json).unwrap());
    assert_eq!(report["schema"], "xtask/demo/v1");
    let images = report["result"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for image in images {
        assert_eq!(image["reproducible"], true, "{image}");
        assert_eq!(image["pulled_back_identical"], true, "{image}");
        assert_eq!(image["signed_and_verified"], true, "{image}");
        let pushed = image["pushed"].as_str().unwrap();
        assert!(
            pushed.ends_with(image["digest"].as_str().unwrap()),
            "{image}"
        );
        assert!(Path::new(image["archive"].as_str().unwrap()).is_file());
        // Pulled back here too: the registry serves the archive's manifest
        // bytes under the reported reference (not true by construction).
        let archive =
            xtask::oci::archive::OciArchive::open(Path::new(image["archive"].as_str().unwrap()))
                .unwrap();
        let (name, digest) = pushed.split_once('@').unwrap();
        let (host, path) = name.split_once('/').unwrap();
        assert_eq!(host, registry, "{image}");
        // The demo's repository is its own per run, never a fixed one.
        assert!(path.starts_with("demo-"), "{image}");
        prefixes.insert(path.split('/').next().unwrap().to_string());
        let (status, served) = registry_get(
            &registry,
            &format!("/v2/{path}/manifests/{digest}"),
            MANIFEST_ACCEPT,
        );
        assert_eq!(status, 200, "{image}");
        assert_eq!(served, archive.manifest_bytes, "{image}");
    }
    assert_eq!(
        prefixes.len(),
        1,
        "one repository prefix per run: {prefixes:?}"
    );
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in [
        "lint",
        "digests",
        "cpes",
        "k8s",
        "build",
        "verify-reproducible",
        "sbom",
        "push",
        "sign",
        "verify",
    ] {
        assert!(steps.contains(&step), "{steps:?}");
    }
    // grype and malcontent cannot be installed here: the demo leaves their
    // gates out and says so, and push ships without them, warning per image.
    for gate in ["scan", "malcontent"] {
        let row = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == gate)
            .unwrap();
        assert_eq!(row["outcome"], "skipped", "{row}");
    }
    assert!(
        text(&output).contains("ships ungated: scan has not run"),
        "{}",
        text(&output)
    );
}

/// `all` on the fixture: every step runs; with grype and malcontent not
/// installable here, their gates are skipped, nothing ships and the run is
/// incomplete (exit 1). Skipping them by name is accepted: push ships, saying
/// which gates it ships without.
#[test]
fn all_runs_every_step_and_ships_only_what_its_gates_cleared() {
    let registry = require_engine();
    // A machine without grype and malcontent, whatever this one has.
    let without = [("PATH", path_without(&["grype", "mal"]))];
    let checkout = demo_checkout();
    let root = checkout.path();
    let json = root.join("all.json");
    let prefix = format!("{registry}/{}", crate::names::unique("all"));
    let repository = prefix.split_once('/').unwrap().1.to_string();
    // What is pushed is signed with a key pair of the test's, its public half
    // the checkout's cosign.pub.
    let keys = tempfile::tempdir().unwrap();
    let key = cosign_key_pair(keys.path(), "test", root);
    // A new key changes the admission policy that embeds it (`all` checks it).
    let regenerated = xtask_in(root, &["k8s"]);
    assert!(regenerated.status.success(), "{}", text(&regenerated));
    let without = [without[0].clone(), ("COSIGN_PASSWORD", "test".to_string())];
    let signing = ["--key", key.to_str().unwrap(), "--no-tlog"];
    let output = xtask_in_env(
        root,
        &[
            &[
                "all",
                "--push-prefix",
                &prefix,
                "--json",
                json.to_str().unwrap(),
            ][..],
            &signing[..],
        ]
        .concat(),
        &without,
    );
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("the run is incomplete: scan skipped: grype not installed (install grype"),
        "{log}"
    );
    assert!(
        log.contains("malcontent skipped: mal not installed"),
        "{log}"
    );
    let images = ["base", "base-static", "hello"];
    let rows = |json: &Path| -> Vec<(String, String, String)> {
        reports(json)
            .into_iter()
            .map(|r| {
                let outcome = match r.outcome {
                    xtask::report::Outcome::Passed => "passed",
                    xtask::report::Outcome::Failed(_) => "failed",
                    xtask::report::Outcome::Skipped(_) => "skipped",
                };
                (r.step, r.image, outcome.to_string())
            })
            .collect()
    };
    let row = |step: &str, image: &str, outcome: &str| {
        (step.to_string(), image.to_string(), outcome.to_string())
    };
    let mut expected = vec![
        row("lint", "-", "passed"),
        row("digests", "-", "passed"),
        row("cpes", "-", "passed"),
        row("k8s", "-", "passed"),
    ];
    for step in ["build", "verify-reproducible", "sbom"] {
        expected.extend(images.map(|image| row(step, image, "passed")));
    }
    expected.push(row("scan", "-", "skipped"));
    // Without mal, each filesystem is still extracted (and would fail here).
    expected.extend(images.map(|image| row("malcontent", image, "skipped")));
    expected.push(row("push", "-", "skipped"));
    expected.push(row("sign", "-", "skipped"));
    expected.push(row("verify", "-", "skipped"));
    assert_eq!(rows(&json), expected);
    let pushed = reports(&json)
        .into_iter()
        .find(|r| r.step == "push")
        .unwrap();
    assert!(
        matches!(&pushed.outcome, xtask::report::Outcome::Skipped(why) if why.starts_with("not cleared to ship")),
        "{pushed:?}"
    );
    let (status, _) = registry_get(
        &registry,
        &format!("/v2/{repository}/base/tags/list"),
        "*/*",
    );
    assert_eq!(status, 404, "nothing shipped");

    // Leaving those gates out by name: the same archives (no rebuild) ship.
    let output = xtask_in_env(
        root,
        &[
            "all",
            "--skip",
            "build",
            "--skip",
            "verify-reproducible",
            "--skip",
            "scan",
            "--skip",
            "malcontent",
            "--push-prefix",
            &prefix,
            "--json",
            json.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--no-tlog",
            // scan and malcontent were left out by name: sign anyway, recorded.
            "--sign-ungated",
        ],
        &without,
    );
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    let mut expected = vec![
        row("lint", "-", "passed"),
        row("digests", "-", "passed"),
        row("cpes", "-", "passed"),
        row("k8s", "-", "passed"),
        row("build", "-", "skipped"),
        row("verify-reproducible", "-", "skipped"),
    ];
    expected.extend(images.map(|image| row("sbom", image, "passed")));
    expected.push(row("scan", "-", "skipped"));
    expected.push(row("malcontent", "-", "skipped"));
    // The map of pushed images is ordered by name, as the build's reports are.
    expected.extend(images.map(|image| row("push", image, "passed")));
    expected.extend(images.map(|image| row("sign", image, "passed")));
    expected.extend(images.map(|image| row("verify", image, "passed")));
    assert_eq!(rows(&json), expected);
    for image in images {
        let published = read_json(&root.join(format!("out/{image}/publish.json")));
        assert_eq!(
            published["manifest_digest"],
            record(root, image).manifest_digest.as_str()
        );
        assert_eq!(
            published["waived_gates"].as_array().map(|g| g.len()),
            Some(2),
            "{published}"
        );
    }
    for image in images {
        assert!(
            log.contains(&format!("warning: {image} ships ungated: scan has not run")),
            "{log}"
        );
        let digest = record(root, image).manifest_digest;
        let (status, _) = registry_get(
            &registry,
            &format!("/v2/{repository}/{image}/manifests/{digest}"),
            MANIFEST_ACCEPT,
        );
        assert_eq!(status, 200, "{image} pushed by digest");
    }
}

/// Without an engine, `build` and `all` stop once, before any work, with the
/// fix; they do not fail once per image.
#[test]
fn without_an_engine_the_run_stops_once_with_the_fix() {
    let checkout = copy_checkout();
    for args in [&["build"][..], &["all"][..]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--root")
            .arg(checkout.path())
            .args(args)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        let report = text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {report}");
        assert_eq!(
            report.matches("docker engine: missing").count(),
            1,
            "{report}"
        );
        assert!(report.contains("cargo xtask test-env up"), "{report}");
        assert!(!checkout.path().join("out").exists(), "{args:?} did work");
    }
}

/// `build --on-recorded` builds only what is named: what it builds on comes
/// from its record and archive (as CI hands them on), never rebuilt.
#[test]
fn on_recorded_builds_only_what_is_named() {
    require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build", "hello", "--on-recorded"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("no build record") && text(&output).contains("base"),
        "{}",
        text(&output)
    );
    let output = xtask_in(root, &["build", "base"]);
    assert!(output.status.success(), "{}", text(&output));
    let base = record(root, "base");
    let json = root.join("build.json");
    let output = xtask_in(
        root,
        &[
            "build",
            "hello",
            "--on-recorded",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let built: Vec<String> = reports(&json).into_iter().map(|r| r.image).collect();
    assert_eq!(built, ["hello"]);
    assert_eq!(record(root, "base"), base, "base was not built again");
    assert_eq!(
        record(root, "hello").built_on[0].manifest_digest,
        base.manifest_digest
    );
}

/// The demo's "pulled back identical" is a comparison of what the registry
/// serves, not a restatement of push's success: through a proxy that flips a
/// byte of the manifest it is false, straight from the registry true.
#[test]
fn the_demos_pull_back_compares_what_the_registry_serves() {
    use crate::common::proxy::Proxy;
    let registry = require_engine();
    let standin = standin_archive("core-busybox");
    let repository = crate::names::unique("pulled-back");
    let digest = push_archive(&standin, &format!("{registry}/{repository}:1"));
    let pinned = |host: &str| format!("{host}/{repository}@{digest}");
    assert!(xtask::dev::demo::pulled_back_identical(&pinned(&registry), &standin).unwrap());
    let proxy = Proxy::start(&registry);
    proxy.corrupt("/manifests/");
    assert!(!xtask::dev::demo::pulled_back_identical(&pinned(&proxy.address), &standin).unwrap());
}
