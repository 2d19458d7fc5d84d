//! The StageX release we pin against, read from `stagex-release/<release>/`:
//! `digests/*.txt` (`<hex> <package>` per line, as StageX publishes them) and
//! `versions.tsv` (package, version tag, definition, digest).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    /// Manifest digest hex (no `sha256:` prefix).
    pub digest: String,
    /// The version tag StageX publishes, when we know it. `None` for packages
    /// tagged only `latest` (core-filesystem): those are pinned by digest alone.
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub packages: BTreeMap<String, Package>,
}

/// The file naming the release every pin comes from: data, so that moving to
/// a release (`pins update --to-release`) is one command, not a rebuild.
pub const CURRENT_FILE: &str = "stagex-release/RELEASE";

/// The name of the release the checkout pins against.
pub fn current_name(root: &Path) -> Result<String> {
    let path = root.join(CURRENT_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {}: it names the StageX release the pins come from (e.g. `2026.03.0`)",
            path.display()
        )
    })?;
    let name = text.trim();
    if !is_name(name) {
        bail!("{}: `{name}` is not a release name", path.display());
    }
    Ok(name.to_string())
}

/// A list file, as StageX writes them: a regular file (not a device, a fifo,
/// a link to one), at most [`MAX_LIST`] bytes.
pub fn read_list(path: &Path) -> Result<String> {
    let meta = path
        .symlink_metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    if meta.len() > MAX_LIST {
        bail!(
            "{}: {} bytes, more than any release list ({MAX_LIST})",
            path.display(),
            meta.len()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A release list file larger than this is not one.
const MAX_LIST: u64 = 16 << 20;

/// Package names and version tags: what an image reference allows, nothing
/// that could become a path, a column or another instruction.
pub fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

impl Release {
    /// The release the checkout pins against ([`CURRENT_FILE`]).
    pub fn current(root: &Path) -> Result<Release> {
        Release::load(root, &current_name(root)?)
    }

    pub fn load(root: &Path, name: &str) -> Result<Release> {
        let mut release = Release::load_dir(&root.join("stagex-release").join(name))?;
        release.name = name.to_string();
        Ok(release)
    }

    /// A release list in a folder: `digests/*.txt` and `versions.tsv` (our
    /// layout), or the `*.txt` lists themselves (StageX's), `versions.tsv`
    /// optional (without it no version is known).
    pub fn load_dir(dir: &Path) -> Result<Release> {
        let digests_dir = if dir.join("digests").is_dir() {
            dir.join("digests")
        } else {
            dir.to_path_buf()
        };
        let mut packages = BTreeMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(&digests_dir)
            .with_context(|| {
                format!(
                    "reading the StageX release list {}: copy the release's digests/*.txt there",
                    digests_dir.display()
                )
            })?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("txt") {
                continue;
            }
            let text = read_list(&path)?;
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((digest, package)) = line.split_once(' ') else {
                    bail!(
                        "{}:{}: expected `<sha256 hex> <package>`",
                        path.display(),
                        index + 1
                    );
                };
                if !crate::oci::reference::is_sha256_hex(digest) {
                    bail!(
                        "{}:{}: `{digest}` is not a sha256 hex digest",
                        path.display(),
                        index + 1
                    );
                }
                let name = package.trim();
                if !is_name(name) {
                    bail!(
                        "{}:{}: `{}` is not a package name",
                        path.display(),
                        index + 1,
                        name.escape_debug()
                    );
                }
                if let Some(earlier) = packages.get(name) {
                    let earlier: &Package = earlier;
                    if earlier.digest != digest {
                        bail!(
                            "{}:{}: `{name}` is listed twice with different digests",
                            path.display(),
                            index + 1
                        );
                    }
                }
                packages.insert(
                    name.to_string(),
                    Package {
                        name: name.to_string(),
                        digest: digest.to_string(),
                        version: None,
                    },
                );
            }
        }
        if packages.is_empty() {
            bail!(
                "{}: no `<sha256 hex> <package>` lines in any *.txt: not a StageX release list",
                digests_dir.display()
            );
        }
        let versions_path = dir.join("versions.tsv");
        let versions = if versions_path.symlink_metadata().is_ok() {
            read_list(&versions_path)?
        } else {
            String::new()
        };
        for (index, line) in versions.lines().enumerate().skip(1) {
            let columns: Vec<&str> = line.split('\t').collect();
            let [name, version, _defined_in, digest] = columns.as_slice() else {
                bail!(
                    "{}:{}: expected 4 tab-separated columns",
                    versions_path.display(),
                    index + 1
                );
            };
            let Some(package) = packages.get_mut(*name) else {
                bail!(
                    "{}:{}: `{name}` is not in the release's digests lists",
                    versions_path.display(),
                    index + 1
                );
            };
            if package.digest != *digest {
                bail!(
                    "{}:{}: digest of `{name}` differs from the digests lists",
                    versions_path.display(),
                    index + 1
                );
            }
            if !is_name(version) {
                bail!(
                    "{}:{}: `{}` is not a version tag",
                    versions_path.display(),
                    index + 1,
                    version.escape_debug()
                );
            }
            if *version != "latest" {
                package.version = Some(version.to_string());
            }
        }
        Ok(Release {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            packages,
        })
    }

    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.get(name)
    }
}

impl Package {
    /// How a Containerfile should write this package: `stagex/<name>[:<version>]@sha256:<hex>`.
    pub fn pinned(&self, prefix: &str) -> String {
        match &self.version {
            Some(version) => format!("{prefix}/{}:{version}@sha256:{}", self.name, self.digest),
            None => format!("{prefix}/{}@sha256:{}", self.name, self.digest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_release_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let release = Release::current(root).unwrap();
        assert_eq!(release.name, "2026.03.0");
        assert!(release.packages.len() > 500, "{}", release.packages.len());
        let musl = release.package("core-musl").unwrap();
        assert_eq!(musl.version.as_deref(), Some("1.2.5"));
        assert_eq!(
            musl.pinned("stagex"),
            "stagex/core-musl:1.2.5@sha256:816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096"
        );
        let filesystem = release.package("core-filesystem").unwrap();
        assert_eq!(filesystem.version, None);
        assert!(release.package("core-libffi").unwrap().version.is_none());
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    /// What a hostile list may hold is refused with its line.
    #[test]
    fn hostile_lists_are_refused() {
        let case = |text: String| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("core.txt"), text).unwrap();
            Release::load_dir(dir.path())
        };
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert!(
            case(format!("{a} core-musl\n{b} core-musl\n")).is_err(),
            "duplicate"
        );
        assert!(
            case(format!("{} core-musl\n", "A".repeat(64))).is_err(),
            "uppercase"
        );
        assert!(case(format!("{a} ../x\n")).is_err(), "a path");
        assert!(case(format!("{a} core\tmusl\n")).is_err(), "a tab");
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("core.txt")).unwrap();
        assert!(Release::load_dir(dir.path()).is_err(), "a device");
    }

    /// StageX's own lists (no `digests/`, no versions) load too.
    #[test]
    fn stagex_lists_load_without_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("core.txt"),
            format!("{} core-musl\n", "a".repeat(64)),
        )
        .unwrap();
        let release = Release::load_dir(dir.path()).unwrap();
        assert_eq!(release.package("core-musl").unwrap().version, None);
        let empty = tempfile::tempdir().unwrap();
        assert!(Release::load_dir(empty.path()).is_err());
    }
}
