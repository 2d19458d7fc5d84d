//! What the dynamic linker reads from an ELF file, and nothing else: class,
//! byte order, machine, type, `PT_INTERP`, and from `PT_DYNAMIC` the
//! `DT_NEEDED`, `DT_RPATH` and `DT_RUNPATH` strings. goblin parses; symbol
//! tables and relocations are never read (they are most of a large binary).

use anyhow::{bail, Context, Result};
use goblin::container::{Container, Ctx};
use goblin::elf::dynamic::{Dynamic, DT_NEEDED, DT_RPATH, DT_RUNPATH};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
use goblin::elf::Elf;
use goblin::strtab::Strtab;
use serde::Serialize;

/// A library name longer than this is refused by musl (NAME_MAX).
const MAX_NAME: usize = 255;
/// A run path longer than this is none the kernel could open (PATH_MAX).
const MAX_PATH: usize = 4096;
/// Dynamic string entries read from one file.
const MAX_DYNAMIC_STRINGS: usize = 4096;

/// The four bytes every ELF file starts with.
pub const MAGIC: &[u8] = b"\x7fELF";

/// Which objects can load which: class, byte order and machine must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct Abi {
    pub bits: u8,
    pub little_endian: bool,
    pub machine: u16,
}

impl std::fmt::Display for Abi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-bit {} {}",
            self.bits,
            if self.little_endian { "LSB" } else { "MSB" },
            machine_name(self.machine)
        )
    }
}

/// The usual name of an ELF machine number.
fn machine_name(machine: u16) -> String {
    match machine {
        3 => "i386".into(),
        8 => "mips".into(),
        20 => "ppc".into(),
        21 => "ppc64".into(),
        22 => "s390".into(),
        40 => "arm".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        other => format!("machine {other}"),
    }
}

/// One ELF file as the loader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ElfFile {
    pub abi: Abi,
    /// `ET_EXEC`, `ET_DYN`, …: only these two are loaded.
    pub loadable: bool,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

/// Read what the loader needs from `bytes`. A file that says it is ELF but
/// whose headers do not hold together is an error (named by the caller).
pub fn read(bytes: &[u8]) -> Result<ElfFile> {
    let header: Header = Elf::parse_header(bytes).context("no ELF header")?;
    let bits = match header.e_ident[header::EI_CLASS] {
        header::ELFCLASS32 => 32,
        header::ELFCLASS64 => 64,
        other => bail!("ELF class {other} is neither 32- nor 64-bit"),
    };
    let little_endian = match header.e_ident[header::EI_DATA] {
        header::ELFDATA2LSB => true,
        header::ELFDATA2MSB => false,
        other => bail!("ELF byte order {other} is neither LSB nor MSB"),
    };
    let container = if bits == 64 {
        Container::Big
    } else {
        Container::Little
    };
    let ctx = Ctx::new(container, goblin::container::Endian::from(little_endian));
    let program_headers = ProgramHeader::parse(
        bytes,
        usize::try_from(header.e_phoff).context("program headers out of range")?,
        usize::from(header.e_phnum),
        ctx,
    )
    .context("program headers")?;
    let mut interpreter = None;
    for ph in &program_headers {
        if ph.p_type == PT_INTERP {
            let start = usize::try_from(ph.p_offset).ok();
            let end = start.and_then(|s| s.checked_add(usize::try_from(ph.p_filesz).ok()?));
            let raw = match (start, end) {
                (Some(start), Some(end)) => bytes.get(start..end),
                _ => None,
            }
            .context("PT_INTERP lies outside the file")?;
            let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
            interpreter = Some(
                std::str::from_utf8(raw)
                    .context("PT_INTERP is not UTF-8")?
                    .to_string(),
            );
        }
    }
    let mut needed = Vec::new();
    let mut rpath = Vec::new();
    let mut runpath = Vec::new();
    if let Some(dynamic) = Dynamic::parse(bytes, &program_headers, ctx).context("PT_DYNAMIC")? {
        let strings = Strtab::parse(bytes, dynamic.info.strtab, dynamic.info.strsz, 0)
            .context("the dynamic string table")?;
        let mut count = 0;
        for entry in &dynamic.dyns {
            let (list, limit, what) = match entry.d_tag {
                DT_NEEDED => (&mut needed, MAX_NAME, "DT_NEEDED"),
                DT_RPATH => (&mut rpath, MAX_PATH, "DT_RPATH"),
                DT_RUNPATH => (&mut runpath, MAX_PATH, "DT_RUNPATH"),
                _ => continue,
            };
            // Many entries may name one long string: both are bounded, so a
            // small file cannot become gigabytes of copies.
            count += 1;
            if count > MAX_DYNAMIC_STRINGS {
                bail!("more than {MAX_DYNAMIC_STRINGS} DT_NEEDED/DT_RPATH/DT_RUNPATH entries");
            }
            let at = usize::try_from(entry.d_val).ok();
            let text = at.and_then(|at| strings.get_at(at)).with_context(|| {
                format!("a dynamic entry points outside its string table ({at:?})")
            })?;
            if text.len() > limit {
                bail!(
                    "a {what} string is {} bytes long: no linker takes more than {limit}",
                    text.len()
                );
            }
            list.push(text.to_string());
        }
    }
    Ok(ElfFile {
        abi: Abi {
            bits,
            little_endian,
            machine: header.e_machine,
        },
        loadable: matches!(header.e_type, header::ET_EXEC | header::ET_DYN),
        interpreter,
        needed,
        rpath,
        runpath,
    })
}

