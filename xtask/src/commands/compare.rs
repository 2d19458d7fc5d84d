//! `cargo xtask compare IMAGE REF…`: one of our built images beside others
//! (an OCI archive, another image of ours, or a registry reference, pulled
//! into a scratch archive with every blob checked against its digest), in
//! the numbers a platform engineer weighs: sizes, layers, files, set-id
//! files, shells and package managers, packages and CVEs where our records
//! know them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::StreamExt as _;
use serde::Serialize;
use sha2::Digest as _;

use super::args::JsonArg;
use crate::model::catalog::Catalog;
use crate::oci::archive::OciArchive;
use crate::oci::auth::Role;
use crate::oci::manifest::AnyManifest;
use crate::oci::reference::ImageRef;
use crate::oci::registry::{self, Registry};
use crate::oci::rootfs::{self, Kind};
use crate::records::build::BuildRecord;
use crate::records::image_dir;
use crate::records::steps::StepRecord;

/// Compare a built image with others: sizes, layers, files, set-id files,
/// shells and package managers, packages and CVEs.
#[derive(Debug, Args)]
pub struct Compare {
    /// Our image (its build record names the archive).
    pub image: String,
    /// What to compare with: an OCI archive, another image of ours, or a
    /// registry reference.
    #[arg(value_name = "REF", required = true)]
    pub references: Vec<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// One image's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Measured {
    pub name: String,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub layers: usize,
    pub files: usize,
    pub setid_files: Vec<String>,
    pub shells: Vec<String>,
    pub package_managers: Vec<String>,
    /// From our SBOM, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<usize>,
    /// From our scan record, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cves: Option<String>,
}

const SHELLS: &[&str] = &["sh", "ash", "bash", "dash", "zsh", "ksh", "busybox"];
const PACKAGE_MANAGERS: &[&str] = &[
    "apk", "apt", "apt-get", "dpkg", "rpm", "yum", "dnf", "microdnf", "zypper", "pip", "pip3",
    "npm", "gem",
];
/// Package databases: a manager's state even where its program is gone.
const PACKAGE_DATABASES: &[&str] = &["lib/apk/db/installed", "var/lib/dpkg/status", "var/lib/rpm"];

/// The numbers of the image in `archive`.
pub fn measure(name: &str, archive: &OciArchive) -> Result<Measured> {
    let filesystem = rootfs::read(archive)?;
    let mut measured = Measured {
        name: name.to_string(),
        compressed_bytes: archive.manifest.layers.iter().map(|l| l.size).sum::<u64>()
            + archive.manifest.config.size,
        layers: archive.manifest.layers.len(),
        ..Measured::default()
    };
    // Hard links are one file's bytes, counted once.
    let mut contents = std::collections::BTreeSet::new();
    for (path, entry) in &filesystem.entries {
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
        let in_bin = dir.ends_with("bin");
        if matches!(entry.kind, Kind::File | Kind::Hardlink) {
            measured.files += 1;
            if entry.origin().is_none_or(|origin| contents.insert(origin)) {
                measured.uncompressed_bytes += entry.size;
            }
            if entry.mode & 0o6000 != 0 {
                measured.setid_files.push(format!("/{path}"));
            }
        }
        let program = matches!(entry.kind, Kind::File | Kind::Hardlink | Kind::Symlink);
        if program && in_bin && SHELLS.contains(&file) {
            measured.shells.push(format!("/{path}"));
        }
        if program && in_bin && PACKAGE_MANAGERS.contains(&file) {
            measured.package_managers.push(format!("/{path}"));
        }
        if PACKAGE_DATABASES.contains(&path.as_str()) {
            measured
                .package_managers
                .push(format!("/{path} (database)"));
        }
    }
    Ok(measured)
}

/// What our records add: packages from the SBOM, CVEs from the scan.
fn from_records(root: &Path, image: &str, measured: &mut Measured) {
    let sbom = image_dir(root, image).join("sbom.spdx.json");
    if let Ok(bytes) = std::fs::read(&sbom) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            measured.packages = value["packages"].as_array().map(|p| p.len());
        }
    }
    if let Ok(Some(scan)) = StepRecord::load(root, image, "scan") {
        measured.cves = Some(scan.summary);
    }
}

impl Compare {
    pub fn run(self, root: &Path) -> Result<()> {
        let catalog = Catalog::load(root)?;
        let mut all = vec![ours(root, &self.image)?];
        let scratch = tempfile::tempdir()?;
        for (index, reference) in self.references.iter().enumerate() {
            let measured = if Path::new(reference).is_file() {
                measure(reference, &OciArchive::open(Path::new(reference))?)?
            } else if catalog.image(reference).is_some() {
                ours(root, reference)?
            } else {
                let archive = scratch.path().join(format!("{index}.tar"));
                pull(reference, &archive)?;
                measure(reference, &OciArchive::open(&archive)?)?
            };
            all.push(measured);
        }
        // The table for people; on stderr when the JSON takes stdout.
        if self.json.json.as_deref() == Some(Path::new("-")) {
            crate::ui::say_more!("{}", markdown(&all));
        } else {
            print!("{}", markdown(&all));
        }
        self.json.write("compare", &[], &all)
    }
}

