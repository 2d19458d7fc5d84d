//! sbom on images the test engine built: deterministic, valid per spdx-tools
//! and the official CycloneDX 1.6 schema, every file hash the engine's own
//! file's; what syft makes of the same archives; and the filesystem reading
//! behind sbom and malcontent, equal to the engine's own export.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use serde_json::Value;
use xtask::oci::tar::{Budget, Kind, Limits};

/// What one path of a filesystem is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    /// A regular file, by the sha256 of its content.
    File(String),
    Symlink(String),
}

/// What `docker create` adds to every container: not the image's.
fn engine_added(path: &str) -> bool {
    path == ".dockerenv"
        || path == "dev"
        || path.starts_with("dev/")
        || ["etc/hostname", "etc/hosts", "etc/mtab", "etc/resolv.conf"].contains(&path)
}

/// The engine's own view of an image's filesystem: the archive loaded,
/// a container created from it, and that container exported.
fn engine_filesystem(archive: &Path) -> BTreeMap<String, Node> {
    let exported = engine_export(archive);
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut tar = tar::Archive::new(&exported[..]);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if path.is_empty() || engine_added(&path) {
            continue;
        }
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let node = match entry.header().entry_type() {
            tar::EntryType::Directory => Node::Dir,
            tar::EntryType::Symlink => Node::Symlink(link.unwrap()),
            // A hard link is its target's content.
            tar::EntryType::Link => nodes[link.unwrap().trim_start_matches("./")].clone(),
            _ => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                Node::File(sha256_hex(&bytes))
            }
        };
        nodes.insert(path, node);
    }
    nodes
}

/// A folder's tree, as [`engine_filesystem`] describes one.
fn folder_filesystem(root: &Path) -> BTreeMap<String, Node> {
    let mut nodes = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            let node = if metadata.is_symlink() {
                Node::Symlink(std::fs::read_link(&path).unwrap().display().to_string())
            } else if metadata.is_dir() {
                pending.push(path.clone());
                Node::Dir
            } else {
                Node::File(sha256_file(&path))
            };
            nodes.insert(relative, node);
        }
    }
    nodes
}

/// `(kind, name, link)` of every entry of every layer of an archive.
fn layer_entries(archive: &Path) -> Vec<(Kind, String, String)> {
    let archive = xtask::oci::archive::OciArchive::open(archive).unwrap();
    let budget = Budget::new(Limits::default());
    let mut entries = Vec::new();
    for layer in &archive.manifest.layers {
        let mut tar = archive.layer_tar(layer, &budget).unwrap();
        while let Some(entry) = tar.next_entry().unwrap() {
            entries.push((entry.kind, entry.name, entry.link.unwrap_or_default()));
        }
    }
    entries
}

/// The CycloneDX 1.6 JSON schema that PyPI's cyclonedx-python-lib ships
/// (test-env installs it), and the folder its `$ref`s resolve in.
fn cyclonedx_schema() -> PathBuf {
    let lib = layout().venv().join("lib");
    std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e}: {PROVISION}", lib.display()))
        .map(|python| {
            python
                .unwrap()
                .path()
                .join("site-packages/cyclonedx/schema/_res/bom-1.6.SNAPSHOT.schema.json")
        })
        .find(|schema| schema.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no CycloneDX 1.6 schema under {}: {PROVISION}",
                lib.display()
            )
        })
}

/// Whether the official validators accept a document (spdx-tools for SPDX,
/// check-jsonschema with the CycloneDX 1.6 schema, offline).
fn valid(document: &Path) -> (bool, String) {
    let output = if document.to_string_lossy().ends_with(".spdx.json") {
        Command::new(require_tool("pyspdxtools"))
            .arg("-i")
            .arg(document)
            .output()
            .unwrap()
    } else {
        let schema = cyclonedx_schema();
        Command::new(require_tool("check-jsonschema"))
            .arg("--schemafile")
            .arg(&schema)
            .arg("--base-uri")
            .arg(format!("file://{}/", schema.parent().unwrap().display()))
            .arg(document)
            .output()
            .unwrap()
    };
    (output.status.success(), text(&output))
}

const DOCUMENTS: [&str; 2] = ["sbom.spdx.json", "sbom.cdx.json"];

