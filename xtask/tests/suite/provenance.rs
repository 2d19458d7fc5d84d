//! `provenance`, its attestation with the real cosign 2.5, and
//! `verify-reproducible --against`, on the stand-in checkout, the test
//! engine and the local registry (`cargo xtask test-env`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use base64::Engine as _;

const PASSWORD: &str = "provenance-test-password";

fn schema(name: &str) -> PathBuf {
    repo_root().join("xtask/tests/testdata/slsa").join(name)
}

/// check-jsonschema's verdict on `document` against `schema`.
fn validate(schema: &Path, document: &serde_json::Value) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("statement.json");
    std::fs::write(&instance, serde_json::to_vec(document).unwrap()).unwrap();
    Command::new(require_tool("check-jsonschema"))
        .arg("--schemafile")
        .arg(schema)
        .arg(&instance)
        .output()
        .unwrap()
}

fn provenance_of(root: &Path, image: &str) -> Vec<u8> {
    std::fs::read(root.join("out").join(image).join("provenance.json")).unwrap()
}

#[test]
fn two_no_cache_builds_give_byte_identical_provenance_that_follows_both_schemas() {
    require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let json = root.join("provenance-report.json");
    let mut documents = Vec::new();
    for _ in 0..2 {
        let output = xtask_in(root, &["build", "base", "--no-cache"]);
        assert!(output.status.success(), "{}", text(&output));
        let output = xtask_in(
            root,
            &["provenance", "base", "--json", json.to_str().unwrap()],
        );
        assert!(output.status.success(), "{}", text(&output));
        let bytes = provenance_of(root, "base");
        let written = read_document(&json, "provenance");
        assert_eq!(written[0]["sha256"], sha256_hex(&bytes));
        documents.push(bytes);
    }
    assert_eq!(
        String::from_utf8_lossy(&documents[0]),
        String::from_utf8_lossy(&documents[1]),
        "two no-cache builds of one checkout gave different provenance"
    );

    // It describes this build: its digest, its pins, the engine that built it.
    let build = record(root, "base");
    let statement: serde_json::Value = serde_json::from_slice(&documents[0]).unwrap();
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        build.manifest_digest.trim_start_matches("sha256:")
    );
    let definition = &statement["predicate"]["buildDefinition"];
    assert_eq!(
        definition["externalParameters"]["containerfile"]["sha256"],
        build.containerfile_sha256.as_str()
    );
    assert_eq!(
        definition["internalParameters"]["sourceDateEpoch"],
        "1700000000"
    );
    let builder = build.builder.as_ref().unwrap();
    assert_eq!(
        definition["internalParameters"]["engineVersion"],
        builder.engine.as_str()
    );
    let pinned: Vec<String> = definition["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"]["kind"] == "stagex")
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pinned, build.stagex_inputs);
    assert!(!String::from_utf8_lossy(&documents[0]).contains("startedOn"));

    // Both schemas hold, and each refuses what it requires missing.
    for name in [
        "in-toto-statement-v1.schema.json",
        "slsa-provenance-v1.schema.json",
    ] {
        let output = validate(&schema(name), &statement);
        assert!(output.status.success(), "{name}: {}", text(&output));
    }
    let mut no_digest = statement.clone();
    no_digest["subject"][0]
        .as_object_mut()
        .unwrap()
        .remove("digest");
    let output = validate(&schema("in-toto-statement-v1.schema.json"), &no_digest);
    assert!(!output.status.success(), "{}", text(&output));
    let mut no_build_type = statement.clone();
    no_build_type["predicate"]["buildDefinition"]
        .as_object_mut()
        .unwrap()
        .remove("buildType");
    let output = validate(&schema("slsa-provenance-v1.schema.json"), &no_build_type);
    assert!(!output.status.success(), "{}", text(&output));

    // A Containerfile changed since the build: no provenance for other bytes.
    let containerfile = root.join("base/Containerfile");
    let mut edited = std::fs::read_to_string(&containerfile).unwrap();
    edited.push_str("# edited\n");
    std::fs::write(&containerfile, edited).unwrap();
    let output = xtask_in(root, &["provenance", "base"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("rebuild it with `cargo xtask build base`"),
        "{}",
        text(&output)
    );
}

