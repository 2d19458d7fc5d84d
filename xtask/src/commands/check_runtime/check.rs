//! The check itself, pure: an image's final filesystem, what was read from
//! its files, and its config in; what would fail at start out.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result};
use serde::Serialize;

use super::elf::{self, Abi, ElfFile};
use super::loader::{expand_origin, split_path, Loader};
use super::providers::provider;
use super::tree::{absolute, lookup_within, parent, End, Lookup};
use crate::oci::rootfs::{Entry, Kind, Origin, Rootfs, Sniffed};

/// The first bytes of each file that decide whether it is read.
pub const HEAD: usize = 4;
/// ELF files and scripts larger than this are not read (a libLLVM is ~100 MiB).
pub const MAX_FILE: u64 = 1 << 30;
/// Text files read (`/etc/passwd`, musl's path file) larger than this are refused.
const MAX_TEXT: usize = 1 << 20;
/// `#!` interpreters of interpreters followed (Linux allows 4 levels).
const MAX_SCRIPT_DEPTH: usize = 4;
/// Steps one image's check may take (each path part walked, link part
/// queued, search folder tried): a real image needs well under a million, a
/// crafted one could ask for billions.
const MAX_STEPS: u64 = 3_000_000;
/// Bytes of problem text one verdict shows; the rest are counted.
const MAX_PROBLEM_TEXT: usize = 64 << 10;
/// Folders named in one "not found" message.
const SHOWN_DIRS: usize = 12;
/// The largest uid or gid runc accepts.
const MAX_ID: u64 = (1 << 31) - 1;
/// The runtime's `PATH` when the image sets none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a file's bytes turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    Elf(ElfFile),
    /// Starts like ELF, but its headers do not hold together.
    BrokenElf(String),
    /// A `#!` script: its first line, without the `#!`.
    Script(String),
    /// A text file we read (`/etc/passwd`, `/etc/group`, musl's path file).
    Text(String),
    /// An ELF file or script larger than [`MAX_FILE`], not read.
    TooLarge(u64),
    /// A text file we read, larger than [`MAX_TEXT`].
    TextTooLarge(u64),
}

/// Whether a file is read: ELF files, scripts, and the text files the check
/// needs, by their path.
pub fn wants(path: &str, head: &[u8]) -> bool {
    head.starts_with(elf::MAGIC) || head.starts_with(b"#!") || is_text_we_read(path)
}

fn is_text_we_read(path: &str) -> bool {
    if path == "etc/passwd" || path == "etc/group" {
        return true;
    }
    // musl's path file: `<prefix>/etc/ld-musl-<arch>.path`.
    match path.rsplit_once('/') {
        Some((dir, name)) => {
            (dir == "etc" || dir.ends_with("/etc"))
                && name.starts_with("ld-musl-")
                && name.ends_with(".path")
        }
        None => false,
    }
}

/// What a file read by [`wants`] holds.
pub fn sniff(path: &str, bytes: Sniffed<'_>) -> Sniff {
    let bytes = match bytes {
        Sniffed::Whole(bytes) => bytes,
        Sniffed::TooLarge { size } => return Sniff::TooLarge(size),
    };
    if bytes.starts_with(elf::MAGIC) {
        return match elf::read(bytes) {
            Ok(file) => Sniff::Elf(file),
            Err(error) => Sniff::BrokenElf(format!("{error:#}")),
        };
    }
    if let Some(rest) = bytes.strip_prefix(b"#!") {
        // The kernel reads the first 256 bytes, `#!` included; nothing is
        // trimmed here (a `\r` is part of what it looks for).
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = &line[..line.len().min(254)];
        return Sniff::Script(String::from_utf8_lossy(line).into_owned());
    }
    if !is_text_we_read(path) {
        return Sniff::TooLarge(bytes.len() as u64);
    }
    if bytes.len() > MAX_TEXT {
        return Sniff::TextTooLarge(bytes.len() as u64);
    }
    Sniff::Text(String::from_utf8_lossy(bytes).into_owned())
}

/// How the image is started: its config's `Entrypoint`, `Cmd`, `WorkingDir`,
/// `User` and `Env`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub env: Vec<(String, String)>,
    /// The config's `architecture` (`amd64`, `arm64`, …), when it says.
    pub architecture: String,
}

