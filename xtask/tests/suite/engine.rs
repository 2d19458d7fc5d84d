//! Proof that the engine is real: buildx builds on the Docker 26 engine and the
//! registry from `cargo xtask test-env`, byte-reproducibly, from a stand-in
//! "StageX" image pinned by digest.

use std::path::Path;
use std::process::Command;

use crate::common::*;

const EPOCH: &str = "1700000000";

fn buildx(context: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new("docker");
    command
        .args([
            "buildx",
            "build",
            "--network=none",
            "--provenance=false",
            "--no-cache",
        ])
        .arg("--file")
        .arg(context.join("Containerfile"))
        .args(extra)
        .arg(context)
        .env("SOURCE_DATE_EPOCH", EPOCH);
    command
}

/// A FROM-scratch image holding Debian's busybox-static, with a RUN step.
fn busybox_context(dir: &Path, containerfile: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(standin_root().join("bin/busybox"), dir.join("busybox")).unwrap();
    std::fs::write(dir.join("Containerfile"), containerfile).unwrap();
}

#[test]
fn the_same_build_twice_gives_identical_oci_archives() {
    require_engine();
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    busybox_context(
        &context,
        "FROM scratch\nARG SOURCE_DATE_EPOCH\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"/etc/app\"]\nRUN [\"/bin/busybox\", \"cp\", \"/bin/busybox\", \"/etc/app/copy\"]\n",
    );
    let mut digests = Vec::new();
    for run in ["first", "second"] {
        let archive = work.path().join(format!("{run}.tar"));
        let output_flag = format!("type=oci,dest={},rewrite-timestamp=true", archive.display());
        run_ok(&mut buildx(&context, &["--output", &output_flag]));
        let size = std::fs::metadata(&archive).unwrap().len();
        assert!(
            size > 1_000_000,
            "{run}: archive of {size} bytes holds busybox twice"
        );
        digests.push(sha256_file(&archive));
    }
    assert_eq!(
        digests[0], digests[1],
        "two builds of the same input differ"
    );
}

#[test]
fn a_containerfile_pinning_a_standin_by_digest_builds_from_the_registry() {
    let registry = require_engine();
    let work = tempfile::tempdir().unwrap();

    // 1. The stand-in "StageX" core-busybox, pushed to the test registry.
    let standin = work.path().join("standin");
    busybox_context(&standin, "FROM scratch\nCOPY busybox /bin/busybox\n");
    // A prefix of this test's own, not the shared stand-ins' `stagex/`.
    let own_prefix = format!("{registry}/{}", crate::names::unique("engine-standin"));
    let name = format!("{own_prefix}/core-busybox:1.37.0");
    let metadata = work.path().join("standin.json");
    let output_flag = format!("type=image,name={name},push=true");
    run_ok(
        buildx(&standin, &["--output", &output_flag])
            .arg("--metadata-file")
            .arg(&metadata),
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    let digest = metadata["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = digest.strip_prefix("sha256:").unwrap();

    // 2. A checkout shaped like ours that pins it, with a release list naming it.
    let checkout = tempfile::tempdir().unwrap();
    let image_dir = checkout.path().join("base");
    std::fs::create_dir_all(&image_dir).unwrap();
    std::fs::write(
        image_dir.join("Containerfile"),
        format!(
            "ARG STAGEX_REGISTRY=stagex\nARG SOURCE_DATE_EPOCH\nFROM ${{STAGEX_REGISTRY}}/core-busybox:1.37.0@{digest} AS busybox\nFROM scratch\nCOPY --from=busybox . /\nRUN [\"/bin/busybox\", \"mkdir\", \"/made-by-run\"]\n"
        ),
    )
    .unwrap();
    let release = checkout.path().join("stagex-release/2026.03.0");
    std::fs::create_dir_all(release.join("digests")).unwrap();
    std::fs::write(
        checkout.path().join("stagex-release/RELEASE"),
        "2026.03.0\n",
    )
    .unwrap();
    std::fs::write(
        release.join("digests/core.txt"),
        format!("{hex} core-busybox\n"),
    )
    .unwrap();
    std::fs::write(
        release.join("versions.tsv"),
        format!("image\tversion_tag\tdefined_in\tmanifest_digest\ncore-busybox\t1.37.0\tstand-in\t{hex}\n"),
    )
    .unwrap();
    // Its package facts: lint checks what the image ships from them.
    std::fs::write(
        release.join("packages.facts"),
        format!("package core-busybox digest={hex} read=stand-in\nelf core-busybox /usr/bin/busybox at=standins/core-busybox/Containerfile:2\n"),
    )
    .unwrap();
    let root = checkout.path().to_str().unwrap();
    let lint = xtask(&["--root", root, "lint"]);
    assert!(lint.status.success(), "{}", text(&lint));

    // 3. Build it, pulling through the registry prefix build argument.
    let archive = work.path().join("base.tar");
    let output_flag = format!("type=oci,dest={},rewrite-timestamp=true", archive.display());
    let prefix = format!("STAGEX_REGISTRY={own_prefix}");
    run_ok(&mut buildx(
        &image_dir,
        &["--build-arg", &prefix, "--output", &output_flag],
    ));

    // The archive's image has the stand-in's layer plus the RUN layer.
    let unpacked = work.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked),
    );
    let blob = |digest: &str| {
        let path = unpacked
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap());
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 2, "{manifest}");
    let listing = |digest: &str| {
        let path = unpacked
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap());
        let out = run_ok(Command::new("tar").arg("-tzf").arg(path));
        String::from_utf8(out.stdout).unwrap()
    };
    // The stand-in's busybox arrived through COPY --from, and RUN executed it.
    assert!(
        listing(&layers[0]).lines().any(|l| l == "bin/busybox"),
        "{}",
        listing(&layers[0])
    );
    assert!(
        listing(&layers[1])
            .lines()
            .any(|l| l.starts_with("made-by-run")),
        "{}",
        listing(&layers[1])
    );
}
