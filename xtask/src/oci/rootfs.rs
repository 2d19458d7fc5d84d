//! An image's final filesystem, read natively from its OCI archive: layers
//! applied in order, whiteouts (`.wh.<name>`) and opaque directories
//! (`.wh..wh..opq`) honoured, hard links and symlinks kept as links.
//!
//! Layers come from outside: a path that is absolute, climbs with `..`, or
//! would be written through a symlink (of any layer) is refused with the layer
//! and path named. [`extract`] writes the final filesystem under a folder,
//! links last, so nothing it writes can land outside that folder.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::archive::OciArchive;
use super::tar::{Budget, Kind as TarKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    Hardlink,
    /// Devices and fifos: listed, never created by [`extract`].
    Special(&'static str),
}

/// One path of the final filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// Content hashes of regular files (and hard links, of their target).
    pub sha256: Option<String>,
    pub sha1: Option<String>,
    /// Symlink target as written, or the hard link's target path.
    pub link: Option<String>,
    /// The layer (0-based) that left this entry.
    pub layer: usize,
    /// Its position in that layer's tar stream.
    ordinal: usize,
    /// Where the bytes of a file or hard link are: (layer, position) of the
    /// tar entry that carried them. A hard link keeps its content when the
    /// path it was linked to is later removed or replaced.
    content: Option<(usize, usize)>,
}

/// Path (relative, `/`-separated, no `./`) → entry.
#[derive(Debug, Default, Clone)]
pub struct Rootfs {
    pub entries: BTreeMap<String, Entry>,
}

impl Rootfs {
    /// Regular files, hard links included (each a name of a regular file),
    /// with their contents' hashes.
    pub fn files(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries
            .iter()
            .filter(|(_, entry)| matches!(entry.kind, Kind::File | Kind::Hardlink))
    }
}

/// A tar path made safe: relative, no `..`, no empty name (`./` and
/// repeated slashes dropped, as engines drop them).
fn clean(layer: usize, raw: &str) -> Result<Option<String>> {
    match super::tar::clean(raw) {
        Ok(path) => Ok(path),
        Err(why) => bail!("layer {}: `{raw}` {why}", layer + 1),
    }
}

/// Parents of a path, shortest first: `a/b/c` → `a`, `a/b`.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(at, _)| &path[..at])
}

/// Remove everything below the folder `dir` (not `dir` itself). Paths under
/// `dir/` sort together, between `dir/` and `dir0` (`0` follows `/`): a range,
/// not a scan of every entry.
fn remove_under(entries: &mut BTreeMap<String, Entry>, dir: &str) {
    let below: Vec<String> = entries
        .range(format!("{dir}/")..format!("{dir}0"))
        .map(|(path, _)| path.clone())
        .collect();
    for path in below {
        entries.remove(&path);
    }
}

/// Where the bytes of a file are: the layer (0-based) and the position in
/// its tar stream of the entry that carried them.
pub type Origin = (usize, usize);

impl Entry {
    /// An entry for unit tests elsewhere: owned by root, mode 0755, from the
    /// first layer; a file's content is its own.
    #[cfg(test)]
    pub fn example(kind: Kind, link: Option<&str>) -> Entry {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let ordinal = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = matches!(kind, Kind::File);
        Entry {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            sha1: None,
            link: link.map(str::to_string),
            layer: 0,
            ordinal,
            content: file.then_some((0, ordinal)),
        }
    }

    /// Where this file's (or hard link's) bytes came from.
    pub fn origin(&self) -> Option<Origin> {
        self.content
    }
}

/// What [`read_with`] hands to its inspector: the whole file, or only its size
/// when it is larger than the reader agreed to hold.
pub enum Sniffed<'b> {
    Whole(&'b [u8]),
    TooLarge { size: u64 },
}