impl RunConfig {
    /// From an OCI image config (its `config` object; every field optional).
    pub fn from_image_config(config: &serde_json::Value) -> Result<RunConfig> {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct Fields {
            entrypoint: Option<Vec<String>>,
            cmd: Option<Vec<String>>,
            working_dir: Option<String>,
            user: Option<String>,
            env: Option<Vec<String>>,
        }
        let architecture = config
            .get("architecture")
            .and_then(|a| a.as_str())
            .unwrap_or_default()
            .to_string();
        let fields: Fields = match config.get("config") {
            None | Some(serde_json::Value::Null) => Fields::default(),
            Some(value) => serde_json::from_value(value.clone())
                .context("the image config's `config` object is not as the OCI spec says")?,
        };
        Ok(RunConfig {
            entrypoint: fields.entrypoint.unwrap_or_default(),
            cmd: fields.cmd.unwrap_or_default(),
            working_dir: fields.working_dir.unwrap_or_default(),
            user: fields.user.unwrap_or_default(),
            env: fields
                .env
                .unwrap_or_default()
                .into_iter()
                .map(|pair| match pair.split_once('=') {
                    Some((name, value)) => (name.to_string(), value.to_string()),
                    None => (pair, String::new()),
                })
                .collect(),
            architecture,
        })
    }

    /// The class and machine an `architecture` runs (`None`: not one we know).
    pub fn machine(&self) -> Option<(u8, u16)> {
        Some(match self.architecture.as_str() {
            "amd64" => (64, 62),
            "arm64" => (64, 183),
            "386" => (32, 3),
            "arm" => (32, 40),
            "riscv64" => (64, 243),
            "ppc64le" => (64, 21),
            "s390x" => (64, 22),
            _ => return None,
        })
    }

    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// What the runtime executes: the entrypoint, then the command.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

/// One thing that would fail at start, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// The file (or `USER`, `WORKDIR`) the problem is about.
    pub file: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// The StageX package of the pinned release that likely ships it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)?;
        if let Some(package) = &self.package {
            write!(f, "; StageX package `{package}` provides it")?;
        }
        Ok(())
    }
}

/// The check's result for one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    /// What the runtime executes (entrypoint + command).
    pub argv: Vec<String>,
    /// The program `argv[0]` resolves to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// ELF files (by content).
    pub elf_files: usize,
    /// Of those, the ones with an interpreter (glibc's libc.so.6 is one too).
    pub programs: usize,
    /// Libraries those programs load (and the libraries they need, for
    /// libraries no program here loads), each once.
    pub libraries: usize,
    pub problems: Vec<Problem>,
    /// What the check could not judge, or chose not to.
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let start = match (&self.program, self.argv.is_empty()) {
            (_, true) => "no entrypoint".to_string(),
            (Some(program), false) => format!("starts {program}"),
            (None, false) => format!("starts {}", self.argv[0]),
        };
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut line = format!(
            "{start}; {} ({} with an interpreter); {} loaded",
            count(self.elf_files, "ELF file", "ELF files"),
            self.programs,
            count(self.libraries, "library", "libraries"),
        );
        if !self.problems.is_empty() {
            line.push_str(&format!(
                "; {}",
                count(self.problems.len(), "problem", "problems")
            ));
        }
        line
    }
}

/// An image as the check sees it.
pub struct Image<'a> {
    rootfs: &'a Rootfs,
    sniffs: &'a HashMap<Origin, Sniff>,
    config: &'a RunConfig,
    /// Package names of the pinned StageX release.
    packages: &'a BTreeSet<String>,
    /// Steps left: path components walked, link parts queued, search
    /// folders and loaders' chains walked ([`MAX_STEPS`] to start with).
    steps: Cell<u64>,
}

/// A user, its group and its other groups, as the runtime starts the image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunAs {
    uid: u64,
    gid: u64,
    groups: Vec<u64>,
}

/// An object loaded while resolving one program's libraries.
struct Loaded<'e> {
    /// The path it was found at (before symlinks): `$ORIGIN` for musl.
    found_at: String,
    /// Its path, symlinks resolved: what people are shown.
    file: String,
    elf: &'e ElfFile,
    loaded_by: Option<usize>,
}

/// A library the loader takes.
struct Found<'e> {
    found_at: String,
    file: String,
    origin: Origin,
    /// `None` when it is too large to read (its own needs are not judged).
    elf: Option<&'e ElfFile>,
}

/// How a program is reached, for messages.
#[derive(Clone, Copy)]
enum Role<'s> {
    Entrypoint,
    /// Started by a wrapper (tini, dumb-init, env).
    Wrapped(&'s str),
    /// A script's `#!` interpreter.
    Interpreter(&'s str),
    /// What `env` starts for a script.
    EnvProgram(&'s str),
}

impl Role<'_> {
    /// The file a problem is about, and how the program was reached.
    fn describe(&self, path: &str) -> (String, String) {
        match self {
            Role::Entrypoint => (path.to_string(), "the entrypoint".to_string()),
            Role::Wrapped(wrapper) => (path.to_string(), format!("the program {wrapper} starts")),
            Role::Interpreter(script) => (script.to_string(), format!("its #! interpreter {path}")),
            Role::EnvProgram(script) => (
                script.to_string(),
                format!("the program its #! line has `env` start, `{path}`"),
            ),
        }
    }
}

/// A `#!` line as the kernel reads it: the interpreter up to the first space
/// or tab, the rest (spaces and tabs trimmed, nothing else) one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    pub interpreter: String,
    pub argument: Option<String>,
}

