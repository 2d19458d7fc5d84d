//! Reading OCI image archives (`docker buildx build --output type=oci`) natively:
//! the index, the image manifest and its blobs, and the files inside layers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::manifest::{Descriptor, Index, Manifest};
use super::reference::is_sha256_hex;
use super::registry::MAX_MANIFEST_BYTES;
use super::tar::{Budget, FileSource, Kind, Limits, TarReader};

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
        let source =
            FileSource::new(file).with_context(|| format!("reading {}", path.display()))?;
        let budget = Budget::new(Limits::oci_archive());
        let mut archive = TarReader::new(source, &budget, path.display().to_string());
        let mut blobs = BTreeMap::new();
        let mut index_bytes = None;
        let mut first = true;
        while let Some(entry) = archive.next_entry().with_context(|| {
            if first {
                "not an OCI archive: expected the tar file `docker buildx build --output type=oci,dest=…` writes"
            } else {
                "a broken OCI archive"
            }
        })? {
            first = false;
            let name = match super::tar::clean(&entry.name) {
                Ok(Some(name)) => name,
                Ok(None) => continue,
                Err(why) => {
                    return crate::error::fail(format!(
                        "{}: entry `{}` {why}: not an OCI archive we read",
                        path.display(),
                        entry.name
                    ))
                }
            };
            let name = name.as_str();
            let refuse = |reason: &str| {
                crate::error::fail(format!(
                    "{}: entry `{name}`: {reason}: not an OCI archive we read",
                    path.display()
                ))
            };
            if name == "index.json" {
                if entry.kind != Kind::File {
                    return refuse(&format!("a {}, not a file", entry.kind.name()));
                }
                if index_bytes.is_some() {
                    return refuse(
                        "a second index.json: which one an engine reads is anyone's guess",
                    );
                }
                if entry.size > MAX_MANIFEST_BYTES as u64 {
                    return refuse(&format!(
                        "{} bytes: an index is under {MAX_MANIFEST_BYTES}",
                        entry.size
                    ));
                }
                let mut bytes = Vec::with_capacity(entry.size as usize);
                archive.data().read_to_end(&mut bytes)?;
                index_bytes = Some(bytes);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                // Anything else under blobs/ is not a blob we could ask for.
                if is_sha256_hex(hex) {
                    if entry.kind != Kind::File {
                        return refuse(&format!("a {}, not a file", entry.kind.name()));
                    }
                    let location = BlobLocation {
                        offset: entry.data_offset,
                        size: entry.size,
                    };
                    if blobs.insert(format!("sha256:{hex}"), location).is_some() {
                        return refuse("the same blob twice");
                    }
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

    /// A blob's bytes, checked against its digest: a manifest, a config,
    /// never more than a registry would send us for one.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let size = self.blob_location(digest)?.size;
        if size > MAX_MANIFEST_BYTES as u64 {
            return crate::error::fail(format!(
                "{}: blob {digest} is {size} bytes: refused (manifests and configs are under {MAX_MANIFEST_BYTES})",
                self.path.display()
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
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

    /// One layer as a tar stream, after its bytes were proven to be the
    /// layer, read through the one strict reader and charged to `budget`.
    pub fn layer_tar<'b>(
        &self,
        layer: &Descriptor,
        budget: &'b Budget,
    ) -> Result<TarReader<'b, Box<dyn Read>>> {
        self.verify_blob(&layer.digest)?;
        let reader = self.blob_reader(&layer.digest)?;
        let reader: Box<dyn Read> = if layer.media_type.ends_with("gzip") {
            // Every gzip member, as Go's reader (and pigz) decompress them:
            // flate2's single-member decoder would stop after the first.
            Box::new(flate2::read::MultiGzDecoder::new(reader))
        } else if layer.media_type.ends_with("tar") {
            Box::new(reader)
        } else {
            bail!(
                "layer {} has media type {}: only tar and tar+gzip layers are read",
                layer.digest,
                layer.media_type
            );
        };
        Ok(TarReader::new(
            reader,
            budget,
            format!("{}: layer {}", self.path.display(), layer.digest),
        ))
    }

    /// Every file of one layer, with what makes it reproducible or not.
    pub fn layer_files(
        &self,
        layer: &Descriptor,
        budget: &Budget,
    ) -> Result<BTreeMap<String, FileEntry>> {
        let mut files = BTreeMap::new();
        let mut archive = self.layer_tar(layer, budget)?;
        while let Some(entry) = archive.next_entry()? {
            let Some(path) = super::tar::clean(&entry.name).map_err(|why| {
                crate::error::Failure(format!(
                    "{}: layer {}: `{}` {why}",
                    self.path.display(),
                    layer.digest,
                    entry.name.escape_debug()
                ))
            })?
            else {
                continue;
            };
            // Hashed as it streams: a layer may hold files larger than memory.
            let sha256 = crate::hash::reader_sha256(archive.data())?;
            files.insert(
                path,
                FileEntry {
                    kind: entry.kind.name(),
                    size: entry.size,
                    mode: entry.mode,
                    uid: entry.uid,
                    gid: entry.gid,
                    mtime: entry.mtime,
                    link: entry.link,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An OCI archive of one layer, written by hand; `tamper` changes the
    /// layer's bytes after its digest was taken.
    fn archive(dir: &Path, tamper: bool) -> PathBuf {
        archive_with(dir, tamper, b"hello")
    }

    /// [`archive`] whose one file, `hello.txt`, holds `content` (which
    /// starts with `hello` when `tamper` is set).
    pub(crate) fn archive_with(dir: &Path, tamper: bool, content: &[u8]) -> PathBuf {
        archive_padded(dir, tamper, content, 0)
    }

    /// [`archive_with`], its index.json padded with spaces to `index_size`
    /// bytes (when larger).
    fn archive_padded(dir: &Path, tamper: bool, content: &[u8], index_size: usize) -> PathBuf {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        archive_full(dir, tamper, content, index_size, config)
    }

    /// [`archive_padded`] with `config` as the image config.
    fn archive_full(
        dir: &Path,
        tamper: bool,
        content: &[u8],
        index_size: usize,
        config: &[u8],
    ) -> PathBuf {
        let mut layer = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        layer
            .append_data(&mut header, "hello.txt", content)
            .unwrap();
        let mut layer = layer.into_inner().unwrap();
        let layer_hex = crate::hash::hex_sha256(&layer);
        if tamper {
            let at = layer.windows(5).position(|w| w == b"hello").unwrap();
            layer[at] = b'j';
        }
        let config_hex = crate::hash::hex_sha256(config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_hex}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let manifest_hex = crate::hash::hex_sha256(manifest.as_bytes());
        let mut index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_hex}","size":{}}}]}}"#,
            manifest.len()
        );
        while index.len() < index_size {
            index.push(' ');
        }
        let path = dir.join("image.tar");
        let mut out = tar::Builder::new(File::create(&path).unwrap());
        for (name, bytes) in [
            (format!("blobs/sha256/{layer_hex}"), layer.as_slice()),
            (format!("blobs/sha256/{config_hex}"), config),
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

    /// A blob read whole (a manifest, a config) is refused past 4 MiB,
    /// before it is read; the manifest's media type is the index's.
    #[test]
    fn whole_blobs_are_small_and_the_media_type_is_the_indexs() {
        let dir = tempfile::tempdir().unwrap();
        let big = OciArchive::open(&archive_with(
            dir.path(),
            false,
            &vec![0; MAX_MANIFEST_BYTES + 1],
        ))
        .unwrap();
        let layer = big.manifest.layers[0].digest.clone();
        let error = big.read_blob(&layer).unwrap_err().to_string();
        assert!(
            error.contains("refused (manifests and configs are under"),
            "{error}"
        );
        assert_eq!(
            big.manifest_media_type(),
            crate::oci::manifest::OCI_MANIFEST
        );
        big.verify_blob(&layer).unwrap();
        // One header, the content, the two end blocks: exactly 4 MiB.
        let content = vec![0; MAX_MANIFEST_BYTES - 3 * 512];
        let at_limit = OciArchive::open(&archive_with(dir.path(), false, &content)).unwrap();
        let layer = &at_limit.manifest.layers[0];
        assert_eq!(layer.size, MAX_MANIFEST_BYTES as u64);
        assert_eq!(
            at_limit.read_blob(&layer.digest).unwrap().len(),
            MAX_MANIFEST_BYTES
        );
        assert_eq!(
            at_limit.config().unwrap(),
            serde_json::json!({"architecture": "amd64", "os": "linux"})
        );
    }

    /// An image config of exactly 4 MiB is read; a descriptor saying more
    /// is refused before anything is read.
    #[test]
    fn a_config_is_read_up_to_4_mib() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = r#"{"os":"linux","pad":""#.to_string();
        config.push_str(&"x".repeat((4 << 20) - config.len() - 2));
        config.push_str(r#""}"#);
        let path = archive_full(dir.path(), false, b"hello", 0, config.as_bytes());
        let mut archive = OciArchive::open(&path).unwrap();
        assert_eq!(archive.manifest.config.size, 4 << 20);
        assert_eq!(archive.config().unwrap()["os"], "linux");
        archive.manifest.config.size += 1;
        let error = archive.config().unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "the image config is {} bytes: refused (a config is under {} bytes)",
                (4 << 20) + 1,
                4 << 20
            )
        );
    }

    /// index.json may be as large as a manifest (4 MiB), not a byte more.
    #[test]
    fn an_index_is_read_up_to_the_manifest_limit() {
        let dir = tempfile::tempdir().unwrap();
        let at_limit = archive_padded(dir.path(), false, b"hello", MAX_MANIFEST_BYTES);
        OciArchive::open(&at_limit).unwrap();
        let over = archive_padded(dir.path(), false, b"hello", MAX_MANIFEST_BYTES + 1);
        let error = OciArchive::open(&over).err().unwrap().to_string();
        assert!(
            error.ends_with(&format!(
                "entry `index.json`: {} bytes: an index is under {MAX_MANIFEST_BYTES}: not an OCI archive we read",
                MAX_MANIFEST_BYTES + 1
            )),
            "{error}"
        );
    }

    #[test]
    fn layers_are_read_only_when_they_are_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let good = OciArchive::open(&archive(dir.path(), false)).unwrap();
        let budget = Budget::new(Limits::default());
        let files = good.layer_files(&good.manifest.layers[0], &budget).unwrap();
        assert_eq!(files["hello.txt"].sha256, crate::hash::hex_sha256(b"hello"));

        let bad = OciArchive::open(&archive(dir.path(), true)).unwrap();
        let error = bad
            .layer_files(&bad.manifest.layers[0], &budget)
            .unwrap_err();
        assert!(
            error.to_string().contains("the archive is corrupt"),
            "{error}"
        );
    }
}