/// How [`read_with`] reads each regular file's bytes.
pub struct Reading<'a, T> {
    /// SHA-256 and SHA-1 of every file (SBOMs need them; other readers need not pay).
    pub hashes: bool,
    /// How many first bytes of each file `wants` is shown.
    pub head: usize,
    /// Whether a file (its path, its first bytes) is handed to `inspect`.
    pub wants: &'a dyn Fn(&str, &[u8]) -> bool,
    /// Such a file is read whole only up to this size.
    pub max_size: u64,
    pub inspect: &'a mut dyn FnMut(&str, Sniffed<'_>) -> T,
}

/// The final filesystem of `archive`'s image, every file hashed.
pub fn read(archive: &OciArchive) -> Result<Rootfs> {
    let mut ignore = |_: &str, _: Sniffed<'_>| {};
    let reading = Reading {
        hashes: true,
        head: 0,
        wants: &|_, _| false,
        max_size: 0,
        inspect: &mut ignore,
    };
    Ok(read_with(archive, reading)?.0)
}

/// Hash `bytes` when asked to.
fn hashes_of(
    reading_hashes: bool,
    reader: impl std::io::Read,
) -> std::io::Result<(Option<String>, Option<String>)> {
    if !reading_hashes {
        // Drain nothing: the tar reader skips what is left of an entry.
        return Ok((None, None));
    }
    let (sha256, sha1) = crate::hash::reader_sha256_and_sha1(reader)?;
    Ok((Some(sha256), Some(sha1)))
}

