//! Where a dynamic linker looks for a library, by which linker it is.
//!
//! musl (`ld-musl-<arch>.so.1`, what StageX images use): a name with a `/` is
//! opened as it is; otherwise `LD_LIBRARY_PATH`, then the `DT_RUNPATH` (or,
//! without one, `DT_RPATH`) of the object that needs it and of each object
//! that loaded that one, then the folders of `<prefix>/etc/ld-musl-<arch>.path`
//! (prefix: the interpreter's path without its last two parts) or, without
//! that file, `/lib:/usr/local/lib:/usr/lib`. The first file that opens is
//! used, whatever it holds. `libc.*`, `libm.*`, `libpthread.*`, … are the
//! linker itself.
//!
//! glibc (`ld-linux*.so.*`, Debian's binaries in the tests): `DT_RPATH` of the
//! object and its loaders (only where the object has no `DT_RUNPATH`),
//! `LD_LIBRARY_PATH`, its own `DT_RUNPATH`, then the default folders (the
//! multiarch ones Debian adds, `lib64`, `lib`); files of another class or
//! machine are skipped. `ld.so.cache` is not read: an image built with
//! `COPY` has none unless it ran `ldconfig`.

use super::elf::Abi;

/// The linkers we know the rules of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    Musl {
        /// The interpreter path as the program names it.
        interpreter: String,
        arch: String,
    },
    Glibc {
        abi: Abi,
    },
}

/// musl's name for a machine, as in `ld-musl-<arch>.so.1`.
fn musl_arch(machine: u16) -> &'static str {
    match machine {
        62 => "x86_64",
        183 => "aarch64",
        3 => "i386",
        40 => "arm",
        243 => "riscv64",
        21 => "powerpc64",
        22 => "s390x",
        _ => "unknown",
    }
}

impl Loader {
    /// The linker a program names in `PT_INTERP`.
    pub fn of(interpreter: &str, abi: Abi) -> Loader {
        let name = interpreter.rsplit('/').next().unwrap_or(interpreter);
        if let Some(arch) = name
            .strip_prefix("ld-musl-")
            .and_then(|rest| rest.strip_suffix(".so.1"))
        {
            return Loader::Musl {
                interpreter: interpreter.to_string(),
                arch: arch.to_string(),
            };
        }
        if name.starts_with("ld-linux") || name.starts_with("ld64.so") || name == "ld.so.1" {
            return Loader::Glibc { abi };
        }
        // An unknown linker: musl's rules are the strictest common ground.
        Loader::musl_for(abi)
    }

