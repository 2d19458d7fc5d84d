//! `compare` on images the test engine built, checked against the engine's
//! own view of them and their manifests.

use std::path::Path;

use crate::common::*;

/// Regular files of an image as the engine exports its filesystem.
fn engine_files(archive: &Path) -> usize {
    let exported = engine_export(archive);
    let mut tar = tar::Archive::new(&exported[..]);
    tar.entries()
        .unwrap()
        .filter(|e| {
            let e = e.as_ref().unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            // The engine adds these to every container.
            let added = [
                "etc/hostname",
                "etc/hosts",
                "etc/resolv.conf",
                ".dockerenv",
                "dev/console",
            ]
            .contains(&path.trim_start_matches("./"));
            e.header().entry_type().is_file() && !added
        })
        .count()
}

#[test]
fn compare_reports_the_real_sizes_and_counts() {
    let registry = require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build", "base", "base-static"]);
    assert!(output.status.success(), "{}", text(&output));
    let json = root.join("compare.json");
    let busybox = format!("{registry}/stagex/core-busybox:1.37.0");
    let output = xtask_in(
        root,
        &[
            "compare",
            "base",
            "base-static",
            &busybox,
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("| layers |"), "{}", text(&output));
    let measured = read_document(&json, "compare");
    for (index, image) in ["base", "base-static"].iter().enumerate() {
        let archive = root.join(format!("out/{image}/image.tar"));
        let opened = xtask::oci::archive::OciArchive::open(&archive).unwrap();
        let row = &measured[index];
        assert_eq!(row["name"], *image);
        assert_eq!(row["layers"], opened.manifest.layers.len());
        let compressed: u64 = opened.manifest.layers.iter().map(|l| l.size).sum::<u64>()
            + opened.manifest.config.size;
        assert_eq!(row["compressed_bytes"], compressed);
        assert_eq!(row["files"], engine_files(&archive), "{image}");
    }
    // base has busybox's shell; base-static has none; the registry image
    // was pulled and measured too.
    assert!(!measured[0]["shells"].as_array().unwrap().is_empty());
    assert_eq!(measured[1]["shells"], serde_json::json!([]));
    assert_eq!(measured[2]["name"], busybox.as_str());
    assert_eq!(measured[2]["layers"], 1);
}
