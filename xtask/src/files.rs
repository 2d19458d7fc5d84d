//! Writing files so that nobody ever sees one half-written: atomic writes,
//! the one write-or-check helper for generated files, and `--json PATH|-`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Write,
    Check,
}

/// What happened to one generated file.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Written,
}

/// Make `path` hold `contents`. In `Check` mode a difference is an error that
/// shows a unified diff and names `command`. Writing goes through a temporary
/// file and a rename, so the file is never seen half-written.
pub fn ensure_file(path: &Path, contents: &str, mode: Mode, command: &str) -> Result<Outcome> {
    let current = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    if current.as_deref() == Some(contents) {
        return Ok(Outcome::Unchanged);
    }
    match mode {
        Mode::Check => {
            let old = current.unwrap_or_default();
            let diff = similar::TextDiff::from_lines(old.as_str(), contents)
                .unified_diff()
                .context_radius(2)
                .header(
                    &format!("{} (committed)", path.display()),
                    &format!("{} (generated)", path.display()),
                )
                .to_string();
            crate::error::fail(format!(
                "{} is not up to date:\n{diff}\nrun `{command}` and commit the result",
                path.display()
            ))
        }
        Mode::Write => {
            write_atomically(path, contents.as_bytes())?;
            Ok(Outcome::Written)
        }
    }
}

/// Files in `dirs` (relative to `root`) that are not among `generated`:
/// what a generator's check refuses, since nothing reviews a hand-written
/// file beside generated ones. Sorted; a folder that is not there holds none.
pub fn strays(root: &Path, dirs: &[&str], generated: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
            if !generated.contains(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Write via a sibling temporary file and rename it into place. The
/// temporary file has a random name and is created exclusively (`O_EXCL`,
/// never through a symlink planted in the folder); it is removed if anything
/// fails. A missing folder is created (documented for `--json PATH`).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temporary
        .write_all(bytes)
        .and_then(|()| temporary.flush())
        .with_context(|| format!("writing {}", temporary.path().display()))?;
    // The mode a plain write would give (tempfile creates 0600), or the
    // replaced file's own.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(path)
        .ok()
        .filter(|meta| meta.is_file())
        .map_or(0o644, |meta| meta.permissions().mode() & 0o777);
    std::fs::set_permissions(temporary.path(), std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("writing {}", temporary.path().display()))?;
    temporary
        .persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// What marks a checkout of this repository: the release the Containerfiles pin.
pub const CHECKOUT_MARKER: &str = "stagex-release/RELEASE";

/// The checkout `start` is in, as cargo and git find theirs: `start` or the
/// nearest folder above it that holds [`CHECKOUT_MARKER`].
pub fn find_root(start: &Path) -> Result<std::path::PathBuf> {
    let start = std::fs::canonicalize(start)
        .with_context(|| format!("the working folder {}", start.display()))?;
    for dir in start.ancestors() {
        if dir.join(CHECKOUT_MARKER).is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    anyhow::bail!(
        "{} is not inside a checkout of this repository (no {CHECKOUT_MARKER} here or above): cd into one, or pass --root DIR (or set XTASK_ROOT)",
        start.display()
    )
}

/// `--root DIR` (or `XTASK_ROOT`) as given: it must be a checkout.
pub fn given_root(dir: &Path) -> Result<std::path::PathBuf> {
    let root = std::fs::canonicalize(dir).with_context(|| format!("--root {}", dir.display()))?;
    if !root.join(CHECKOUT_MARKER).is_file() {
        anyhow::bail!(
            "--root {}: not a checkout of this repository (no {CHECKOUT_MARKER}); pass the folder of a clone",
            dir.display()
        );
    }
    Ok(root)
}

/// The checkout these sources are in (unit tests read the repository's own
/// files; the command finds its root with [`find_root`]).
pub fn project_root() -> std::path::PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // xtask/ lives directly in the workspace root.
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// `--json PATH`: pretty JSON to the file (atomically), or to stdout for `-`.
pub fn write_json<T: Serialize + ?Sized>(destination: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    if destination == Path::new("-") {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    } else {
        write_atomically(destination, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("GEN.md");
        assert!(ensure_file(&path, "a\nb\n", Mode::Check, "x").is_err());
        assert_eq!(
            ensure_file(&path, "a\nb\n", Mode::Write, "x").unwrap(),
            Outcome::Written
        );
        assert_eq!(
            ensure_file(&path, "a\nb\n", Mode::Check, "x").unwrap(),
            Outcome::Unchanged
        );
        let error = ensure_file(&path, "a\nc\n", Mode::Check, "cargo xtask gen").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("-b\n+c"), "{text}");
        assert!(text.contains("run `cargo xtask gen`"), "{text}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    /// A symlink where the file goes is replaced, never written through, and
    /// no temporary file is left beside it.
    #[test]
    fn atomic_writes_never_follow_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let path = out.join("report.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomically(&path, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
    }
}