/// Small, well-formed ELF files made to order: the tests' fixtures and the
/// stand-in packages' programs (`dev/standins.rs`), which must fail to load
/// exactly where the real packages' programs would.
pub mod synthetic {
    use super::*;

    /// What a made ELF file holds.
    #[derive(Debug, Clone, Default)]
    pub struct Spec<'a> {
        pub bits: u8,
        pub big_endian: bool,
        pub machine: u16,
        pub interpreter: Option<&'a str>,
        pub needed: &'a [&'a str],
        pub runpath: Option<&'a str>,
        pub rpath: Option<&'a str>,
    }

    /// A small but well-formed ELF file made from `spec`: the ELF header,
    /// program headers (one PT_LOAD mapping the whole file at address 0,
    /// PT_INTERP, PT_DYNAMIC), the interpreter string, the dynamic string
    /// table and the dynamic section, as a linker lays them out.
    pub fn make(spec: &Spec<'_>) -> Vec<u8> {
        let wide = spec.bits == 64;
        let word = if wide { 8 } else { 4 };
        let (ehsize, phentsize) = if wide { (64, 56) } else { (52, 32) };
        let has_dynamic = !spec.needed.is_empty() || spec.runpath.is_some() || spec.rpath.is_some();
        let phnum = 1 + usize::from(spec.interpreter.is_some()) + usize::from(has_dynamic);
        // Strings: the interpreter, then the dynamic string table.
        let interp_at = ehsize + phnum * phentsize;
        let interp: Vec<u8> = spec
            .interpreter
            .map(|i| [i.as_bytes(), b"\0"].concat())
            .unwrap_or_default();
        let strtab_at = interp_at + interp.len();
        let mut strtab = vec![0u8];
        let mut dyns: Vec<(u64, u64)> = Vec::new();
        for (tag, text) in spec
            .needed
            .iter()
            .map(|n| (DT_NEEDED, *n))
            .chain(spec.rpath.map(|r| (DT_RPATH, r)))
            .chain(spec.runpath.map(|r| (DT_RUNPATH, r)))
        {
            dyns.push((tag, strtab.len() as u64));
            strtab.extend(text.as_bytes());
            strtab.push(0);
        }
        let dynamic_at = (strtab_at + strtab.len()).next_multiple_of(word);
        dyns.push((5, strtab_at as u64)); // DT_STRTAB (an address: the file is mapped at 0)
        dyns.push((10, strtab.len() as u64)); // DT_STRSZ
        dyns.push((0, 0)); // DT_NULL
        let dynamic_size = if has_dynamic {
            dyns.len() * 2 * word
        } else {
            0
        };
        let total = dynamic_at + dynamic_size;
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, value: u64, size: usize| {
            let bytes = value.to_le_bytes();
            let mut field = bytes[..size].to_vec();
            if spec.big_endian {
                field.reverse();
            }
            out.extend(field);
        };
        // ELF header.
        out.extend(MAGIC);
        out.push(if wide { 2 } else { 1 });
        out.push(if spec.big_endian { 2 } else { 1 });
        out.push(1); // EI_VERSION
        out.extend([0u8; 9]);
        put(&mut out, 3, 2); // ET_DYN
        put(&mut out, u64::from(spec.machine), 2);
        put(&mut out, 1, 4); // e_version
        put(&mut out, 0, word); // e_entry
        put(&mut out, ehsize as u64, word); // e_phoff
        put(&mut out, 0, word); // e_shoff
        put(&mut out, 0, 4); // e_flags
        put(&mut out, ehsize as u64, 2);
        put(&mut out, phentsize as u64, 2);
        put(&mut out, phnum as u64, 2);
        put(&mut out, 0, 2); // e_shentsize
        put(&mut out, 0, 2); // e_shnum
        put(&mut out, 0, 2); // e_shstrndx
        assert_eq!(out.len(), ehsize);
        // Program headers: (type, offset, size).
        let mut phdrs = vec![(1u32, 0usize, total)]; // PT_LOAD
        if spec.interpreter.is_some() {
            phdrs.push((3, interp_at, interp.len())); // PT_INTERP
        }
        if has_dynamic {
            phdrs.push((2, dynamic_at, dynamic_size)); // PT_DYNAMIC
        }
        for (kind, offset, size) in phdrs {
            let (offset, size) = (offset as u64, size as u64);
            put(&mut out, u64::from(kind), 4);
            if wide {
                put(&mut out, 4, 4); // p_flags
                for value in [offset, offset, offset, size, size, 8] {
                    put(&mut out, value, 8);
                }
            } else {
                for value in [offset, offset, offset, size, size] {
                    put(&mut out, value, 4);
                }
                put(&mut out, 4, 4); // p_flags
                put(&mut out, 4, 4); // p_align
            }
        }
        out.extend(&interp);
        out.extend(&strtab);
        out.resize(dynamic_at, 0);
        if has_dynamic {
            for (tag, value) in dyns {
                put(&mut out, tag, word);
                put(&mut out, value, word);
            }
        }
        assert_eq!(out.len(), total);
        out
    }
}