/// The final filesystem of `archive`'s image, and what `reading.inspect` made
/// of each file it was shown, by where its bytes came from ([`Entry::origin`]):
/// one pass over the layers, one file in memory at a time.
pub fn read_with<T>(
    archive: &OciArchive,
    reading: Reading<'_, T>,
) -> Result<(Rootfs, HashMap<Origin, T>)> {
    use std::io::Read as _;
    let budget = Budget::from_env()?;
    let mut found: HashMap<Origin, T> = HashMap::new();
    let mut rootfs = Rootfs::default();
    for (index, layer) in archive.manifest.layers.iter().enumerate() {
        let mut tar = archive.layer_tar(layer, &budget)?;
        let mut added: Vec<(String, Entry)> = Vec::new();
        // The latest entry of this layer for a path, to resolve hard links.
        let mut latest: HashMap<String, usize> = HashMap::new();
        let mut whiteouts: Vec<String> = Vec::new();
        let mut opaque: Vec<String> = Vec::new();
        let mut ordinal = 0;
        while let Some(header) = tar.next_entry()? {
            let this = ordinal;
            ordinal += 1;
            let Some(path) = clean(index, &header.name)? else {
                continue;
            };
            let (dir, name) = match path.rsplit_once('/') {
                Some((dir, name)) => (Some(dir), name),
                None => (None, path.as_str()),
            };
            if name == ".wh..wh..opq" {
                opaque.push(dir.unwrap_or("").to_string());
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                whiteouts.push(match dir {
                    Some(dir) => format!("{dir}/{hidden}"),
                    None => hidden.to_string(),
                });
                continue;
            }
            let kind = match header.kind {
                TarKind::File => Kind::File,
                TarKind::Directory => Kind::Directory,
                TarKind::Symlink => Kind::Symlink,
                TarKind::Hardlink => Kind::Hardlink,
                other => Kind::Special(other.name()),
            };
            let mut record = Entry {
                kind: kind.clone(),
                mode: header.mode,
                uid: header.uid,
                gid: header.gid,
                size: header.size,
                sha256: None,
                sha1: None,
                link: header.link.clone(),
                layer: index,
                ordinal: this,
                content: None,
            };
            match kind {
                Kind::File => {
                    let reading_path = || format!("layer {}: reading `{path}`", index + 1);
                    let mut entry = tar.data();
                    let mut head = Vec::with_capacity(reading.head.min(record.size as usize));
                    (&mut entry)
                        .take(reading.head as u64)
                        .read_to_end(&mut head)
                        .with_context(reading_path)?;
                    let wanted = (reading.wants)(&path, &head);
                    let (sha256, sha1) = if !wanted {
                        hashes_of(reading.hashes, head.as_slice().chain(&mut entry))
                            .with_context(reading_path)?
                    } else if record.size > reading.max_size {
                        found.insert(
                            (index, this),
                            (reading.inspect)(&path, Sniffed::TooLarge { size: record.size }),
                        );
                        hashes_of(reading.hashes, head.as_slice().chain(&mut entry))
                            .with_context(reading_path)?
                    } else {
                        // The size is the entry's as parsed (PAX and header
                        // agree, or the reader refused it), and under max_size.
                        let mut bytes = Vec::with_capacity(record.size as usize);
                        bytes.extend_from_slice(&head);
                        (&mut entry)
                            .take(reading.max_size)
                            .read_to_end(&mut bytes)
                            .with_context(reading_path)?;
                        found.insert(
                            (index, this),
                            (reading.inspect)(&path, Sniffed::Whole(&bytes)),
                        );
                        hashes_of(reading.hashes, bytes.as_slice()).with_context(reading_path)?
                    };
                    record.sha256 = sha256;
                    record.sha1 = sha1;
                    record.content = Some((index, this));
                }
                Kind::Hardlink => {
                    let target = record
                        .link
                        .as_deref()
                        .map(|target| clean(index, target))
                        .transpose()?
                        .flatten()
                        .with_context(|| {
                            format!("layer {}: hard link `{path}` has no target", index + 1)
                        })?;
                    // The target as it is at this point of the layer.
                    let linked = latest
                        .get(&target)
                        .map(|&at| &added[at].1)
                        .or_else(|| rootfs.entries.get(&target))
                        .filter(|e| matches!(e.kind, Kind::File | Kind::Hardlink))
                        .with_context(|| {
                            format!(
                                "layer {}: hard link `{path}` points to `{target}`, which is not a regular file of the image: refused",
                                index + 1
                            )
                        })?;
                    // One inode: the link has the target's bytes, mode and owner
                    // (engines link; they do not apply the link's own header).
                    record.sha256 = linked.sha256.clone();
                    record.sha1 = linked.sha1.clone();
                    record.size = linked.size;
                    record.mode = linked.mode;
                    record.uid = linked.uid;
                    record.gid = linked.gid;
                    record.content = linked.content;
                    record.link = Some(target);
                }
                _ => {}
            }
            latest.insert(path.clone(), added.len());
            added.push((path, record));
        }
        // Whiteouts hide what lower layers left; then this layer's entries land.
        for dir in opaque {
            if dir.is_empty() {
                rootfs.entries.clear();
            } else {
                remove_under(&mut rootfs.entries, &dir);
            }
        }
        for hidden in whiteouts {
            rootfs.entries.remove(&hidden);
            remove_under(&mut rootfs.entries, &hidden);
        }
        for (path, entry) in added {
            // Writing `a/b` where `a` is a symlink would write wherever it
            // points; where `a` is a file, nothing could be written at all.
            for parent in parents(&path) {
                match rootfs.entries.get(parent) {
                    Some(above) if above.kind == Kind::Symlink => bail!(
                        "layer {}: `{path}` would be written through the symlink `{parent}` (→ {}): refused",
                        index + 1,
                        above.link.as_deref().unwrap_or("?")
                    ),
                    Some(above) if above.kind != Kind::Directory => bail!(
                        "layer {}: `{path}` would be written under `{parent}`, which is not a folder: refused",
                        index + 1
                    ),
                    _ => {}
                }
            }
            if entry.kind == Kind::Directory {
                // A directory over a directory keeps what is inside.
                rootfs.entries.insert(path, entry);
            } else {
                remove_under(&mut rootfs.entries, &path);
                rootfs.entries.insert(path, entry);
            }
        }
    }
    // What no final path holds any more is dropped.
    let kept: std::collections::HashSet<Origin> =
        rootfs.files().filter_map(|(_, e)| e.content).collect();
    found.retain(|origin, _| kept.contains(origin));
    Ok((rootfs, found))
}