    /// musl at its usual place, for objects no program names a linker for.
    pub fn musl_for(abi: Abi) -> Loader {
        let arch = musl_arch(abi.machine);
        Loader::Musl {
            interpreter: format!("/lib/ld-musl-{arch}.so.1"),
            arch: arch.to_string(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Loader::Musl { .. } => "musl",
            Loader::Glibc { .. } => "glibc",
        }
    }

    /// The names the linker answers itself.
    pub fn provides(&self, library: &str) -> bool {
        match self {
            Loader::Musl { .. } => {
                let Some(rest) = library.strip_prefix("lib") else {
                    return false;
                };
                let stem = rest.split('.').next().unwrap_or(rest);
                rest.len() > stem.len()
                    && ["c", "pthread", "rt", "m", "dl", "util", "xnet"].contains(&stem)
            }
            Loader::Glibc { .. } => false,
        }
    }

    /// Where musl reads its search path from (`None` for glibc).
    pub fn path_file(&self) -> Option<String> {
        match self {
            Loader::Musl { interpreter, arch } => {
                let slashes: Vec<usize> = interpreter.match_indices('/').map(|(i, _)| i).collect();
                let prefix = if interpreter.starts_with('/') && slashes.len() >= 2 {
                    &interpreter[..slashes[slashes.len() - 2]]
                } else {
                    ""
                };
                Some(format!("{prefix}/etc/ld-musl-{arch}.path"))
            }
            Loader::Glibc { .. } => None,
        }
    }

    /// The folders searched after the run paths: from the path file's
    /// contents when musl has one, else the linker's defaults.
    pub fn system_dirs(&self, path_file: Option<&str>) -> Vec<String> {
        match self {
            Loader::Musl { .. } => match path_file {
                Some(text) => split_path(text),
                None => split_path("/lib:/usr/local/lib:/usr/lib"),
            },
            Loader::Glibc { abi } => {
                let triplet = match (abi.machine, abi.bits) {
                    (62, 64) => Some("x86_64-linux-gnu"),
                    (183, 64) => Some("aarch64-linux-gnu"),
                    (3, 32) => Some("i386-linux-gnu"),
                    _ => None,
                };
                let mut dirs = Vec::new();
                if let Some(triplet) = triplet {
                    dirs.push(format!("/lib/{triplet}"));
                    dirs.push(format!("/usr/lib/{triplet}"));
                }
                if abi.bits == 64 {
                    dirs.extend(["/lib64".to_string(), "/usr/lib64".to_string()]);
                }
                dirs.extend(["/lib".to_string(), "/usr/lib".to_string()]);
                dirs
            }
        }
    }

    /// Whether a file of another class or machine is skipped (glibc) or
    /// taken and fails to load (musl).
    pub fn skips_foreign_files(&self) -> bool {
        matches!(self, Loader::Glibc { .. })
    }
}

/// A search path's folders (`:` or newline separated), empty ones left out
/// and nothing trimmed: musl's path_open takes `/usr/lib ` (or a CRLF
/// line's `\r`) as part of the folder's name.
pub fn split_path(text: &str) -> Vec<String> {
    text.split([':', '\n'])
        .filter(|dir| !dir.is_empty())
        .map(str::to_string)
        .collect()
}

/// A run path with `$ORIGIN` (or `${ORIGIN}`) replaced by `origin`, the
/// folder of the object that carries it.
pub fn expand_origin(runpath: &str, origin: &str) -> Vec<String> {
    split_path(
        &runpath
            .replace("${ORIGIN}", origin)
            .replace("$ORIGIN", origin),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86_64: Abi = Abi {
        bits: 64,
        little_endian: true,
        machine: 62,
    };

    #[test]
    fn musl_reads_its_path_file_beside_its_prefix() {
        let at_lib = Loader::of("/lib/ld-musl-x86_64.so.1", X86_64);
        assert_eq!(
            at_lib.path_file().as_deref(),
            Some("/etc/ld-musl-x86_64.path")
        );
        let at_usr = Loader::of("/usr/lib/ld-musl-aarch64.so.1", X86_64);
        assert_eq!(
            at_usr.path_file().as_deref(),
            Some("/usr/etc/ld-musl-aarch64.path")
        );
        assert_eq!(
            at_lib.system_dirs(None),
            ["/lib", "/usr/local/lib", "/usr/lib"]
        );
        assert_eq!(
            at_lib.system_dirs(Some("/opt/lib\n/usr/lib:\n")),
            ["/opt/lib", "/usr/lib"]
        );
    }

    #[test]
    fn musl_is_its_own_libc() {
        let musl = Loader::of("/lib/ld-musl-x86_64.so.1", X86_64);
        for name in [
            "libc.so",
            "libc.musl-x86_64.so.1",
            "libm.so.6",
            "libpthread.so.0",
            "libdl.so.2",
        ] {
            assert!(musl.provides(name), "{name}");
        }
        for name in ["libcrypto.so.3", "libc", "libz.so.1", "libmagic.so.1"] {
            assert!(!musl.provides(name), "{name}");
        }
        let glibc = Loader::of("/lib64/ld-linux-x86-64.so.2", X86_64);
        assert!(!glibc.provides("libc.so.6"));
        assert_eq!(
            glibc.system_dirs(None),
            [
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib"
            ]
        );
    }

    #[test]
    fn origin_is_expanded() {
        assert_eq!(
            expand_origin("$ORIGIN/../lib:${ORIGIN}:/opt", "/usr/bin"),
            ["/usr/bin/../lib", "/usr/bin", "/opt"]
        );
    }
}
