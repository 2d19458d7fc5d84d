//! Which StageX package most likely ships a missing library, from its name:
//! a short table where the package is not named after the library, else
//! `core-<name>` or `core-lib<name>`; only packages of the pinned release are
//! ever named. A hint for people, not a proof (no file lists are published).

use std::collections::BTreeSet;

/// Library name stem (before `.so`) → package, where one does not follow
/// from the other. Read from StageX's package definitions.
const KNOWN: &[(&str, &str)] = &[
    ("libz", "core-zlib"),
    ("libssl", "core-openssl"),
    ("libcrypto", "core-openssl"),
    ("libc++", "core-libcxx"),
    ("libc++abi", "core-libcxxabi"),
    ("libgcc_s", "core-llvm-libgcc"),
    ("libbz2", "core-bzip2"),
    ("libncursesw", "core-ncurses"),
    ("libncurses", "core-ncurses"),
    ("libtinfo", "core-ncurses"),
    ("libpanelw", "core-ncurses"),
    ("libformw", "core-ncurses"),
    ("libmenuw", "core-ncurses"),
    ("libcares", "core-c-ares"),
    ("libpcre2-8", "core-pcre2"),
    ("libpcre2-16", "core-pcre2"),
    ("libpcre2-32", "core-pcre2"),
    ("libyaml-0", "core-yaml"),
    ("libicuuc", "core-icu"),
    ("libicui18n", "core-icu"),
    ("libicudata", "core-icu"),
    ("libbrotlicommon", "core-brotli"),
    ("libbrotlidec", "core-brotli"),
    ("libbrotlienc", "core-brotli"),
    ("libgdbm_compat", "core-gdbm"),
    ("libhistory", "core-readline"),
    ("liblzma", "core-xz"),
    ("libstdc++", "core-gcc"),
];

/// The package of `library` among `packages` (the release's names), if one
/// can be named.
pub fn provider(library: &str, packages: &BTreeSet<String>) -> Option<String> {
    let file = library.rsplit('/').next().unwrap_or(library);
    let stem = file.split(".so").next().unwrap_or(file);
    let known = KNOWN
        .iter()
        .find(|(name, _)| *name == stem)
        .map(|(_, package)| package.to_string());
    let named = stem
        .strip_prefix("lib")
        .map(|bare| [format!("core-{bare}"), format!("core-lib{bare}")]);
    known
        .into_iter()
        .chain(named.into_iter().flatten())
        .find(|package| packages.contains(package))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_named_only_when_the_release_has_them() {
        let release: BTreeSet<String> = [
            "core-gmp",
            "core-zlib",
            "core-libunwind",
            "core-llvm-libgcc",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            provider("libgmp.so.10", &release).as_deref(),
            Some("core-gmp")
        );
        assert_eq!(
            provider("libz.so.1", &release).as_deref(),
            Some("core-zlib")
        );
        assert_eq!(
            provider("libunwind.so.1", &release).as_deref(),
            Some("core-libunwind")
        );
        assert_eq!(
            provider("/usr/lib/libgcc_s.so.1", &release).as_deref(),
            Some("core-llvm-libgcc")
        );
        assert_eq!(
            provider("libssl.so.3", &release),
            None,
            "not in this release list"
        );
        assert_eq!(provider("weird", &release), None);
    }
}