/// A key pair made by cosign: `<dir>/<name>.key|.pub`.
fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    run_ok(
        Command::new(require_tool("cosign"))
            .arg("generate-key-pair")
            .arg("--output-key-prefix")
            .arg(&prefix)
            .env("COSIGN_PASSWORD", PASSWORD),
    );
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

fn greeting(root: &Path, word: &str) -> String {
    busybox_image(
        root,
        &[&format!(
            r#"["/usr/bin/busybox", "sh", "-c", "echo {word} > /greeting.txt"]"#
        )],
    )
}

#[test]
fn provenance_is_attested_verified_by_cosign_and_rebuilt_against() {
    let registry = require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let scratch = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(scratch.path(), "project");
    std::fs::copy(&public, root.join("cosign.pub")).unwrap();
    let key = key.to_str().unwrap();
    let env = [("COSIGN_PASSWORD", PASSWORD.to_string())];
    let run = |args: &[&str]| xtask_in_env(root, args, &env);

    let original = greeting(root, "original");
    add_image(root, "greeting", &original);
    let output = run(&["build", "greeting"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = run(&["provenance", "greeting"]);
    assert!(output.status.success(), "{}", text(&output));
    let provenance = scratch.path().join("greeting.provenance.json");
    std::fs::write(&provenance, provenance_of(root, "greeting")).unwrap();
    let repository = format!("{registry}/{}", crate::names::unique("provenance"));
    let digest = push_archive(
        &root.join("out/greeting/image.tar"),
        &format!("{repository}:1"),
    );
    assert_eq!(digest, record(root, "greeting").manifest_digest);
    let pinned = format!("{repository}@{digest}");

    // Attested to another image's digest: refused before cosign runs.
    let other = push_archive(
        &standin_archive("core-musl"),
        &format!("{repository}:other"),
    );
    let output = run(&[
        "attest",
        &format!("{repository}@{other}"),
        "--provenance",
        provenance.to_str().unwrap(),
        "--key",
        key,
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("is the provenance of {digest}")),
        "{}",
        text(&output)
    );

    let output = run(&[
        "attest",
        &pinned,
        "--provenance",
        provenance.to_str().unwrap(),
        "--key",
        key,
        "--no-tlog",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let output = run(&["sign", &pinned, "--key", key, "--no-tlog"]);
    assert!(output.status.success(), "{}", text(&output));

    // cosign itself verifies it with the project's key, as a consumer would.
    let verified = run_ok(
        Command::new(require_tool("cosign"))
            .args(["verify-attestation", "--key"])
            .arg(root.join("cosign.pub"))
            .args([
                "--type",
                "slsaprovenance1",
                "--insecure-ignore-tlog=true",
                &pinned,
            ]),
    );
    let envelope: serde_json::Value = serde_json::from_slice(
        String::from_utf8_lossy(&verified.stdout)
            .lines()
            .next()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let attested: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&provenance).unwrap()).unwrap();
    assert_eq!(attested["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        attested["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    assert_eq!(
        attested["predicate"], ours["predicate"],
        "cosign attested another predicate than provenance.json's"
    );
    // cosign 2.5 writes the statement around the predicate itself, as
    // in-toto Statement v0.1; with that one field ours, what it signed
    // follows both schemas.
    assert_eq!(attested["_type"], "https://in-toto.io/Statement/v0.1");
    let mut as_v1 = attested.clone();
    as_v1["_type"] = "https://in-toto.io/Statement/v1".into();
    for name in [
        "in-toto-statement-v1.schema.json",
        "slsa-provenance-v1.schema.json",
    ] {
        let output = validate(&schema(name), &as_v1);
        assert!(output.status.success(), "{name}: {}", text(&output));
    }

    // verify checks it: this digest, the Containerfile's pins.
    let json = scratch.path().join("verify.json");
    let output = run(&[
        "verify",
        &pinned,
        "--attestations",
        "--provenance",
        provenance.to_str().unwrap(),
        "--type",
        "slsaprovenance1",
        "--no-tlog",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let result = read_document(&json, "verify");
    let checked = result["attestations"][0]["provenance"].as_str().unwrap();
    assert!(
        checked.contains("1 StageX dependencies the pins of greeting/Containerfile"),
        "{checked}"
    );
    // A checkout whose Containerfile pins something else: refused.
    let moved = std::fs::read_to_string(root.join("base/Containerfile")).unwrap();
    let musl = moved.lines().find(|l| l.contains("core-musl")).unwrap();
    std::fs::write(
        root.join("greeting/Containerfile"),
        original.replace(
            original
                .lines()
                .find(|l| l.contains("core-busybox"))
                .unwrap(),
            &musl.replace(" AS musl", " AS busybox"),
        ),
    )
    .unwrap();
    let output = run(&[
        "verify",
        &pinned,
        "--attestations",
        "--type",
        "slsaprovenance1",
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output)
            .contains("its StageX dependencies are not the pins of greeting/Containerfile"),
        "{}",
        text(&output)
    );
    std::fs::write(root.join("greeting/Containerfile"), &original).unwrap();

    // An independent rebuild from the published provenance: the same digest.
    let output = run(&["verify-reproducible", "--against", &pinned, "--no-tlog"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("reproducible: the rebuild here is {pinned}")),
        "{}",
        text(&output)
    );

    // A published image whose layer was changed (built from an altered
    // Containerfile), attested with a provenance that claims the original
    // Containerfile: the rebuild differs, and the file is named.
    add_image(root, "greeting", &greeting(root, "altered"));
    let output = run(&["build", "greeting"]);
    assert!(output.status.success(), "{}", text(&output));
    add_image(root, "greeting", &original);
    let altered = push_archive(
        &root.join("out/greeting/image.tar"),
        &format!("{repository}:2"),
    );
    assert_ne!(altered, digest);
    let mut lie = ours.clone();
    lie["subject"][0]["digest"]["sha256"] = altered.trim_start_matches("sha256:").into();
    let lie_file = scratch.path().join("altered.provenance.json");
    std::fs::write(&lie_file, serde_json::to_vec_pretty(&lie).unwrap()).unwrap();
    let altered_pinned = format!("{repository}@{altered}");
    for args in [
        vec!["sign", &altered_pinned, "--key", key, "--no-tlog"],
        vec![
            "attest",
            &altered_pinned,
            "--provenance",
            lie_file.to_str().unwrap(),
            "--key",
            key,
            "--no-tlog",
        ],
    ] {
        let output = run(&args);
        assert!(output.status.success(), "{}", text(&output));
    }
    let json = scratch.path().join("against.json");
    let output = run(&[
        "verify-reproducible",
        "--against",
        &altered_pinned,
        "--no-tlog",
        "--json",
        json.to_str().unwrap(),
    ]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("NOT reproducible"), "{log}");
    assert!(log.contains("~ greeting.txt: content sha256"), "{log}");
    let steps = reports(&json);
    assert_eq!(steps[0].image, "greeting");
    assert!(steps[0].failed() && !steps[0].could_not_run, "{steps:?}");

    // A provenance signed by another key is not trusted.
    let (_, stranger) = key_pair(scratch.path(), "stranger");
    let output = run(&[
        "verify-reproducible",
        "--against",
        &pinned,
        "--no-tlog",
        "--key",
        stranger.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("no signature verifies against"),
        "{}",
        text(&output)
    );
}
