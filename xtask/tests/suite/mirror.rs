//! `mirror` end to end between repositories of the test registry: verified
//! images arrive with their digests, rejected ones never do, a second run only
//! asks, an interrupted copy resumes without ever showing a manifest whose
//! blobs are missing, blobs are mounted, indexes are copied with their
//! children, and transient registry errors are retried.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::gpg::Signed;
use crate::common::proxy::Proxy;
use crate::common::*;
use xtask::oci::archive::OciArchive;
use xtask::oci::auth::Role;
use xtask::oci::reference::ImageRef;
use xtask::oci::registry::{self, Registry};

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
    let target = format!("{registry}/{}", crate::names::unique("mirror"));
    let signatures_out = tempfile::tempdir().unwrap();
    let report = tempfile::tempdir().unwrap();
    let json = report.path().join("mirror.json");
    let mut args: Vec<String> = vec![
        "--registry".into(),
        format!("{registry}/stagex"),
        "--to-prefix".into(),
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
            let (tags_status, _) = registry_get(
                &registry,
                &format!("/v2/{repository}/{package}/tags/list"),
                "*/*",
            );
            assert_eq!(tags_status, 404, "the repository of {package} exists");
            // Nor any of its blobs (a registry keeps blobs without a tag or a
            // manifest, and tags/list does not show them).
            let (status, source) = registry_get(
                &registry,
                &format!("/v2/stagex/{package}/manifests/sha256:{hex}"),
                MANIFEST_ACCEPT,
            );
            assert_eq!(status, 200, "the stand-in {package} is not in the source");
            let manifest: serde_json::Value = serde_json::from_slice(&source).unwrap();
            let blobs: Vec<&str> = manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .chain([&manifest["config"]])
                .map(|blob| blob["digest"].as_str().unwrap())
                .collect();
            assert!(blobs.len() >= 2, "{manifest}");
            for blob in blobs {
                assert_eq!(
                    registry_head(
                        &registry,
                        &blob_path(&format!("{repository}/{package}"), blob)
                    ),
                    404,
                    "blob {blob} of the rejected {package} arrived"
                );
            }
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
    let results = read_document(&json, "mirror");
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
    for result in read_document(&json, "mirror").as_array().unwrap() {
        assert_eq!(result["outcome"], "skipped", "{result}");
        assert_eq!(result["blobs_copied"], 0, "{result}");
    }
}

/// The mirror's typed per-reference results, from its `--json`.
fn results(path: &Path) -> Vec<serde_json::Value> {
    read_document(path, "mirror").as_array().unwrap().clone()
}

/// `mirror --registry SOURCE --to-prefix TARGET --json JSON` with `signed`'s
/// trust and these references.
fn mirror_args(
    source: &str,
    target: &str,
    json: &Path,
    signed: &Signed,
    refs: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "mirror".into(),
        "--registry".into(),
        source.into(),
        "--to-prefix".into(),
        target.into(),
        "--jobs".into(),
        "1".into(),
        "--json".into(),
        json.display().to_string(),
    ];
    args.extend(signed.args());
    args.extend(refs.iter().cloned());
    args
}

fn blob_path(repository: &str, digest: &str) -> String {
    format!("/v2/{repository}/blobs/{digest}")
}

