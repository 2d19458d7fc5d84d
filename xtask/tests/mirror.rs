//! `mirror` end to end between repositories of the test registry: verified
//! images arrive with their digests, rejected ones never do, a second run only
//! asks, and an interrupted copy resumes without ever showing a manifest whose
//! blobs are missing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::gpg::{simple_signing, write_lookaside, Gpg, Key};
use common::*;

/// Two trusted maintainers and a signature store for some digests.
struct Signed {
    gpg: Gpg,
    keys: Vec<Key>,
    store: tempfile::TempDir,
}

impl Signed {
    fn new() -> Signed {
        let gpg = Gpg::new();
        let keys = vec![gpg.key("alice", "ed25519"), gpg.key("bob", "rsa3072")];
        for key in &keys {
            gpg.trust(key);
        }
        Signed {
            gpg,
            keys,
            store: tempfile::tempdir().unwrap(),
        }
    }

    /// `signers` of the two keys sign `stagex/<package>@sha256:<hex>`.
    fn sign(&self, package: &str, tag: Option<&str>, hex: &str, signers: usize) {
        let reference = match tag {
            Some(tag) => format!("stagex/{package}:{tag}"),
            None => format!("stagex/{package}"),
        };
        let signatures: Vec<Vec<u8>> = self.keys[..signers]
            .iter()
            .map(|key| self.gpg.sign(key, &simple_signing(&reference, hex), &[]))
            .collect();
        write_lookaside(
            self.store.path(),
            &format!("stagex/{package}"),
            hex,
            &signatures,
        );
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--lookaside".into(),
            format!("file://{}", self.store.path().display()),
            "--keyring".into(),
            self.gpg.keyring.path().display().to_string(),
            "--threshold".into(),
            "2".into(),
        ]
    }
}

fn reference(package: &str, tag: &Option<String>, hex: &str) -> String {
    match tag {
        Some(tag) => format!("stagex/{package}:{tag}@sha256:{hex}"),
        None => format!("stagex/{package}@sha256:{hex}"),
    }
}

fn mirror(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    xtask(&[&["mirror"][..], &args].concat())
}

#[test]
fn verified_images_arrive_identical_rejected_ones_never_and_a_rerun_only_asks() {
    let registry = require_engine();
    let checkout = demo_checkout();
    let standins = standins(checkout.path());
    let signed = Signed::new();
    // core-filesystem gets one signature only: below the quorum of two.
    let rejected = "core-filesystem";
    for (package, tag, hex) in &standins {
        signed.sign(
            package,
            tag.as_deref(),
            hex,
            if package == rejected { 1 } else { 2 },
        );
    }
    let target = format!("{registry}/mirror-{}", std::process::id());
    let signatures_out = tempfile::tempdir().unwrap();
    let report = tempfile::tempdir().unwrap();
    let json = report.path().join("mirror.json");
    let mut args: Vec<String> = vec![
        "--from".into(),
        format!("{registry}/stagex"),
        "--to".into(),
        target.clone(),
        "--signatures-out".into(),
        signatures_out.path().display().to_string(),
        "--json".into(),
        json.display().to_string(),
    ];
    args.extend(signed.args());
    let refs: Vec<String> = standins
        .iter()
        .map(|(p, t, h)| reference(p, t, h))
        .collect();
    args.extend(refs.iter().cloned());

    let output = mirror(&args);
    let log = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the rejected reference fails the run:\n{log}"
    );
    let repository = target.split_once('/').unwrap().1;
    for (package, tag, hex) in &standins {
        let (status, body) = registry_get(
            &registry,
            &format!("/v2/{repository}/{package}/manifests/sha256:{hex}"),
            MANIFEST_ACCEPT,
        );
        if package == rejected {
            assert_eq!(status, 404, "{package} was rejected yet arrived:\n{log}");
            let (catalog_status, catalog) = registry_get(&registry, "/v2/_catalog?n=1000", "*/*");
            assert_eq!(catalog_status, 200);
            let catalog = String::from_utf8(catalog).unwrap();
            assert!(
                !catalog.contains(&format!("{repository}/{package}")),
                "{catalog}"
            );
            assert!(
                log.contains("1 distinct maintainer key(s) of 2 required"),
                "{log}"
            );
            continue;
        }
        assert_eq!(status, 200, "{package}:\n{log}");
        let arrived = sha256_hex(&body);
        assert_eq!(
            &arrived, hex,
            "{package}: the manifest bytes are the signed ones"
        );
        if let Some(tag) = tag {
            let path = format!("/v2/{repository}/{package}/manifests/{tag}");
            let (status, tagged) = registry_get(&registry, &path, MANIFEST_ACCEPT);
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&tagged));
            assert_eq!(tagged, body);
        }
        let copied = signatures_out
            .path()
            .join(format!("stagex/{package}@sha256={hex}/signature-2"));
        assert!(copied.is_file(), "{}", copied.display());
    }
    let results = read_json(&json);
    assert_eq!(results.as_array().unwrap().len(), standins.len());

    // Again, without the rejected one: nothing to copy, only HEADs.
    let verified: Vec<String> = standins
        .iter()
        .filter(|(p, _, _)| p != rejected)
        .map(|(p, t, h)| reference(p, t, h))
        .collect();
    let mut again: Vec<String> = args.iter().filter(|a| !refs.contains(a)).cloned().collect();
    again.extend(verified);
    let output = mirror(&again);
    assert!(output.status.success(), "{}", text(&output));
    for result in read_json(&json).as_array().unwrap() {
        assert_eq!(result["outcome"], "skipped", "{result}");
        assert_eq!(result["blobs_copied"], 0, "{result}");
    }
}