#[test]
fn native_sboms_are_deterministic_valid_and_true_to_the_engines_files() {
    require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build"]);
    assert!(output.status.success(), "{}", text(&output));
    let json = root.join("sbom.json");
    let output = xtask_in(root, &["sbom", "--all", "--json", json.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let images = ["base", "base-static", "hello"];
    assert_eq!(reports(&json).len(), images.len());
    let read =
        |image: &str, file: &str| std::fs::read(root.join("out").join(image).join(file)).unwrap();
    let first: Vec<Vec<u8>> = images
        .iter()
        .flat_map(|image| DOCUMENTS.map(|file| read(image, file)))
        .collect();

    // The same archives: byte for byte the same documents.
    let output = xtask_in(root, &["sbom", "--all"]);
    assert!(output.status.success(), "{}", text(&output));
    let second: Vec<Vec<u8>> = images
        .iter()
        .flat_map(|image| DOCUMENTS.map(|file| read(image, file)))
        .collect();
    assert!(first == second, "the SBOMs changed between two runs");

    // Valid per the official validators, which do reject a broken document.
    for image in images {
        for file in DOCUMENTS {
            let (ok, said) = valid(&root.join("out").join(image).join(file));
            assert!(ok, "{image} {file}: {said}");
        }
    }
    let broken = tempfile::tempdir().unwrap();
    let mut spdx: Value = serde_json::from_slice(&read("base", DOCUMENTS[0])).unwrap();
    spdx["packages"][1]["SPDXID"] = "not an SPDX id".into();
    let mut cyclonedx: Value = serde_json::from_slice(&read("base", DOCUMENTS[1])).unwrap();
    cyclonedx["components"][0]["type"] = "not-a-type".into();
    for (file, value) in [("x.spdx.json", spdx), ("x.cdx.json", cyclonedx)] {
        let path = broken.path().join(file);
        std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
        assert!(!valid(&path).0, "the validator accepted a broken {file}");
    }

    // Every file the SBOM lists is the engine's file, and none is missing.
    for image in ["base", "hello"] {
        let engine = engine_filesystem(&root.join("out").join(image).join("image.tar"));
        let spdx: Value = serde_json::from_slice(&read(image, DOCUMENTS[0])).unwrap();
        let listed: BTreeMap<String, String> = spdx["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|file| {
                let sha256 = file["checksums"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["algorithm"] == "SHA256")
                    .unwrap()["checksumValue"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let path = file["fileName"].as_str().unwrap().trim_start_matches("./");
                (path.to_string(), sha256)
            })
            .collect();
        let engine_files: BTreeMap<String, String> = engine
            .iter()
            .filter_map(|(path, node)| match node {
                Node::File(sha256) => Some((path.clone(), sha256.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(listed, engine_files, "{image}");
    }

    // What the SBOM says of base: its four StageX inputs, pinned, with purls
    // and CPEs where NVD has one, and which package left each file.
    let standins: BTreeMap<String, (Option<String>, String)> = standins(root)
        .into_iter()
        .map(|(package, tag, hex)| (package, (tag, hex)))
        .collect();
    let prefix = format!("{}/stagex", require_engine());
    let spdx: Value = serde_json::from_slice(&read("base", DOCUMENTS[0])).unwrap();
    let packages: BTreeMap<&str, &Value> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p))
        .collect();
    let record = record(root, "base");
    assert_eq!(
        packages["base"]["versionInfo"],
        record.manifest_digest.as_str()
    );
    for (package, (tag, hex)) in &standins {
        let entry = packages[package.as_str()];
        let refs = entry["externalRefs"].as_array().unwrap();
        let locator = |kind: &str| {
            refs.iter()
                .find(|r| r["referenceType"] == kind)
                .map(|r| r["referenceLocator"].as_str().unwrap().to_string())
        };
        let tag_qualifier = tag
            .as_ref()
            .map(|t| format!("&tag={t}"))
            .unwrap_or_default();
        assert_eq!(
            locator("purl").unwrap(),
            format!(
                "pkg:oci/{package}@sha256%3A{hex}?repository_url={prefix}/{package}{tag_qualifier}"
            )
        );
        assert_eq!(entry["checksums"][0]["checksumValue"], hex.as_str());
        let cpe = match package.as_str() {
            "core-musl" => Some("cpe:2.3:a:musl-libc:musl:1.2.5:*:*:*:*:*:*:*".to_string()),
            "core-busybox" => Some("cpe:2.3:a:busybox:busybox:1.37.0:*:*:*:*:*:*:*".to_string()),
            _ => None,
        };
        assert_eq!(locator("cpe23Type"), cpe, "{package}");
    }
    let generated_from: BTreeSet<(String, String)> = spdx["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "GENERATED_FROM")
        .map(|r| {
            let file = spdx["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["SPDXID"] == r["spdxElementId"])
                .unwrap();
            (
                file["fileName"].as_str().unwrap().to_string(),
                r["relatedSpdxElement"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (file, package) in [
        ("./usr/bin/busybox", "core-busybox"),
        ("./usr/lib/libc.so", "core-musl"),
        (
            "./etc/ssl/certs/ca-certificates.crt",
            "core-ca-certificates",
        ),
        ("./etc/passwd", "core-filesystem"),
    ] {
        assert!(
            generated_from.contains(&(file.to_string(), format!("SPDXRef-Package-{package}"))),
            "{file} from {package}: {generated_from:?}"
        );
    }
    // hello is built on base: base is its package, by digest; the file its
    // own RUN wrote is traced to no package.
    let hello: Value = serde_json::from_slice(&read("hello", DOCUMENTS[1])).unwrap();
    let base = hello["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "base")
        .unwrap();
    assert_eq!(
        base["purl"],
        format!(
            "pkg:oci/base@sha256%3A{}",
            record.manifest_digest.trim_start_matches("sha256:")
        )
        .as_str()
    );
    assert!(hello["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "file" && c["name"] == "/home/user/hello.txt"));

    // syft, on the same archive, sees what a generic scanner can: StageX
    // images carry no package database, so it finds only what its binary
    // classifiers recognise (the stand-in's busybox, Debian's 1.35.0), and
    // nothing of musl, the CA bundle or the filesystem layout, which the
    // native SBOM lists with their digests.
    let syft = xtask::commands::sbom::foreign::packages(&read("base", "syft.spdx.json")).unwrap();
    let found: Vec<(&str, &str)> = syft
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(found, [("busybox", "1.35.0")]);
    let native = xtask::commands::sbom::foreign::packages(&read("base", DOCUMENTS[0])).unwrap();
    let names: Vec<&str> = native.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "core-busybox",
            "core-ca-certificates",
            "core-filesystem",
            "core-musl"
        ]
    );
    let cdx = xtask::commands::sbom::foreign::packages(&read("base", "syft.cdx.json")).unwrap();
    assert_eq!(cdx, syft, "syft's two documents agree");
    let ours = xtask::commands::sbom::foreign::packages(&read("base", DOCUMENTS[1])).unwrap();
    assert_eq!(ours, native, "so do ours");
    assert!(
        text(&output).contains(
            "[base] sbom: 4 package(s), 6 file(s), 6 traced to a package; syft found 1 package(s)"
        ),
        "{}",
        text(&output)
    );
}

/// An image whose layers hold whiteouts, an opaque directory, hard links and
/// symlinks, built by the engine: our extraction is the engine's own export.
#[test]
fn extraction_matches_the_engines_own_filesystem() {
    require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let mut containerfile = busybox_image(
        root,
        &[
            r#"["/usr/bin/busybox", "sh", "-c", "B=/usr/bin/busybox; $B mkdir -p /data/keep /data/gone /data/opaque && echo a > /data/keep/a && echo b > /data/gone/b && echo c > /data/opaque/c && echo old > /data/replaced && $B ln /data/keep/a /data/keep/a-hard && $B ln /data/keep/a /data/keep/a-hard2 && $B ln -s ../keep/a /data/link && $B ln -s /data/keep /data/abs-link && echo EVIL > /data/evil && $B ln /data/evil /data/innocent"]"#,
            r#"["/usr/bin/busybox", "sh", "-c", "B=/usr/bin/busybox; $B rm -rf /data/gone && $B rm /data/keep/a-hard /data/opaque/c /data/evil && echo d > /data/opaque/d && echo new > /data/replaced"]"#,
        ],
    );
    // BuildKit writes single whiteouts, never an opaque marker: a COPY of a
    // file named like one puts it in a layer, and the engine honours it.
    containerfile.push_str("COPY opaque/ /data/opaque/\n");
    add_image(root, "layers", &containerfile);
    std::fs::create_dir_all(root.join("layers/opaque")).unwrap();
    std::fs::write(root.join("layers/opaque/.wh..wh..opq"), "").unwrap();
    std::fs::write(root.join("layers/opaque/e"), "e\n").unwrap();
    let output = xtask_in(root, &["build", "layers"]);
    assert!(output.status.success(), "{}", text(&output));
    let archive_path = root.join("out/layers/image.tar");

    // The archive does hold each case.
    let entries = layer_entries(&archive_path);
    let has = |kind: Kind, name: &str| entries.iter().any(|(k, n, _)| *k == kind && n == name);
    assert!(has(Kind::File, "data/.wh.gone"), "{entries:?}");
    assert!(has(Kind::File, "data/keep/.wh.a-hard"), "{entries:?}");
    assert!(has(Kind::File, "data/opaque/.wh..wh..opq"), "{entries:?}");
    assert!(has(Kind::Hardlink, "data/keep/a-hard2"), "{entries:?}");
    assert!(has(Kind::Symlink, "data/abs-link"), "{entries:?}");

    let archive = xtask::oci::archive::OciArchive::open(&archive_path).unwrap();
    let dest = tempfile::tempdir().unwrap();
    xtask::oci::rootfs::extract(&archive, dest.path()).unwrap();
    let ours = folder_filesystem(dest.path());
    let file = |path: &str| ours.get(path).cloned();
    let content = |text: &str| Some(Node::File(sha256_hex(text.as_bytes())));
    assert_eq!(file("data/keep/a"), content("a\n"));
    assert_eq!(file("data/keep/a-hard2"), content("a\n"));
    assert_eq!(file("data/keep/a-hard"), None, "whited out");
    assert_eq!(file("data/gone"), None, "whited out, with what it held");
    assert_eq!(file("data/gone/b"), None);
    assert_eq!(file("data/opaque/c"), None, "hidden by the opaque marker");
    assert_eq!(file("data/opaque/d"), None, "hidden by the opaque marker");
    assert_eq!(file("data/opaque/e"), content("e\n"));
    assert_eq!(file("data/replaced"), content("new\n"));
    assert_eq!(file("data/link"), Some(Node::Symlink("../keep/a".into())));
    // An absolute link is written relative to the extracted tree, so it
    // cannot reach this machine's /data.
    assert_eq!(
        file("data/abs-link"),
        Some(Node::Symlink("../data/keep".into()))
    );
    // A hard link outlives the name it was made from, content and all.
    assert_eq!(file("data/evil"), None);
    assert_eq!(file("data/innocent"), content("EVIL\n"));
    let inode = |path: &str| std::fs::metadata(dest.path().join(path)).unwrap().ino();
    assert_eq!(
        inode("data/keep/a"),
        inode("data/keep/a-hard2"),
        "still one file"
    );

    let mut engine = engine_filesystem(&archive_path);
    // The engine makes /etc for the files it adds; the image has none.
    if !ours.contains_key("etc") {
        engine.remove("etc");
    }
    let ours: BTreeMap<String, Node> = ours
        .into_iter()
        .filter(|(path, _)| !engine_added(path))
        .collect();
    // Links as extraction writes them: inside the tree (absolute ones
    // relative to it), the same files reached.
    let engine: BTreeMap<String, Node> = engine
        .into_iter()
        .map(|(path, node)| match node {
            Node::Symlink(target) => {
                let inside = xtask::oci::rootfs::in_tree_target(&path, &target).unwrap_or(target);
                (path, Node::Symlink(inside))
            }
            node => (path, node),
        })
        .collect();
    assert_eq!(ours, engine);

    // The SBOM lists the same regular files, hard links included.
    let output = xtask_in(root, &["sbom", "layers", "--no-syft"]);
    assert!(output.status.success(), "{}", text(&output));
    let spdx: Value =
        serde_json::from_slice(&std::fs::read(root.join("out/layers/sbom.spdx.json")).unwrap())
            .unwrap();
    let listed: BTreeMap<String, Node> = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            let sha256 = file["checksums"][1]["checksumValue"].as_str().unwrap();
            let path = file["fileName"].as_str().unwrap().trim_start_matches("./");
            (path.to_string(), Node::File(sha256.to_string()))
        })
        .collect();
    let engine_files: BTreeMap<String, Node> = engine
        .into_iter()
        .filter(|(_, node)| matches!(node, Node::File(_)))
        .collect();
    assert_eq!(listed, engine_files);
}