pub fn parse_shebang(line: &str) -> Option<Shebang> {
    let line = line.trim_start_matches([' ', '\t']);
    let (interpreter, rest) = match line.find([' ', '\t']) {
        Some(at) => (&line[..at], &line[at..]),
        None => (line, ""),
    };
    if interpreter.is_empty() {
        return None;
    }
    let rest = rest.trim_matches([' ', '\t']);
    Some(Shebang {
        interpreter: interpreter.to_string(),
        argument: (!rest.is_empty()).then(|| rest.to_string()),
    })
}

/// Options of the wrappers we look behind that take a value.
fn value_options(wrapper: &str) -> &'static [&'static str] {
    match wrapper {
        "tini" | "tini-static" => &["-p", "-e"],
        "dumb-init" => &["-r", "--rewrite"],
        "env" => &["-u", "--unset", "-C", "--chdir"],
        _ => &[],
    }
}

/// The program a wrapper starts, from the arguments after it.
fn wrapped_program<'s>(wrapper: &str, args: &'s [String]) -> Option<&'s str> {
    if let Some(at) = args.iter().position(|a| a == "--") {
        return args.get(at + 1).map(String::as_str);
    }
    let takes_value = value_options(wrapper);
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
            continue;
        }
        if takes_value.contains(&arg.as_str()) {
            skip = true;
            continue;
        }
        let option = arg.starts_with('-');
        let assignment = wrapper == "env" && arg.contains('=');
        if !option && !assignment {
            return Some(arg);
        }
    }
    None
}

/// `dir/name`, a relative `dir` taken from `base` (the working folder).
fn join(base: &str, dir: &str, name: &str) -> String {
    let dir = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{}/{dir}", base.trim_end_matches('/'))
    };
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// The problems, in order, up to [`MAX_PROBLEM_TEXT`] bytes of text, then one
/// line that counts the rest: a crafted image must not make megabytes of output.
fn capped(problems: BTreeSet<Problem>) -> Vec<Problem> {
    let total = problems.len();
    let mut shown = Vec::new();
    let mut bytes = 0;
    for problem in problems {
        bytes += problem.file.len() + problem.message.len();
        if bytes > MAX_PROBLEM_TEXT {
            break;
        }
        shown.push(problem);
    }
    if shown.len() < total {
        let more = total - shown.len();
        shown.push(Problem {
            file: "-".into(),
            message: format!(
                "{more} more problem(s) not shown (over {MAX_PROBLEM_TEXT} bytes of text)"
            ),
            library: None,
            package: None,
        });
    }
    shown
}