/// Random, incompressible bytes (xorshift), so layers stay big after gzip.
fn random_file(path: &Path, bytes: usize, seed: u64) {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(bytes);
    while data.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn an_interrupted_copy_resumes_and_no_manifest_shows_before_its_blobs() {
    let registry = require_engine();
    let id = std::process::id();
    // A big image, built and pushed as the "upstream" core-big.
    let checkout = tempfile::tempdir().unwrap();
    let dir = checkout.path().join("core-big");
    std::fs::create_dir_all(&dir).unwrap();
    let mut containerfile = String::from("FROM scratch\n");
    for layer in 1..=4 {
        random_file(
            &dir.join(format!("part-{layer}.bin")),
            48 << 20,
            u64::from(id) * 10 + layer,
        );
        containerfile.push_str(&format!("COPY part-{layer}.bin /part-{layer}.bin\n"));
    }
    std::fs::write(dir.join("Containerfile"), containerfile).unwrap();
    let output = xtask_in(checkout.path(), &["build", "core-big"]);
    assert!(output.status.success(), "{}", text(&output));
    let upstream = format!("{registry}/upstream-{id}");
    let output = xtask_in(
        checkout.path(),
        &[
            "push",
            "core-big",
            "--to",
            &format!("{upstream}/core-big:1"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let record = read_json(&checkout.path().join("out/core-big.json"));
    let hex = record["manifest_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let (_, manifest) = registry_get(
        &registry,
        &format!("/v2/upstream-{id}/core-big/manifests/sha256:{hex}"),
        MANIFEST_ACCEPT,
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    blobs.extend(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    assert_eq!(blobs.len(), 5);

    let signed = Signed::new();
    signed.sign("core-big", Some("1"), &hex, 2);
    let target = format!("{registry}/resume-{id}");
    let mut args: Vec<String> = vec![
        "mirror".into(),
        "--from".into(),
        upstream,
        "--to".into(),
        target.clone(),
    ];
    args.extend(signed.args());
    args.push(format!("stagex/core-big:1@sha256:{hex}"));
    let manifest_path = format!("/v2/resume-{id}/core-big/manifests/sha256:{hex}");

    // 1. Kill it while the first blobs flow.
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(&args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("quorum met") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(30));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the copy finished before it could be interrupted"
    );
    assert_eq!(
        registry_head(&registry, &manifest_path),
        404,
        "a manifest is visible after an interrupted copy"
    );

    // 2. Run again, watching: whenever the manifest is visible, every blob is there.
    let done = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (done, violations, registry, blobs, manifest_path) = (
            done.clone(),
            violations.clone(),
            registry.clone(),
            blobs.clone(),
            manifest_path.clone(),
        );
        let repository = format!("resume-{id}/core-big");
        std::thread::spawn(move || {
            let mut checks = 0;
            loop {
                // One last look after the run ended, so the final state is checked too.
                let last = done.load(Ordering::SeqCst);
                if registry_head(&registry, &manifest_path) == 200 {
                    checks += 1;
                    for blob in &blobs {
                        let status =
                            registry_head(&registry, &format!("/v2/{repository}/blobs/{blob}"));
                        if status != 200 {
                            violations.lock().unwrap().push(format!("{blob}: {status}"));
                        }
                    }
                }
                if last {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            checks
        })
    };
    let output = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>());
    done.store(true, Ordering::SeqCst);
    let checks = watcher.join().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );
    assert_eq!(registry_head(&registry, &manifest_path), 200);
    let (_, arrived) = registry_get(&registry, &manifest_path, MANIFEST_ACCEPT);
    let digest = sha256_hex(&arrived);
    assert_eq!(digest, hex);
    assert!(checks > 0, "the watcher never saw the manifest");
}
