//! Reading OCI image archives (`docker buildx build --output type=oci`) natively:
//! the index, the image manifest and its blobs, and the files inside layers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::manifest::{Descriptor, Index, Manifest};
use super::reference::is_sha256_hex;

/// Where one blob sits inside the archive file.
#[derive(Debug, Clone, Copy)]
pub struct BlobLocation {
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug)]
pub struct OciArchive {
    pub path: PathBuf,
    /// `sha256:<hex>` → location of `blobs/sha256/<hex>`.
    blobs: BTreeMap<String, BlobLocation>,
    pub index: Index,
    /// The single image manifest the index points at, as raw bytes.
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
}

impl OciArchive {
    pub fn open(path: &Path) -> Result<OciArchive> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut blobs = BTreeMap::new();
        let mut index_bytes = None;
        for entry in archive
            .entries()
            .with_context(|| format!("{} is not a tar archive", path.display()))?
        {
            let mut entry = entry.with_context(|| format!("reading {}", path.display()))?;
            let name = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if name == "index.json" {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                index_bytes = Some(bytes);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                // Anything else under blobs/ is not a blob we could ask for.
                if is_sha256_hex(hex) {
                    blobs.insert(
                        format!("sha256:{hex}"),
                        BlobLocation {
                            offset: entry.raw_file_position(),
                            size: entry.size(),
                        },
                    );
                }
            }
        }
        let index_bytes = index_bytes
            .with_context(|| format!("{} has no index.json: not an OCI archive", path.display()))?;
        let index: Index = serde_json::from_slice(&index_bytes)
            .with_context(|| format!("{}: index.json", path.display()))?;
        index
            .check()
            .with_context(|| format!("{}: index.json", path.display()))?;
        let [entry] = index.manifests.as_slice() else {
            bail!(
                "{}: index.json lists {} manifests; expected exactly one image manifest",
                path.display(),
                index.manifests.len()
            );
        };
        let mut archive = OciArchive {
            path: path.to_path_buf(),
            blobs,
            index: index.clone(),
            manifest_bytes: Vec::new(),
            manifest: Manifest {
                media_type: None,
                config: entry.clone(),
                layers: Vec::new(),
            },
        };
        let manifest_bytes = archive.read_blob(&entry.digest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("{}: manifest {}", path.display(), entry.digest))?;
        manifest
            .check()
            .with_context(|| format!("{}: manifest {}", path.display(), entry.digest))?;
        archive.manifest = manifest;
        archive.manifest_bytes = manifest_bytes;
        Ok(archive)
    }

    /// The image manifest's digest, as a registry will compute it.
    pub fn manifest_digest(&self) -> &str {
        &self.index.manifests[0].digest
    }

    pub fn manifest_media_type(&self) -> &str {
        &self.index.manifests[0].media_type
    }

    pub fn blob_location(&self, digest: &str) -> Result<BlobLocation> {
        self.blobs.get(digest).copied().with_context(|| {
            format!(
                "{}: blob {digest} is missing from the archive",
                self.path.display()
            )
        })
    }

    /// A blob's bytes, checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.blob_reader(digest)?.read_to_end(&mut bytes)?;
        self.check_digest(digest, &crate::hash::hex_sha256(&bytes))?;
        Ok(bytes)
    }

    /// Hash a blob as it streams and compare with its name.
    pub fn verify_blob(&self, digest: &str) -> Result<()> {
        let hex = crate::hash::reader_sha256(self.blob_reader(digest)?)?;
        self.check_digest(digest, &hex)
    }

    fn check_digest(&self, digest: &str, hex: &str) -> Result<()> {
        let actual = format!("sha256:{hex}");
        if actual != digest {
            bail!(
                "{}: blob {digest} holds content with digest {actual}: the archive is corrupt",
                self.path.display()
            );
        }
        Ok(())
    }

    /// A reader over one blob (unchecked: callers that stream verify as they go).
    pub fn blob_reader(&self, digest: &str) -> Result<impl Read> {
        let location = self.blob_location(digest)?;
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(location.offset))?;
        Ok(BufReader::new(file).take(location.size))
    }

    /// The image config, refused when its descriptor says it is larger than
    /// any real one (an archive handed to us may be anyone's).
    pub fn config(&self) -> Result<serde_json::Value> {
        const MAX_CONFIG: u64 = 4 << 20;
        if self.manifest.config.size > MAX_CONFIG {
            anyhow::bail!(
                "the image config is {} bytes: refused (a config is under {MAX_CONFIG} bytes)",
                self.manifest.config.size
            );
        }
        let bytes = self.read_blob(&self.manifest.config.digest)?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// One layer as a tar stream, after its bytes were proven to be the layer.
    pub fn layer_tar(&self, layer: &Descriptor) -> Result<tar::Archive<Box<dyn Read>>> {
        self.verify_blob(&layer.digest)?;
        let reader = self.blob_reader(&layer.digest)?;
        let reader: Box<dyn Read> = if layer.media_type.ends_with("gzip") {
            Box::new(flate2::read::GzDecoder::new(reader))
        } else if layer.media_type.ends_with("tar") {
            Box::new(reader)
        } else {
            bail!(
                "layer {} has media type {}: only tar and tar+gzip layers are read",
                layer.digest,
                layer.media_type
            );
        };
        Ok(tar::Archive::new(reader))
    }

    /// Every file of one layer, with what makes it reproducible or not.
    pub fn layer_files(&self, layer: &Descriptor) -> Result<BTreeMap<String, FileEntry>> {
        let mut files = BTreeMap::new();
        let mut archive = self.layer_tar(layer)?;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let header = entry.header().clone();
            let link = entry
                .link_name()?
                .map(|target| target.to_string_lossy().into_owned());
            // Hashed as it streams: a layer may hold files larger than memory.
            let sha256 = crate::hash::reader_sha256(&mut entry)?;
            files.insert(
                path,
                FileEntry {
                    kind: kind_name(header.entry_type()),
                    size: header.size().unwrap_or(0),
                    mode: header.mode().unwrap_or(0),
                    uid: header.uid().unwrap_or(0),
                    gid: header.gid().unwrap_or(0),
                    mtime: header.mtime().unwrap_or(0),
                    link,
                    sha256,
                },
            );
        }
        Ok(files)
    }
}