/// What [`extract`] wrote.
#[derive(Debug)]
pub struct Extracted {
    pub rootfs: Rootfs,
    /// Symlinks left out, `(path, target)`: targets that climb with `..`
    /// after descending, whose meaning inside the image (where `..` follows
    /// the symlinks before it) a link under a host folder cannot keep.
    pub left_out: Vec<(String, String)>,
}

/// Where a symlink at `path` points inside the image, written relative to
/// the link so that it cannot leave the folder it is extracted under:
/// absolute targets start at the image's root, `..` stops there as in the
/// kernel's walk. `None` when the target climbs after descending.
pub fn in_tree_target(path: &str, target: &str) -> Option<String> {
    let mut at: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        parents(path)
            .last()
            .map_or(Vec::new(), |dir| dir.split('/').collect())
    };
    let mut descended = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if descended => return None,
            ".." => {
                at.pop();
            }
            _ => {
                at.push(part);
                descended = true;
            }
        }
    }
    let depth = parents(path).count();
    // `./..` and `..//..` climb as `../..` does.
    let climbs = target
        .split('/')
        .filter(|part| !matches!(*part, "" | "."))
        .take_while(|part| *part == "..")
        .count();
    if !target.starts_with('/') && climbs <= depth {
        // Already inside: kept as written.
        return Some(target.to_string());
    }
    let mut relative = "../".repeat(depth);
    relative.push_str(&at.join("/"));
    let relative = relative.trim_end_matches('/');
    Some(if relative.is_empty() {
        ".".to_string()
    } else {
        relative.to_string()
    })
}