/// Killed after its first blob landed (seen in the target, not guessed from
/// time): the layer is held back by a proxy, so the kill always comes before
/// the copy could finish. No manifest shows; the rerun copies only the layer,
/// and while it runs the manifest never shows without all its blobs.
#[test]
fn an_interrupted_copy_resumes_and_no_manifest_shows_before_its_blobs() {
    let registry = require_engine();
    let id = crate::names::unique("mirror");
    let archive = standin_archive("core-busybox");
    let upstream = format!("upstream-{id}");
    let digest = push_archive(&archive, &format!("{registry}/{upstream}/core-big:1"));
    let hex = digest.trim_start_matches("sha256:").to_string();
    let image = OciArchive::open(&archive).unwrap();
    let config = image.manifest.config.digest.clone();
    let layer = image.manifest.layers[0].digest.clone();

    let signed = Signed::new();
    signed.sign("core-big", Some("1"), &hex, 2);
    let proxy = Proxy::start(&registry);
    proxy.hold(&format!("/blobs/{layer}"));
    let target = format!("{registry}/resume-{id}");
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("mirror.json");
    let refs = [format!("stagex/core-big:1@{digest}")];
    let through_proxy = format!("{}/{upstream}", proxy.address);
    let args = mirror_args(&through_proxy, &target, &json, &signed, &refs);
    let manifest_path = format!("/v2/resume-{id}/core-big/manifests/{digest}");
    let repository = format!("resume-{id}/core-big");

    // 1. Kill it once the config blob is in the target.
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while registry_head(&registry, &blob_path(&repository, &config)) != 200 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "mirror ended before its first blob landed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no blob landed in 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        proxy.seen().iter().any(|l| l.contains(&layer)),
        "the layer was requested (and is held): {:?}",
        proxy.seen()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        registry_head(&registry, &manifest_path),
        404,
        "a manifest after the kill"
    );
    assert_eq!(
        registry_head(&registry, &blob_path(&repository, &layer)),
        404
    );
    proxy.release();

    // 2. Again, watching: whenever the manifest is visible, every blob is there.
    let done = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (done, violations, registry, manifest_path, repository) = (
            done.clone(),
            violations.clone(),
            registry.clone(),
            manifest_path.clone(),
            repository.clone(),
        );
        let blobs = [config.clone(), layer.clone()];
        std::thread::spawn(move || loop {
            // One last look after the run ended, so the final state is checked too.
            let last = done.load(Ordering::SeqCst);
            if registry_head(&registry, &manifest_path) == 200 {
                for blob in &blobs {
                    let status = registry_head(&registry, &blob_path(&repository, blob));
                    if status != 200 {
                        violations.lock().unwrap().push(format!("{blob}: {status}"));
                    }
                }
            }
            if last {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        })
    };
    let output = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>());
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );
    let result = &results(&json)[0];
    assert_eq!(result["outcome"], "passed", "{result}");
    assert_eq!(
        result["blobs_present"], 1,
        "the config survived the kill: {result}"
    );
    assert_eq!(
        result["blobs_copied"], 1,
        "only the layer is copied again: {result}"
    );
    let (_, arrived) = registry_get(&registry, &manifest_path, MANIFEST_ACCEPT);
    assert_eq!(sha256_hex(&arrived), hex);
}

/// Two packages with the same content: the second one's blobs are mounted
/// from the repository the first was copied to, not copied again.
#[test]
fn blobs_the_target_has_elsewhere_are_mounted() {
    let registry = require_engine();
    let id = crate::names::unique("mirror");
    let archive = standin_archive("core-musl");
    let upstream = format!("{registry}/mount-source-{id}");
    let digest = push_archive(&archive, &format!("{upstream}/core-a:1"));
    assert_eq!(
        push_archive(&archive, &format!("{upstream}/core-b:1")),
        digest
    );
    let hex = digest.trim_start_matches("sha256:");
    let signed = Signed::new();
    signed.sign("core-a", Some("1"), hex, 2);
    signed.sign("core-b", Some("1"), hex, 2);
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("mirror.json");
    let refs = [
        format!("stagex/core-a:1@{digest}"),
        format!("stagex/core-b:1@{digest}"),
    ];
    let target = format!("{registry}/mount-target-{id}");
    let args = mirror_args(&upstream, &target, &json, &signed, &refs);
    let output = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.status.success(), "{}", text(&output));
    let blobs = OciArchive::open(&archive).unwrap().manifest.blobs().count();
    let results = results(&json);
    assert_eq!(results[0]["item"]["target"], format!("{target}/core-a:1"));
    assert_eq!(results[0]["blobs_copied"], blobs, "{}", results[0]);
    assert_eq!(results[1]["blobs_mounted"], blobs, "{}", results[1]);
    assert_eq!(results[1]["blobs_copied"], 0, "{}", results[1]);
    let repository = format!("mount-target-{id}/core-b");
    for blob in OciArchive::open(&archive).unwrap().manifest.blobs() {
        assert_eq!(
            registry_head(&registry, &blob_path(&repository, &blob.digest)),
            200
        );
    }
}