/// One of our images, from its verified archive and records.
fn ours(root: &Path, image: &str) -> Result<Measured> {
    let record = BuildRecord::load(root, image)?;
    let archive = OciArchive::open(&record.verified_archive(root)?)?;
    let mut measured = measure(image, &archive)?;
    from_records(root, image, &mut measured);
    Ok(measured)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1048576.0)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ").replace('|', "\\|")
    }
}

/// How one row's cell is written from one image's numbers.
type Cell = dyn Fn(&Measured) -> String;

/// The numbers side by side, one column per image.
pub fn markdown(all: &[Measured]) -> String {
    let mut text = String::from("| |");
    for m in all {
        text.push_str(&format!(" {} |", m.name.replace('|', "\\|")));
    }
    text.push_str("\n|---|");
    text.push_str(&"---|".repeat(all.len()));
    text.push('\n');
    let rows: [(&str, &Cell); 9] = [
        ("compressed", &|m| mib(m.compressed_bytes)),
        ("uncompressed", &|m| mib(m.uncompressed_bytes)),
        ("layers", &|m| m.layers.to_string()),
        ("files", &|m| m.files.to_string()),
        ("set-id files", &|m| list(&m.setid_files)),
        ("shells", &|m| list(&m.shells)),
        ("package managers", &|m| list(&m.package_managers)),
        ("packages (SBOM)", &|m| {
            m.packages
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into())
        }),
        ("CVEs (scan)", &|m| {
            m.cves.clone().unwrap_or_else(|| "-".into())
        }),
    ];
    for (label, value) in rows {
        text.push_str(&format!("| {label} |"));
        for m in all {
            text.push_str(&format!(" {} |", value(m)));
        }
        text.push('\n');
    }
    text
}

/// Pull `reference` (an image manifest, not an index) into an OCI archive at
/// `dest`: every blob bounded by its descriptor and checked against its digest.
pub fn pull(reference: &str, dest: &Path) -> Result<()> {
    let reference = ImageRef::parse(reference)?;
    let blobs_dir = dest.with_extension("blobs");
    std::fs::create_dir_all(&blobs_dir)?;
    registry::block_on(async {
        let client = Registry::connect_to(&reference, Role::Source).await?;
        let manifest_bytes = client.pull_manifest(&reference).await?;
        // Asked by digest: what came is that manifest, or nothing is measured.
        if let Some(wanted) = reference.digest_hex() {
            let got = crate::hash::hex_sha256(&manifest_bytes);
            if got != wanted {
                bail!("{reference}: the registry served a manifest with digest sha256:{got}");
            }
        }
        let manifest = match AnyManifest::parse(&manifest_bytes)? {
            AnyManifest::Image(manifest) => manifest,
            AnyManifest::Index(_) => bail!(
                "{reference} is an image index: name one platform's manifest by digest (`…@sha256:<hex>`)"
            ),
        };
        let manifest_hex = crate::hash::hex_sha256(&manifest_bytes);
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        let manifest_path = blobs_dir.join(&manifest_hex);
        std::fs::write(&manifest_path, &manifest_bytes)?;
        files.push((manifest_hex.clone(), manifest_path));
        let repository = reference.api_repository();
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let hex = blob.digest.trim_start_matches("sha256:").to_string();
            let path = blobs_dir.join(&hex);
            let mut file = std::fs::File::create(&path)?;
            let mut hasher = sha2::Sha256::new();
            let mut seen = 0u64;
            let mut stream = client.pull_blob(&repository, &blob.digest).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                seen += chunk.len() as u64;
                if seen > blob.size {
                    bail!(
                        "{}: more bytes than its descriptor's {}",
                        blob.digest,
                        blob.size
                    );
                }
                hasher.update(&chunk);
                file.write_all(&chunk)?;
            }
            if crate::hash::hex(&hasher.finalize()) != hex || seen != blob.size {
                bail!("{}: the bytes served are not that blob", blob.digest);
            }
            files.push((hex, path));
        }
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| crate::oci::manifest::OCI_MANIFEST.to_string());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": media_type,
                "digest": format!("sha256:{manifest_hex}"),
                "size": manifest_bytes.len(),
            }],
        });
        let mut tar = tar::Builder::new(std::fs::File::create(dest)?);
        let mut add = |name: &str, bytes: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes)?;
            Ok(())
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", serde_json::to_string(&index)?.as_bytes())?;
        for (hex, path) in files {
            tar.append_path_with_name(&path, format!("blobs/sha256/{hex}"))
                .with_context(|| format!("archiving {}", path.display()))?;
        }
        tar.finish()?;
        Ok(())
    })?
}