/// Write the final filesystem of `archive` under `dest` (an empty folder):
/// directories, then files (names that share content as hard links; a hard
/// link whose target is gone gets its own copy), then symlinks, rewritten by
/// [`in_tree_target`] so that a program following them (mal does) never
/// reaches a file outside `dest`; devices and fifos are skipped; set-id bits
/// are dropped. Files are created, never opened: nothing is written through
/// what is already there.
pub fn extract(archive: &OciArchive, dest: &Path) -> Result<Extracted> {
    use std::os::unix::fs::PermissionsExt;
    let rootfs = read(archive)?;
    let budget = Budget::from_env()?;
    let target = |path: &str| dest.join(path);
    let writing = |path: &Path| format!("writing {}", path.display());
    for (path, entry) in &rootfs.entries {
        if entry.kind == Kind::Directory {
            std::fs::create_dir_all(target(path)).with_context(|| writing(&target(path)))?;
        }
    }
    // Every name of each content: regular files first, then by path.
    let mut names: BTreeMap<(usize, usize), Vec<(&str, &Entry)>> = BTreeMap::new();
    for (path, entry) in rootfs.files() {
        if let Some(origin) = entry.content {
            names.entry(origin).or_default().push((path, entry));
        }
    }
    for paths in names.values_mut() {
        paths.sort_by_key(|(path, entry)| (entry.kind != Kind::File, *path));
    }
    for (index, layer) in archive.manifest.layers.iter().enumerate() {
        let wanted: BTreeMap<usize, &Vec<(&str, &Entry)>> = names
            .iter()
            .filter(|((layer, _), _)| *layer == index)
            .map(|((_, ordinal), paths)| (*ordinal, paths))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let mut tar = archive.layer_tar(layer, &budget)?;
        let mut ordinal = 0;
        while tar.next_entry()?.is_some() {
            let this = ordinal;
            ordinal += 1;
            let Some(paths) = wanted.get(&this) else {
                continue;
            };
            let Some(((first, first_entry), others)) = paths.split_first() else {
                continue;
            };
            let destination = target(first);
            if let Some(parent) = destination.parent() {
                std::fs::create_dir_all(parent).with_context(|| writing(parent))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&destination)
                .with_context(|| writing(&destination))?;
            std::io::copy(&mut tar.data(), &mut file).with_context(|| writing(&destination))?;
            let mode = first_entry.mode & 0o777;
            std::fs::set_permissions(&destination, std::fs::Permissions::from_mode(mode | 0o600))
                .with_context(|| writing(&destination))?;
            for (other, _) in others {
                let link = target(other);
                if let Some(parent) = link.parent() {
                    std::fs::create_dir_all(parent).with_context(|| writing(parent))?;
                }
                std::fs::hard_link(&destination, &link).with_context(|| writing(&link))?;
            }
        }
    }
    for (path, entry) in &rootfs.entries {
        if entry.kind == Kind::Directory {
            let mode = entry.mode & 0o777;
            std::fs::set_permissions(target(path), std::fs::Permissions::from_mode(mode | 0o700))
                .with_context(|| writing(&target(path)))?;
        }
    }
    let mut left_out = Vec::new();
    for (path, entry) in &rootfs.entries {
        if entry.kind == Kind::Symlink {
            let written = entry.link.as_deref().unwrap_or("");
            let Some(inside) = in_tree_target(path, written) else {
                left_out.push((path.clone(), written.to_string()));
                continue;
            };
            let destination = target(path);
            if let Some(parent) = destination.parent() {
                std::fs::create_dir_all(parent).with_context(|| writing(parent))?;
            }
            std::os::unix::fs::symlink(inside, &destination)
                .with_context(|| writing(&destination))?;
        }
    }
    Ok(Extracted { rootfs, left_out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A tar entry made by hand, path bytes as given (the tar crate refuses to
    /// write `..` and absolute names; hostile layers have them).
    enum Item<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
    }

    fn layer(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_ustar();
            let (name, kind, data, link): (&str, tar::EntryType, &[u8], Option<&str>) = match item {
                Item::File(name, data) => (name, tar::EntryType::Regular, data, None),
                Item::Dir(name) => (name, tar::EntryType::Directory, b"", None),
                Item::Symlink(name, to) => (name, tar::EntryType::Symlink, b"", Some(to)),
                Item::Hardlink(name, to) => (name, tar::EntryType::Link, b"", Some(to)),
            };
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// An OCI archive of these layers (uncompressed).
    fn archive(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut descriptors = Vec::new();
        for bytes in layers {
            let hex = crate::hash::hex_sha256(bytes);
            descriptors.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{hex}","size":{}}}"#,
                bytes.len()
            ));
            blobs.push((hex, bytes.clone()));
        }
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let config_hex = crate::hash::hex_sha256(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            descriptors.join(",")
        );
        let manifest_hex = crate::hash::hex_sha256(manifest.as_bytes());
        blobs.push((config_hex, config));
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_hex}","size":{}}}]}}"#,
            manifest.len()
        );
        blobs.push((manifest_hex, manifest.into_bytes()));
        let path = dir.join("image.tar");
        let mut out = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (hex, bytes) in &blobs {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.append_data(&mut header, format!("blobs/sha256/{hex}"), bytes.as_slice())
                .unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(index.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, "index.json", index.as_bytes())
            .unwrap();
        out.finish().unwrap();
        path
    }

    fn open(dir: &Path, layers: &[Vec<u8>]) -> OciArchive {
        OciArchive::open(&archive(dir, layers)).unwrap()
    }

    #[test]
    fn layers_apply_with_whiteouts_opaque_dirs_and_links() {
        let work = tempfile::tempdir().unwrap();
        let image = open(
            work.path(),
            &[
                layer(&[
                    Item::Dir("etc/"),
                    Item::File("etc/keep", b"keep"),
                    Item::File("etc/gone", b"gone"),
                    Item::Dir("var/"),
                    Item::File("var/old", b"old"),
                    Item::File("bin/app", b"binary"),
                ]),
                layer(&[
                    Item::File("etc/.wh.gone", b""),
                    Item::Dir("var/"),
                    Item::File("var/.wh..wh..opq", b""),
                    Item::File("var/new", b"new"),
                    Item::Hardlink("bin/same", "bin/app"),
                    Item::Symlink("bin/sh", "app"),
                ]),
            ],
        );
        let rootfs = read(&image).unwrap();
        let paths: Vec<&str> = rootfs.entries.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            ["bin/app", "bin/same", "bin/sh", "etc", "etc/keep", "var", "var/new"]
        );
        assert_eq!(
            rootfs.entries["bin/same"].sha256,
            rootfs.entries["bin/app"].sha256
        );
        assert_eq!(rootfs.entries["var/new"].layer, 1);

        let dest = work.path().join("root");
        std::fs::create_dir(&dest).unwrap();
        extract(&image, &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("etc/keep")).unwrap(), b"keep");
        assert!(!dest.join("etc/gone").exists());
        assert!(!dest.join("var/old").exists());
        assert_eq!(std::fs::read(dest.join("bin/same")).unwrap(), b"binary");
        assert_eq!(
            std::fs::read_link(dest.join("bin/sh")).unwrap(),
            Path::new("app")
        );
    }

    #[test]
    fn symlinks_are_rewritten_to_stay_inside_the_tree() {
        for (path, target, expected) in [
            ("bin/sh", "app", Some("app")),
            ("usr/bin/x", "../lib/x", Some("../lib/x")),
            ("etc/x", "/etc/shadow", Some("../etc/shadow")),
            (
                "usr/bin/up",
                "../../../../etc/passwd",
                Some("../../etc/passwd"),
            ),
            ("top", "/", Some(".")),
            ("top", "..", Some(".")),
            ("a/b/c", "/usr/./lib//x/", Some("../../usr/lib/x")),
            ("lib/x", "sub/../../../etc/passwd", None),
            ("lib/x", "/usr/lib/../../etc", None),
            // Found by attack: `.` and empty parts between climbs.
            ("link0", "./../../../../etc/hostname", Some("etc/hostname")),
            (
                "d/link1",
                "..//../../../etc/hostname",
                Some("../etc/hostname"),
            ),
            ("d/e/link2", "../.././../../../../etc", Some("../../etc")),
            ("up", "./..", Some(".")),
            ("d/x", "./../y", Some("./../y")),
        ] {
            assert_eq!(
                in_tree_target(path, target).as_deref(),
                expected,
                "{path} → {target}"
            );
        }
    }

    /// A hard link is a name of its content: listed as a file, kept when the
    /// name it was linked to is removed or replaced, through chains of links.
    #[test]
    fn hard_links_keep_their_content() {
        use std::os::unix::fs::MetadataExt;
        let work = tempfile::tempdir().unwrap();
        let image = open(
            work.path(),
            &[
                layer(&[
                    Item::File("evil", b"EVIL"),
                    Item::Hardlink("innocent", "evil"),
                    Item::File("a", b"old a"),
                    Item::Hardlink("b", "a"),
                    Item::Hardlink("c", "b"),
                    Item::File("kept", b"kept"),
                    Item::Hardlink("kept-too", "kept"),
                ]),
                layer(&[Item::File(".wh.evil", b""), Item::File("a", b"new a")]),
            ],
        );
        let rootfs = read(&image).unwrap();
        let files: Vec<(&str, &str)> = rootfs
            .files()
            .map(|(path, entry)| (path.as_str(), entry.sha256.as_deref().unwrap()))
            .collect();
        let sha = |text: &[u8]| crate::hash::hex_sha256(text);
        let (old_a, new_a, evil, kept) = (sha(b"old a"), sha(b"new a"), sha(b"EVIL"), sha(b"kept"));
        assert_eq!(
            files,
            [
                ("a", new_a.as_str()),
                ("b", old_a.as_str()),
                ("c", old_a.as_str()),
                ("innocent", evil.as_str()),
                ("kept", kept.as_str()),
                ("kept-too", kept.as_str()),
            ]
        );
        assert_eq!(rootfs.entries["innocent"].size, 4);
        let dest = work.path().join("root");
        std::fs::create_dir(&dest).unwrap();
        extract(&image, &dest).unwrap();
        let read = |path: &str| std::fs::read(dest.join(path)).unwrap();
        assert_eq!(read("innocent"), b"EVIL", "what malcontent must see");
        assert!(!dest.join("evil").exists());
        assert_eq!(read("a"), b"new a");
        assert_eq!(read("b"), b"old a");
        assert_eq!(read("c"), b"old a");
        let inode = |path: &str| std::fs::metadata(dest.join(path)).unwrap().ino();
        assert_eq!(inode("b"), inode("c"));
        assert_eq!(inode("kept"), inode("kept-too"));
        assert_ne!(inode("a"), inode("b"));
    }

    /// Layers no engine could apply are refused, naming the layer and path.
    #[test]
    fn impossible_layers_are_refused() {
        let work = tempfile::tempdir().unwrap();
        let mut not_utf8 = layer(&[Item::File("a-x", b"EVIL")]);
        // The name's `-` becomes a byte that is not UTF-8 (checksum redone).
        let position = not_utf8.windows(3).position(|w| w == b"a-x").unwrap();
        not_utf8[position + 1] = 0xff;
        let mut header = tar::Header::from_byte_slice(&not_utf8[..512]).clone();
        header.set_cksum();
        not_utf8[..512].copy_from_slice(header.as_bytes());
        let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
            (vec![not_utf8], "is not UTF-8"),
            (
                vec![layer(&[Item::File("a", b"file"), Item::File("a/y", b"y")])],
                "layer 1: `a/y` would be written under `a`, which is not a folder",
            ),
            (
                vec![
                    layer(&[Item::Dir("a/"), Item::File("a/x", b"x")]),
                    layer(&[Item::File("a", b"now a file")]),
                    layer(&[Item::File("a/y", b"y")]),
                ],
                "layer 3: `a/y` would be written under `a`",
            ),
            (
                vec![layer(&[Item::Hardlink("b", "nowhere")])],
                "hard link `b` points to `nowhere`, which is not a regular file",
            ),
            (
                vec![layer(&[Item::Hardlink("b", "../outside")])],
                "climbs out",
            ),
            (
                vec![layer(&[Item::Dir("d/"), Item::Hardlink("b", "d")])],
                "not a regular file",
            ),
        ];
        for (index, (layers, says)) in cases.into_iter().enumerate() {
            let dir = work.path().join(format!("case-{index}"));
            std::fs::create_dir(&dir).unwrap();
            let error = read(&open(&dir, &layers)).unwrap_err();
            assert!(
                format!("{error:#}").contains(says),
                "case {index}: {error:#}"
            );
        }
    }

    /// `..`, absolute names and writes through a symlink are refused, and an
    /// extraction that is refused writes nothing, inside or out.
    /// Set-id and sticky bits are kept in what is read (SBOMs and compare
    /// show them) and dropped from what is written to this machine (guards
    /// the `& 0o777` of extract).
    #[test]
    fn extraction_drops_set_id_bits() {
        use std::os::unix::fs::PermissionsExt;
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, mode, data) in [
            ("bin/", tar::EntryType::Directory, 0o3777, &b""[..]),
            ("bin/su", tar::EntryType::Regular, 0o6755, &b"su"[..]),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_path(name).unwrap();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        let work = tempfile::tempdir().unwrap();
        let image = open(work.path(), &[builder.into_inner().unwrap()]);
        let dest = work.path().join("root");
        std::fs::create_dir(&dest).unwrap();
        let extracted = extract(&image, &dest).unwrap();
        assert_eq!(extracted.rootfs.entries["bin/su"].mode, 0o6755);
        let mode = |path: &str| {
            std::fs::metadata(dest.join(path))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode("bin/su") & 0o7000, 0, "{:o}", mode("bin/su"));
        assert_eq!(mode("bin") & 0o7000, 0, "{:o}", mode("bin"));
        assert_eq!(mode("bin/su") & 0o777, 0o755);
    }

    /// Links to this machine's files (absolute, or climbing past the root)
    /// stay inside the extracted tree: a program that follows every link, as
    /// mal does, reads the image's files or nothing, never the host file.
    #[test]
    fn extracted_links_never_reach_a_host_file() {
        let work = tempfile::tempdir().unwrap();
        let host = work.path().join("host-secret");
        std::fs::write(&host, "HOST-CANARY-7f3a").unwrap();
        let host = host.to_str().unwrap().to_string();
        let climbing = format!("../../../../../../../../..{host}");
        let image = open(
            work.path(),
            &[layer(&[
                Item::Dir("etc/"),
                Item::File("etc/shadow", b"image shadow"),
                Item::Symlink("etc/x", "/etc/shadow"),
                Item::Symlink("etc/host", &host),
                Item::Symlink("usr/bin/up", &climbing),
                Item::Symlink(
                    "usr/bin/tricky",
                    "../lib/../../../../../../../../etc/shadow",
                ),
                Item::Symlink("root", "/"),
            ])],
        );
        let dest = work.path().join("root");
        std::fs::create_dir(&dest).unwrap();
        let extracted = extract(&image, &dest).unwrap();
        assert_eq!(
            extracted.left_out,
            [(
                "usr/bin/tricky".to_string(),
                "../lib/../../../../../../../../etc/shadow".to_string()
            )]
        );
        assert_eq!(std::fs::read(dest.join("etc/x")).unwrap(), b"image shadow");
        // Every link resolves inside the tree (or nowhere).
        let inside = dest.canonicalize().unwrap();
        for link in ["etc/x", "etc/host", "usr/bin/up", "root"] {
            if let Ok(resolved) = dest.join(link).canonicalize() {
                assert!(
                    resolved.starts_with(&inside),
                    "{link} → {}",
                    resolved.display()
                );
            }
        }
        // What a reader following every link sees (`find -L … -exec cat`).
        let output = std::process::Command::new("find")
            .arg("-L")
            .arg(&dest)
            .args(["-type", "f", "-exec", "cat", "{}", "+"])
            .output()
            .unwrap();
        let seen = String::from_utf8_lossy(&output.stdout);
        assert!(seen.contains("image shadow"), "{seen}");
        assert!(
            !seen.contains("HOST-CANARY"),
            "a host file was read: {seen}"
        );
    }

    #[test]
    fn hostile_layers_are_refused_with_nothing_written() {
        let work = tempfile::tempdir().unwrap();
        let outside = work.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
            (
                vec![layer(&[Item::File("../outside/x", b"x")])],
                "climbs out",
            ),
            (
                vec![layer(&[Item::File("/tmp/abs", b"x")])],
                "is an absolute path",
            ),
            (
                vec![
                    layer(&[Item::Symlink("evil", "../outside")]),
                    layer(&[Item::File("evil/payload", b"x")]),
                ],
                "written through the symlink `evil`",
            ),
            (
                vec![layer(&[
                    Item::Symlink("abs", "/etc"),
                    Item::File("abs/passwd", b"x"),
                ])],
                "written through the symlink `abs`",
            ),
        ];
        for (index, (layers, says)) in cases.into_iter().enumerate() {
            let dir = work.path().join(format!("case-{index}"));
            std::fs::create_dir(&dir).unwrap();
            let image = open(&dir, &layers);
            let dest = dir.join("root");
            std::fs::create_dir(&dest).unwrap();
            let error = extract(&image, &dest).unwrap_err();
            assert!(error.to_string().contains(says), "case {index}: {error}");
            assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "case {index}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