/// A signed index: its children go first, with their blobs, then the index,
/// all byte for byte.
#[test]
fn an_index_is_copied_with_its_children() {
    let registry = require_engine();
    let id = crate::names::unique("mirror");
    let upstream = format!("{registry}/index-source-{id}");
    let mut children = Vec::new();
    for (tag, package) in [("child-a", "core-musl"), ("child-b", "core-busybox")] {
        let archive = standin_archive(package);
        let digest = push_archive(&archive, &format!("{upstream}/core-multi:{tag}"));
        let image = OciArchive::open(&archive).unwrap();
        children.push((digest, image.manifest_bytes.len(), image));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": xtask::oci::manifest::OCI_INDEX,
        "manifests": children.iter().map(|(digest, size, _)| serde_json::json!({
            "mediaType": xtask::oci::manifest::OCI_MANIFEST,
            "digest": digest,
            "size": size,
        })).collect::<Vec<_>>(),
    });
    let bytes = bytes::Bytes::from(serde_json::to_vec(&index).unwrap());
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    let reference = ImageRef::parse(&format!("{upstream}/core-multi:1")).unwrap();
    registry::block_on(async {
        let client = Registry::connect_to(&reference, Role::Target).await?;
        client
            .push_manifest(&reference, &bytes, xtask::oci::manifest::OCI_INDEX)
            .await
    })
    .unwrap()
    .unwrap();
    let signed = Signed::new();
    signed.sign(
        "core-multi",
        Some("1"),
        digest.trim_start_matches("sha256:"),
        2,
    );
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("mirror.json");
    let target = format!("{registry}/index-target-{id}");
    let refs = [format!("stagex/core-multi:1@{digest}")];
    let args = mirror_args(&upstream, &target, &json, &signed, &refs);
    let output = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.status.success(), "{}", text(&output));
    let repository = format!("index-target-{id}/core-multi");
    let (status, arrived) = registry_get(
        &registry,
        &format!("/v2/{repository}/manifests/1"),
        MANIFEST_ACCEPT,
    );
    assert_eq!(status, 200);
    assert_eq!(arrived, bytes.to_vec(), "the index, byte for byte");
    let mut blobs = 0;
    for (child, _, image) in &children {
        let (status, body) = registry_get(
            &registry,
            &format!("/v2/{repository}/manifests/{child}"),
            MANIFEST_ACCEPT,
        );
        assert_eq!(status, 200, "child {child}");
        assert_eq!(body, image.manifest_bytes);
        for blob in image.manifest.blobs() {
            assert_eq!(
                registry_head(&registry, &blob_path(&repository, &blob.digest)),
                200
            );
            blobs += 1;
        }
    }
    assert_eq!(results(&json)[0]["blobs_copied"], blobs);
}

/// A source that answers 503 and 429 before it answers properly: the copy is
/// retried and completes.
#[test]
fn transient_registry_errors_are_retried() {
    let registry = require_engine();
    let id = crate::names::unique("mirror");
    let archive = standin_archive("core-ca-certificates");
    let upstream = format!("retry-source-{id}");
    let digest = push_archive(&archive, &format!("{registry}/{upstream}/core-ca:1"));
    let signed = Signed::new();
    signed.sign(
        "core-ca",
        Some("1"),
        digest.trim_start_matches("sha256:"),
        2,
    );
    let proxy = Proxy::start(&registry);
    proxy.fail("/manifests/", 503, 2);
    proxy.fail("/blobs/", 429, 1);
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("mirror.json");
    let target = format!("{registry}/retry-target-{id}");
    let refs = [format!("stagex/core-ca:1@{digest}")];
    let source = format!("{}/{upstream}", proxy.address);
    let args = mirror_args(&source, &target, &json, &signed, &refs);
    let output = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("retrying"), "{log}");
    let seen = proxy.seen();
    let manifest_requests = seen.iter().filter(|l| l.contains("/manifests/")).count();
    assert!(manifest_requests >= 3, "two refused, then served: {seen:?}");
    assert_eq!(results(&json)[0]["outcome"], "passed");
    let (status, body) = registry_get(
        &registry,
        &format!("/v2/retry-target-{id}/core-ca/manifests/{digest}"),
        MANIFEST_ACCEPT,
    );
    assert_eq!(status, 200);
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), digest);
}
