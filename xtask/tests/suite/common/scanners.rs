//! grype and malcontent cannot be installed here: stub programs that answer
//! with the real reports of `tests/testdata/scanners/` (or fail).

use std::path::{Path, PathBuf};

use super::repo_root;

/// A folder with `grype` and `mal` stubs. Each answers its version probe;
/// `grype sbom:…` prints `$STUB_GRYPE` (a file) or, when that is `fail`,
/// exits 1; `grype <cpe>` prints an empty report; `mal … analyze DIR`
/// checks DIR holds the image's files (its /etc/passwd: the extraction
/// happened) and
/// prints `$STUB_MAL` (or fails).
pub fn stubs(dir: &Path) -> PathBuf {
    let bin = dir.join("stub-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let empty = scanners("grype/grype-json-empty.golden.json");
    let scripts = [
        (
            "grype",
            format!(
                r#"#!/bin/sh
case "$1" in
  version) echo "grype 0.99.0 (stub)"; exit 0 ;;
  sbom:*) [ -f "${{1#sbom:}}" ] || {{ echo "no SBOM at $1" >&2; exit 2; }}
          [ "$STUB_GRYPE" = fail ] && {{ echo "grype: database is corrupt" >&2; exit 1; }}
          cat "$STUB_GRYPE" ;;
  cpe:*) cat '{}' ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"#,
                empty.display()
            ),
        ),
        (
            "mal",
            r#"#!/bin/sh
[ "$1" = --version ] && { echo "mal version 1.25.9 (stub)"; exit 0; }
[ "$1 $2 $3" = "--format json analyze" ] || { echo "unexpected: $*" >&2; exit 2; }
[ -f "$4/etc/passwd" ] || { echo "nothing extracted at $4" >&2; exit 3; }
[ "$STUB_MAL" = fail ] && { echo "mal: rules failed to compile" >&2; exit 1; }
cat "$STUB_MAL"
"#
            .to_string(),
        ),
    ];
    for (name, script) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

pub fn scanners(file: &str) -> PathBuf {
    repo_root().join("xtask/tests/testdata/scanners").join(file)
}