impl<'a> Image<'a> {
    pub fn new(
        rootfs: &'a Rootfs,
        sniffs: &'a HashMap<Origin, Sniff>,
        config: &'a RunConfig,
        packages: &'a BTreeSet<String>,
    ) -> Image<'a> {
        Image {
            rootfs,
            sniffs,
            config,
            packages,
            steps: Cell::new(MAX_STEPS),
        }
    }

    /// The working folder the runtime starts in (`/` when none is set).
    fn working_dir(&self) -> &str {
        if self.config.working_dir.is_empty() {
            "/"
        } else {
            &self.config.working_dir
        }
    }

    /// The same image on a smaller budget, so a test reaches its end fast
    /// (the work per step differs by image: 3M steps of the library chain
    /// test take 6 s unoptimised).
    #[cfg(test)]
    fn with_budget(self, steps: u64) -> Self {
        self.steps.set(steps);
        self
    }

    /// One more step, if the budget allows.
    fn spend(&self) -> bool {
        let left = self.steps.get();
        self.steps.set(left.saturating_sub(1));
        left > 0
    }

    fn spent(&self) -> bool {
        self.steps.get() == 0
    }

    /// A lookup charged to the check's budget.
    fn lookup(&self, path: &str) -> Lookup<'a> {
        lookup_within(self.rootfs, path, &self.steps)
    }

    fn sniff_of(&self, entry: &Entry) -> Option<&'a Sniff> {
        self.sniffs.get(&entry.origin()?)
    }

    /// The text of a file we read, looked up with symlinks followed.
    fn text(&self, path: &str) -> Option<&'a str> {
        let found = self.lookup(path);
        let (_, entry) = found.file()?;
        match self.sniff_of(entry)? {
            Sniff::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn check(&self) -> Verdict {
        let mut verdict = Verdict {
            argv: self.config.argv(),
            ..Verdict::default()
        };
        let mut problems = BTreeSet::new();
        // Every ELF file once, by content, under its first path.
        let mut elves: BTreeMap<Origin, (String, &ElfFile)> = BTreeMap::new();
        for (path, entry) in self.rootfs.files() {
            let Some(origin) = entry.origin() else {
                continue;
            };
            match self.sniffs.get(&origin) {
                Some(Sniff::Elf(file)) => {
                    elves.entry(origin).or_insert((absolute(path), file));
                }
                // Only a problem where something loads or runs it (below).
                Some(Sniff::BrokenElf(error)) => verdict.notes.push(format!(
                    "{} starts like an ELF file but does not read as one ({error}): nothing here may load or run it",
                    absolute(path)
                )),
                Some(Sniff::TooLarge(size)) => verdict.notes.push(format!(
                    "{} ({size} bytes) is larger than {MAX_FILE} bytes: not read, its own libraries not checked",
                    absolute(path)
                )),
                Some(Sniff::TextTooLarge(size)) => verdict.notes.push(format!(
                    "{} ({size} bytes) is larger than {MAX_TEXT} bytes: not read",
                    absolute(path)
                )),
                _ => {}
            }
        }
        verdict.elf_files = elves.len();
        let mut reached: BTreeSet<Origin> = BTreeSet::new();
        let mut interpreters: BTreeMap<(&str, Abi), usize> = BTreeMap::new();
        for (path, file) in elves.values() {
            let Some(interpreter) = file.interpreter.as_deref().filter(|_| file.loadable) else {
                continue;
            };
            verdict.programs += 1;
            *interpreters.entry((interpreter, file.abi)).or_default() += 1;
            let loader = Loader::of(interpreter, file.abi);
            self.check_interpreter(path, file, interpreter, &mut problems);
            self.resolve_libraries(path, file, &loader, &mut reached, &mut problems);
        }
        // Libraries no program here loads: checked with the linker most
        // programs name (a base image's libraries are for programs to come).
        let usual = interpreters
            .iter()
            .max_by_key(|(_, count)| **count)
            .map(|((interpreter, abi), _)| Loader::of(interpreter, *abi));
        for (origin, (path, file)) in &elves {
            if reached.contains(origin)
                || file.interpreter.is_some()
                || file.needed.is_empty()
                || !file.loadable
            {
                continue;
            }
            let loader = match &usual {
                Some(Loader::Glibc { .. }) => Loader::Glibc { abi: file.abi },
                Some(loader) => loader.clone(),
                None => Loader::musl_for(file.abi),
            };
            self.resolve_libraries(path, file, &loader, &mut reached, &mut problems);
        }
        verdict.libraries = reached.len();
        verdict.program = self.check_start(&mut problems, &mut verdict.notes);
        if self.spent() {
            problems.insert(Problem {
                file: "-".into(),
                message: format!(
                    "the check stopped after {MAX_STEPS} steps (path parts walked, links and search folders followed): more than any real image needs (a crafted archive?)"
                ),
                library: None,
                package: None,
            });
        }
        verdict.problems = capped(problems);
        verdict
    }

    /// The program's `PT_INTERP`: a file here, a loadable ELF of the
    /// program's class and machine.
    fn check_interpreter(
        &self,
        path: &str,
        file: &ElfFile,
        interpreter: &str,
        problems: &mut BTreeSet<Problem>,
    ) {
        let at = if interpreter.starts_with('/') {
            interpreter.to_string()
        } else {
            join(self.working_dir(), "", interpreter)
        };
        let found = self.lookup(&at);
        let message = match found.file() {
            None => Some(found.why_not(&at)),
            Some((resolved, entry)) => match self.sniff_of(entry) {
                Some(Sniff::Elf(linker)) if linker.abi == file.abi && linker.loadable => None,
                Some(Sniff::Elf(linker)) if linker.abi != file.abi => Some(format!(
                    "{resolved} is {}, the program {}",
                    linker.abi, file.abi
                )),
                Some(Sniff::TooLarge(_)) => None,
                _ => Some(format!("{resolved} is not a loadable ELF file")),
            },
        };
        if let Some(message) = message {
            problems.insert(Problem {
                file: path.to_string(),
                message: format!("needs its dynamic linker {interpreter}: {message}"),
                library: Some(interpreter.to_string()),
                package: None,
            });
        }
    }

    /// Load `root`'s libraries as `loader` would, breadth first, each name
    /// once; every library not found is a problem of the file that needs it.
    fn resolve_libraries(
        &self,
        root: &str,
        file: &'a ElfFile,
        loader: &Loader,
        reached: &mut BTreeSet<Origin>,
        problems: &mut BTreeSet<Problem>,
    ) {
        // musl reads its path file when it exists; one that cannot be read
        // (a folder) leaves no system folders at all.
        let path_file = loader.path_file().map(|path| {
            let found = self.lookup(&path);
            match found.file() {
                Some(_) => Some(self.text(&path).unwrap_or_default()),
                None if matches!(found.end, End::Missing(_)) => None,
                None => Some(""),
            }
        });
        let system = loader.system_dirs(path_file.flatten());
        let library_path = self
            .config
            .env("LD_LIBRARY_PATH")
            .map(split_path)
            .unwrap_or_default();
        let mut loaded = vec![Loaded {
            found_at: root.to_string(),
            file: root.to_string(),
            elf: file,
            loaded_by: None,
        }];
        let mut names: BTreeSet<&str> = BTreeSet::new();
        let mut in_closure: BTreeSet<Origin> = BTreeSet::new();
        let mut next = 0;
        while next < loaded.len() {
            let elf: &'a ElfFile = loaded[next].elf;
            for name in &elf.needed {
                if self.spent() {
                    return;
                }
                if loader.provides(name) || !names.insert(name.as_str()) {
                    continue;
                }
                let dirs = self.search_dirs(loader, &loaded, next, &library_path, &system);
                match self.find(name, &dirs, elf.abi, loader) {
                    Ok(found) => {
                        reached.insert(found.origin);
                        if let Some(found_elf) = found.elf {
                            if in_closure.insert(found.origin) {
                                loaded.push(Loaded {
                                    found_at: found.found_at,
                                    file: found.file,
                                    elf: found_elf,
                                    loaded_by: Some(next),
                                });
                            }
                        }
                    }
                    Err(message) => {
                        problems.insert(Problem {
                            file: loaded[next].file.clone(),
                            message: format!("needs {name}: {message}"),
                            package: provider(name, self.packages),
                            library: Some(name.clone()),
                        });
                    }
                }
            }
            next += 1;
        }
    }

    /// The folders searched for a library `loaded[at]` needs, in order, each once.
    fn search_dirs(
        &self,
        loader: &Loader,
        loaded: &[Loaded<'_>],
        at: usize,
        library_path: &[String],
        system: &[String],
    ) -> Vec<String> {
        let base = self.working_dir();
        // The object and those that loaded it, nearest first.
        let mut chain = Vec::new();
        let mut next = Some(at);
        while let Some(index) = next {
            // Walking the chain is work too: it counts against the budget.
            self.spend();
            chain.push(&loaded[index]);
            next = loaded[index].loaded_by;
        }
        let origin_of = |object: &Loaded<'_>| parent(&object.found_at);
        let mut dirs: Vec<String> = Vec::new();
        match loader {
            Loader::Musl { .. } => {
                dirs.extend(library_path.iter().cloned());
                for object in &chain {
                    // musl keeps one run path (RUNPATH over RPATH, the last
                    // of each), and ignores it whole when it holds a `$`
                    // other than `$ORIGIN`.
                    let runpath = object.elf.runpath.last().or(object.elf.rpath.last());
                    if let Some(path) = runpath {
                        let rest = path.replace("${ORIGIN}", "").replace("$ORIGIN", "");
                        if !rest.contains('$') {
                            dirs.extend(expand_origin(path, &origin_of(object)));
                        }
                    }
                }
            }
            Loader::Glibc { .. } => {
                if chain[0].elf.runpath.is_empty() {
                    for object in chain.iter().filter(|o| o.elf.runpath.is_empty()) {
                        if let Some(path) = object.elf.rpath.first() {
                            dirs.extend(expand_origin(path, &origin_of(object)));
                        }
                    }
                }
                dirs.extend(library_path.iter().cloned());
                if let Some(path) = chain[0].elf.runpath.first() {
                    dirs.extend(expand_origin(path, &origin_of(chain[0])));
                }
            }
        }
        dirs.extend(system.iter().cloned());
        // Relative folders are opened from the working folder.
        let mut seen = BTreeSet::new();
        dirs.into_iter()
            .map(|dir| {
                if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", base.trim_end_matches('/'))
                }
            })
            .filter(|dir| seen.insert(dir.clone()))
            .collect()
    }

    /// Whether `path`'s last part is a symlink (its folder resolved).
    fn is_symlink(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        match self.lookup(&parent(path)).end {
            End::Found(dir, _) => {
                let at = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                self.rootfs
                    .entries
                    .get(&at)
                    .is_some_and(|entry| entry.kind == Kind::Symlink)
            }
            _ => false,
        }
    }

    /// The library the loader takes for `name`: the first candidate that
    /// exists (musl: whatever it holds; glibc skips files of another class
    /// or machine). A missing file or folder moves on; a loop, a folder or a
    /// file no linker loads ends the search.
    fn find(
        &self,
        name: &str,
        dirs: &[String],
        abi: Abi,
        loader: &Loader,
    ) -> std::result::Result<Found<'a>, String> {
        let candidates: Vec<String> = if name.contains('/') {
            // A path: as it is, from the working folder when relative.
            vec![if name.starts_with('/') {
                name.to_string()
            } else {
                join(self.working_dir(), "", name)
            }]
        } else {
            dirs.iter()
                .map(|dir| join(self.working_dir(), dir, name))
                .collect()
        };
        let mut seen: Vec<String> = Vec::new();
        for candidate in &candidates {
            if !self.spend() {
                return Err("not judged: the check's lookup budget is spent".into());
            }
            let found = self.lookup(candidate);
            let Some((resolved, entry)) = found.file() else {
                match &found.end {
                    End::TooManyLinks => return Err(found.why_not(candidate)),
                    End::Found(_, _) => {
                        return Err(format!(
                            "{}: the linker opens it, and fails",
                            found.why_not(candidate)
                        ))
                    }
                    _ => {}
                }
                // Worth naming: a symlink of that name that leads nowhere.
                let why = found.why_not(candidate);
                if self.is_symlink(candidate) && !seen.contains(&why) {
                    seen.push(why);
                }
                continue;
            };
            let Some(origin) = entry.origin() else {
                continue;
            };
            let why = match self.sniff_of(entry) {
                Some(Sniff::Elf(elf)) if elf.abi == abi && elf.loadable => {
                    return Ok(Found {
                        found_at: absolute(candidate),
                        file: resolved,
                        origin,
                        elf: Some(elf),
                    });
                }
                Some(Sniff::TooLarge(_)) => {
                    return Ok(Found {
                        found_at: absolute(candidate),
                        file: resolved,
                        origin,
                        elf: None,
                    });
                }
                Some(Sniff::Elf(elf)) if elf.abi != abi => {
                    let why = format!("{resolved} is {}, not {abi}", elf.abi);
                    if !loader.skips_foreign_files() {
                        return Err(why);
                    }
                    why
                }
                Some(Sniff::Elf(_)) => {
                    return Err(format!(
                        "{resolved} is an ELF file no linker loads (a relocatable object?)"
                    ))
                }
                Some(Sniff::BrokenElf(error)) => {
                    return Err(format!("{resolved} does not read as an ELF file: {error}"))
                }
                _ => return Err(format!("{resolved} is not an ELF file")),
            };
            if !seen.contains(&why) {
                seen.push(why);
            }
        }
        let searched = if name.contains('/') {
            String::new()
        } else if dirs.len() > SHOWN_DIRS {
            format!(
                " in {}, … ({} more folders)",
                dirs[..SHOWN_DIRS].join(", "),
                dirs.len() - SHOWN_DIRS
            )
        } else {
            format!(" in {}", dirs.join(", "))
        };
        let mut message = format!("not found{searched} ({} rules)", loader.name());
        for why in seen {
            message.push_str("; ");
            message.push_str(&why);
        }
        Err(message)
    }

    /// Whether the image's start holds up: its user, its working folder, its
    /// program (and a script's interpreter, a wrapper's program).
    fn check_start(
        &self,
        problems: &mut BTreeSet<Problem>,
        notes: &mut Vec<String>,
    ) -> Option<String> {
        let run_as = self.run_as(problems);
        if !self.config.working_dir.is_empty() {
            let found = self.lookup(&self.config.working_dir);
            match &found.end {
                End::Found(_, None) => {}
                End::Found(_, Some(entry)) if entry.kind == Kind::Directory => {}
                End::Missing(_) if found.links.is_empty() => notes.push(format!(
                    "WORKDIR {} does not exist: the runtime creates it",
                    self.config.working_dir
                )),
                _ => {
                    problems.insert(Problem {
                        file: "WORKDIR".into(),
                        message: format!(
                            "{}: {}",
                            self.config.working_dir,
                            found.why_not(&self.config.working_dir)
                        ),
                        library: None,
                        package: None,
                    });
                }
            }
        }
        let argv = self.config.argv();
        let Some(first) = argv.first() else {
            notes.push("no entrypoint or command: nothing to start (an image to build on)".into());
            return None;
        };
        let program = self.check_program(first, Role::Entrypoint, &run_as, 0, problems)?;
        // A wrapper's own program is started too.
        let wrapper = program.rsplit('/').next().unwrap_or_default();
        if ["tini", "tini-static", "dumb-init", "env"].contains(&wrapper) {
            if let Some(started) = wrapped_program(wrapper, &argv[1..]) {
                self.check_program(started, Role::Wrapped(wrapper), &run_as, 1, problems);
            }
        }
        Some(program)
    }

    /// `USER` as runc reads it: a name must be in `/etc/passwd`; a numeric
    /// uid takes the gid of its passwd entry when it has one; without an
    /// explicit group, the groups of `/etc/group` that list the user count.
    fn run_as(&self, problems: &mut BTreeSet<Problem>) -> Option<RunAs> {
        let spec = self.config.user.trim();
        let mut problem = |message: String| {
            problems.insert(Problem {
                file: "USER".into(),
                message: format!("{spec}: {message}"),
                library: None,
                package: None,
            });
            None
        };
        let (user, group) = match spec.split_once(':') {
            Some((user, group)) => (user, Some(group).filter(|g| !g.is_empty())),
            None => (spec, None),
        };
        let passwd: Vec<Vec<&str>> = self
            .text("/etc/passwd")
            .map(|text| {
                text.lines()
                    .map(|line| line.split(':').collect::<Vec<&str>>())
                    .filter(|fields| fields.len() >= 4)
                    .collect()
            })
            .unwrap_or_default();
        let groups: Vec<Vec<&str>> = self
            .text("/etc/group")
            .map(|text| {
                text.lines()
                    .map(|line| line.split(':').collect::<Vec<&str>>())
                    .filter(|fields| fields.len() >= 3)
                    .collect()
            })
            .unwrap_or_default();
        let (uid, mut gid, name) = if user.is_empty() {
            (0, 0, Some("root".to_string()))
        } else if let Ok(uid) = user.parse::<u64>() {
            let entry = passwd
                .iter()
                .find(|f| f[2].parse::<u64>().ok() == Some(uid));
            let gid = entry.and_then(|f| f[3].parse().ok()).unwrap_or(0);
            (uid, gid, entry.map(|f| f[0].to_string()))
        } else {
            match passwd.iter().find(|f| f[0] == user) {
                Some(fields) => match (fields[2].parse(), fields[3].parse()) {
                    (Ok(uid), Ok(gid)) => (uid, gid, Some(user.to_string())),
                    _ => {
                        return problem(format!(
                            "the /etc/passwd entry of `{user}` has no numeric ids"
                        ))
                    }
                },
                None if self.text("/etc/passwd").is_none() => {
                    return problem("a user name, but the image has no /etc/passwd".into())
                }
                None => return problem(format!("no user `{user}` in /etc/passwd")),
            }
        };
        let mut supplementary = Vec::new();
        match group {
            Some(group) => {
                gid = match group.parse::<u64>() {
                    Ok(gid) => gid,
                    Err(_) => match groups.iter().find(|f| f[0] == group) {
                        Some(fields) => match fields[2].parse() {
                            Ok(gid) => gid,
                            Err(_) => {
                                return problem(format!(
                                    "the /etc/group entry of `{group}` has no numeric id"
                                ))
                            }
                        },
                        None => return problem(format!("no group `{group}` in /etc/group")),
                    },
                };
            }
            None => {
                if let Some(name) = &name {
                    for fields in &groups {
                        let members = fields.get(3).copied().unwrap_or_default();
                        if members.split(',').any(|m| m == name) {
                            if let Ok(id) = fields[2].parse::<u64>() {
                                supplementary.push(id);
                            }
                        }
                    }
                }
            }
        }
        if uid > MAX_ID || gid > MAX_ID {
            return problem(format!(
                "uid {uid} or gid {gid} is above {MAX_ID}: the runtime refuses it"
            ));
        }
        Some(RunAs {
            uid,
            gid,
            groups: supplementary,
        })
    }

    /// Whether `run_as` may execute `entry`.
    fn may_execute(entry: &Entry, run_as: &RunAs) -> bool {
        let bits = if run_as.uid == 0 {
            0o111
        } else if entry.uid == run_as.uid {
            0o100
        } else if entry.gid == run_as.gid || run_as.groups.contains(&entry.gid) {
            0o010
        } else {
            0o001
        };
        entry.mode & bits != 0
    }

    /// `name` as the runtime (or the kernel, for `#!`) finds and executes it.
    fn check_program(
        &self,
        name: &str,
        role: Role<'_>,
        run_as: &Option<RunAs>,
        depth: usize,
        problems: &mut BTreeSet<Problem>,
    ) -> Option<String> {
        let mut problem = |path: &str, message: String| {
            let (file, how) = role.describe(path);
            problems.insert(Problem {
                file,
                message: format!("{how}: {message}"),
                library: None,
                package: None,
            });
            None
        };
        let executable =
            |entry: &Entry| run_as.as_ref().is_none_or(|r| Self::may_execute(entry, r));
        let path = if name.starts_with('/') {
            name.to_string()
        } else if name.contains('/') || matches!(role, Role::Interpreter(_)) {
            // A relative path, or a `#!` interpreter without a `/`: the
            // kernel opens it from the working folder, never through PATH.
            join(self.working_dir(), "", name)
        } else {
            let search = self.config.env("PATH").unwrap_or(DEFAULT_PATH);
            // The first file of that name this user may execute.
            let found = split_path(search).into_iter().find_map(|dir| {
                let candidate = join(self.working_dir(), &dir, name);
                let found = self.lookup(&candidate);
                let (_, entry) = found.file()?;
                executable(entry).then_some(candidate)
            });
            match found {
                Some(path) => path,
                None => {
                    return problem(name, format!("`{name}` is in no folder of PATH ({search}) as a file this user may execute"))
                }
            }
        };
        let found = self.lookup(&path);
        let Some((resolved, entry)) = found.file() else {
            return problem(&path, found.why_not(&path));
        };
        if let Some(run_as) = run_as {
            if !Self::may_execute(entry, run_as) {
                return problem(
                    &path,
                    format!(
                        "not executable by uid {} gid {} (mode {:o}, owner {}:{})",
                        run_as.uid, run_as.gid, entry.mode, entry.uid, entry.gid
                    ),
                );
            }
        }
        match self.sniff_of(entry) {
            Some(Sniff::Elf(file)) if file.loadable => {
                if let Some((bits, machine)) = self.config.machine() {
                    if file.abi.bits != bits || file.abi.machine != machine {
                        return problem(
                            &path,
                            format!(
                                "{resolved} is {}, but the image is {}: exec format error",
                                file.abi, self.config.architecture
                            ),
                        );
                    }
                }
            }
            Some(Sniff::Elf(_)) => return problem(&path, "an ELF file, but not a program".into()),
            Some(Sniff::BrokenElf(error)) => {
                return problem(&path, format!("does not read as an ELF file: {error}"))
            }
            Some(Sniff::Script(line)) => {
                if line.contains('\r') {
                    return problem(
                        &path,
                        format!(
                            "its #! line ends in \\r (CRLF line endings): the kernel looks for `{}` and finds nothing; convert the script to LF",
                            line.trim_start().split([' ', '\t']).next().unwrap_or_default().replace('\r', "\\r")
                        ),
                    );
                }
                let Some(shebang) = parse_shebang(line) else {
                    return problem(&path, "a script with an empty #! line".into());
                };
                if depth >= MAX_SCRIPT_DEPTH {
                    return problem(&path, "#! interpreters nested too deep".into());
                }
                let interpreter = self.check_program(
                    &shebang.interpreter,
                    Role::Interpreter(&resolved),
                    run_as,
                    depth + 1,
                    problems,
                )?;
                if interpreter.ends_with("/env") {
                    if let Some(argument) = &shebang.argument {
                        let program = match argument.strip_prefix("-S") {
                            // `env -S` splits its argument itself.
                            Some(split) => split.split_whitespace().find(|w| !w.starts_with('-')),
                            None if argument.contains([' ', '\t']) => {
                                let (file, _) = Role::Interpreter(&resolved).describe("");
                                problems.insert(Problem {
                                    file,
                                    message: format!(
                                        "its #! line hands env one argument, `{argument}`, which env takes for a program name: write `#!{} -S {argument}`",
                                        shebang.interpreter
                                    ),
                                    library: None,
                                    package: None,
                                });
                                return None;
                            }
                            None if argument.starts_with('-') => None,
                            None => Some(argument.as_str()),
                        };
                        if let Some(program) = program {
                            self.check_program(
                                program,
                                Role::EnvProgram(&resolved),
                                run_as,
                                depth + 1,
                                problems,
                            )?;
                        }
                    }
                }
            }
            Some(Sniff::TooLarge(_)) => {}
            _ => {
                return problem(
                    &path,
                    "neither an ELF program nor a #! script: exec fails".into(),
                )
            }
        }
        Some(path)
    }
}

#[cfg(test)]
mod tests;