/// The attributes of one file in a layer that matter for reproducibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub kind: &'static str,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Option<String>,
    pub sha256: String,
}

pub fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file",
        tar::EntryType::Directory => "directory",
        tar::EntryType::Symlink => "symlink",
        tar::EntryType::Link => "hardlink",
        tar::EntryType::Char => "char device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OCI archive of one layer, written by hand; `tamper` changes the
    /// layer's bytes after its digest was taken.
    fn archive(dir: &Path, tamper: bool) -> PathBuf {
        let mut layer = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        layer
            .append_data(&mut header, "hello.txt", &b"hello"[..])
            .unwrap();
        let mut layer = layer.into_inner().unwrap();
        let layer_hex = crate::hash::hex_sha256(&layer);
        if tamper {
            let at = layer.windows(5).position(|w| w == b"hello").unwrap();
            layer[at] = b'j';
        }
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let config_hex = crate::hash::hex_sha256(config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_hex}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let manifest_hex = crate::hash::hex_sha256(manifest.as_bytes());
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_hex}","size":{}}}]}}"#,
            manifest.len()
        );
        let path = dir.join("image.tar");
        let mut out = tar::Builder::new(File::create(&path).unwrap());
        for (name, bytes) in [
            (format!("blobs/sha256/{layer_hex}"), layer.as_slice()),
            (format!("blobs/sha256/{config_hex}"), &config[..]),
            (format!("blobs/sha256/{manifest_hex}"), manifest.as_bytes()),
            ("index.json".to_string(), index.as_bytes()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.append_data(&mut header, name, bytes).unwrap();
        }
        out.finish().unwrap();
        path
    }

    #[test]
    fn layers_are_read_only_when_they_are_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let good = OciArchive::open(&archive(dir.path(), false)).unwrap();
        let files = good.layer_files(&good.manifest.layers[0]).unwrap();
        assert_eq!(files["hello.txt"].sha256, crate::hash::hex_sha256(b"hello"));

        let bad = OciArchive::open(&archive(dir.path(), true)).unwrap();
        let error = bad.layer_files(&bad.manifest.layers[0]).unwrap_err();
        assert!(
            error.to_string().contains("the archive is corrupt"),
            "{error}"
        );
    }
}
