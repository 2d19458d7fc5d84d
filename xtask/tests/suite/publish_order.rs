//! Runs of the build workflow can overlap (Forgejo before 14 does not queue
//! them), so publishes of one tag can finish out of order: the tag never
//! moves back to a build of an earlier commit.

use std::path::Path;

use crate::common::*;

/// Build, SBOM and gate `base-static` as of the commit time `epoch`, then publish
/// it to `to` with `key`.
fn publish_as_of(root: &Path, epoch: u64, to: &str, key: &Path) -> std::process::Output {
    let env = [
        ("SOURCE_DATE_EPOCH", epoch.to_string()),
        ("COSIGN_PASSWORD", "test".to_string()),
    ];
    for step in [
        &["build", "base-static", "--no-cache"][..],
        &["sbom", "base-static"],
    ] {
        let output = xtask_in_env(root, step, &env);
        assert!(output.status.success(), "{step:?}: {}", text(&output));
    }
    let build = record(root, "base-static");
    for step in ["scan", "malcontent"] {
        xtask::records::steps::StepRecord::new(
            &build,
            step,
            xtask::report::Outcome::Passed,
            "set by the test".into(),
        )
        .save(root)
        .unwrap();
    }
    xtask_in_env(
        root,
        &[
            "publish",
            "base-static",
            "--to",
            to,
            "--key",
            key.to_str().unwrap(),
            "--no-tlog",
        ],
        &env,
    )
}

#[test]
fn an_older_build_published_last_leaves_the_tag_at_the_newer_one() {
    let registry = require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let keys = tempfile::tempdir().unwrap();
    let key = cosign_key_pair(keys.path(), "test", root);
    let repository = format!("{}/base-static", crate::names::unique("order"));
    let to = format!("{registry}/{repository}:latest");
    let latest = || {
        let (status, manifest) = registry_get(
            &registry,
            &format!("/v2/{repository}/manifests/latest"),
            MANIFEST_ACCEPT,
        );
        assert_eq!(status, 200);
        format!("sha256:{}", sha256_hex(&manifest))
    };

    let output = publish_as_of(root, 1_700_000_000, &to, &key);
    assert!(output.status.success(), "{}", text(&output));
    let newer = record(root, "base-static").manifest_digest;
    assert_eq!(latest(), newer);

    // A run of an earlier commit finishing last: published by digest,
    // signed and verified, but `:latest` stays.
    let output = publish_as_of(root, 1_600_000_000, &to, &key);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    let older = record(root, "base-static").manifest_digest;
    assert_ne!(older, newer);
    assert!(
        log.contains(&format!("names {newer}, built from a later commit")),
        "{log}"
    );
    assert_eq!(latest(), newer);
    assert_eq!(
        registry_head(&registry, &format!("/v2/{repository}/manifests/{older}")),
        200
    );

    // A later commit moves it.
    let output = publish_as_of(root, 1_800_000_000, &to, &key);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(latest(), record(root, "base-static").manifest_digest);
}