#[cfg(test)]
pub mod tests {
    pub use super::synthetic::{make, Spec};
    use super::*;

    #[test]
    fn both_classes_and_byte_orders_read_alike() {
        for (bits, big_endian, machine) in [
            (64, false, 62),
            (32, false, 3),
            (64, true, 22),
            (32, true, 8),
        ] {
            let spec = Spec {
                bits,
                big_endian,
                machine,
                interpreter: Some("/lib/ld-musl-x86_64.so.1"),
                needed: &["libz.so.1", "libc.musl-x86_64.so.1"],
                runpath: Some("$ORIGIN/../lib:/opt/lib"),
                rpath: Some("/old"),
            };
            let elf = read(&make(&spec)).unwrap();
            assert_eq!(
                elf,
                ElfFile {
                    abi: Abi {
                        bits,
                        little_endian: !big_endian,
                        machine
                    },
                    loadable: true,
                    interpreter: Some("/lib/ld-musl-x86_64.so.1".into()),
                    needed: vec!["libz.so.1".into(), "libc.musl-x86_64.so.1".into()],
                    rpath: vec!["/old".into()],
                    runpath: vec!["$ORIGIN/../lib:/opt/lib".into()],
                },
                "{bits}-bit, big endian: {big_endian}"
            );
        }
    }

    #[test]
    fn a_static_file_has_no_interpreter_and_needs_nothing() {
        let elf = read(&make(&Spec {
            bits: 64,
            machine: 62,
            ..Spec::default()
        }))
        .unwrap();
        assert_eq!(elf.interpreter, None);
        assert!(elf.needed.is_empty());
        assert_eq!(elf.abi.to_string(), "64-bit LSB x86_64");
    }

    #[test]
    fn long_or_many_names_are_refused_not_copied() {
        let long = "l".repeat(256);
        let error = read(&make(&Spec {
            bits: 64,
            machine: 62,
            needed: &[&long],
            ..Spec::default()
        }))
        .unwrap_err();
        assert!(
            error.to_string().contains("no linker takes more than 255"),
            "{error}"
        );
        let names: Vec<String> = (0..4097).map(|i| format!("l{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let error = read(&make(&Spec {
            bits: 64,
            machine: 62,
            needed: &names,
            ..Spec::default()
        }))
        .unwrap_err();
        assert!(error.to_string().contains("more than 4096"), "{error}");
    }

    #[test]
    fn broken_headers_are_errors_not_panics() {
        let whole = make(&Spec {
            bits: 64,
            machine: 62,
            interpreter: Some("/lib/ld.so"),
            needed: &["liba.so"],
            ..Spec::default()
        });
        // Every truncation of a valid file: an error or a shorter reading, never a panic.
        for length in 0..whole.len() {
            let _ = read(&whole[..length]);
        }
        assert!(read(b"\x7fELF").is_err());
        let mut bad_class = whole.clone();
        bad_class[4] = 9;
        assert!(read(&bad_class).is_err());
    }
}
