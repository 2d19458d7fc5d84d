//! The check itself, pure: an image's final filesystem, what was read from
//! its files, and its config in; what would fail at start out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result};
use serde::Serialize;

use super::elf::{self, Abi, ElfFile};
use super::loader::{expand_origin, split_path, Loader};
use super::providers::provider;
use super::tree::{self, absolute, lookup, parent, End};
use crate::oci::rootfs::{Entry, Kind, Origin, Rootfs, Sniffed};

/// The first bytes of each file that decide whether it is read.
pub const HEAD: usize = 4;
/// ELF files and scripts larger than this are not read (a libLLVM is ~100 MiB).
pub const MAX_FILE: u64 = 1 << 30;
/// Text files read (`/etc/passwd`, musl's path file) larger than this are refused.
const MAX_TEXT: usize = 1 << 20;
/// `#!` interpreters of interpreters followed (Linux allows 4 levels).
const MAX_SCRIPT_DEPTH: usize = 4;
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
    TooLarge(u64),
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
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = &line[..line.len().min(256)];
        return Sniff::Script(String::from_utf8_lossy(line).trim().to_string());
    }
    if bytes.len() > MAX_TEXT || !is_text_we_read(path) {
        return Sniff::TooLarge(bytes.len() as u64);
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// What the runtime executes (entrypoint + command).
    pub argv: Vec<String>,
    /// The program `argv[0]` resolves to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// ELF files (by content), of which programs (with an interpreter:
    /// glibc's libc.so.6 is both).
    pub elf_files: usize,
    pub programs: usize,
    /// Libraries found for them (and for libraries no program here loads).
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
            "{start}; {}, {}, {} resolved",
            count(self.elf_files, "ELF file", "ELF files"),
            count(self.programs, "program", "programs"),
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
    pub rootfs: &'a Rootfs,
    pub sniffs: &'a HashMap<Origin, Sniff>,
    pub config: &'a RunConfig,
    /// Package names of the pinned StageX release.
    pub packages: &'a BTreeSet<String>,
}

/// A user and group the image starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunAs {
    uid: u64,
    gid: u64,
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

impl<'a> Image<'a> {
    fn sniff_of(&self, entry: &Entry) -> Option<&'a Sniff> {
        self.sniffs.get(&entry.origin()?)
    }

    /// The text of a file we read, looked up with symlinks followed.
    fn text(&self, path: &str) -> Option<&'a str> {
        let found = lookup(self.rootfs, path);
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
                Some(Sniff::BrokenElf(error)) => {
                    problems.insert(Problem {
                        file: absolute(path),
                        message: format!(
                            "starts like an ELF file but does not read as one: {error}"
                        ),
                        library: None,
                        package: None,
                    });
                }
                Some(Sniff::TooLarge(size)) => verdict.notes.push(format!(
                    "{} ({size} bytes) is larger than {MAX_FILE} bytes: not read",
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
            if reached.contains(origin) || file.interpreter.is_some() || file.needed.is_empty() {
                continue;
            }
            if !file.loadable {
                continue;
            }
            let loader = match &usual {
                Some(Loader::Glibc { abi }) if *abi != file.abi => Loader::musl_for(file.abi),
                Some(loader) => loader.clone(),
                None => Loader::musl_for(file.abi),
            };
            self.resolve_libraries(path, file, &loader, &mut reached, &mut problems);
        }
        verdict.libraries = reached.len();
        verdict.program = self.check_start(&mut problems, &mut verdict.notes);
        verdict.problems = problems.into_iter().collect();
        verdict
    }

    /// The program's `PT_INTERP`: a file here, ELF, of the program's ABI.
    fn check_interpreter(
        &self,
        path: &str,
        file: &ElfFile,
        interpreter: &str,
        problems: &mut BTreeSet<Problem>,
    ) {
        let found = lookup(self.rootfs, interpreter);
        let message = match found.file() {
            None => Some(found.why_not(interpreter)),
            Some((resolved, entry)) => match self.sniff_of(entry) {
                Some(Sniff::Elf(linker)) if linker.abi == file.abi => None,
                Some(Sniff::Elf(linker)) => Some(format!(
                    "{resolved} is {}, the program {}",
                    linker.abi, file.abi
                )),
                _ => Some(format!("{resolved} is not an ELF file")),
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
        let path_file = loader.path_file().and_then(|path| self.text(&path));
        let system = loader.system_dirs(path_file);
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
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut in_closure: BTreeSet<Origin> = BTreeSet::new();
        let mut next = 0;
        while next < loaded.len() {
            let needed = loaded[next].elf.needed.clone();
            for name in needed {
                if loader.provides(&name) || !names.insert(name.clone()) {
                    continue;
                }
                let dirs = search_dirs(loader, &loaded, next, &library_path, &system);
                match self.find(&name, &dirs, loaded[next].elf.abi, loader) {
                    Ok((found_at, file, origin, elf)) => {
                        reached.insert(origin);
                        if in_closure.insert(origin) {
                            loaded.push(Loaded {
                                found_at,
                                file,
                                elf,
                                loaded_by: Some(next),
                            });
                        }
                    }
                    Err(message) => {
                        problems.insert(Problem {
                            file: loaded[next].file.clone(),
                            message: format!("needs {name}: {message}"),
                            package: provider(&name, self.packages),
                            library: Some(name),
                        });
                    }
                }
            }
            next += 1;
        }
    }

    /// Whether `path`'s last part is a symlink (its folder resolved).
    fn is_symlink(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        match lookup(self.rootfs, &parent(path)).end {
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

    /// The first of `dirs/name` the loader would take.
    fn find(
        &self,
        name: &str,
        dirs: &[String],
        abi: Abi,
        loader: &Loader,
    ) -> std::result::Result<(String, String, Origin, &'a ElfFile), String> {
        let candidates: Vec<String> = if name.contains('/') {
            vec![name.to_string()]
        } else {
            dirs.iter()
                .map(|dir| format!("{}/{name}", dir.trim_end_matches('/')))
                .collect()
        };
        let mut seen = Vec::new();
        for candidate in &candidates {
            let found = lookup(self.rootfs, candidate);
            let Some((resolved, entry)) = found.file() else {
                // Worth naming: a symlink of that name that leads nowhere.
                let why = found.why_not(candidate);
                if self.is_symlink(candidate) && !seen.contains(&why) {
                    seen.push(why);
                }
                continue;
            };
            let why = match self.sniff_of(entry) {
                Some(Sniff::Elf(elf)) if elf.abi == abi => {
                    if let Some(origin) = entry.origin() {
                        return Ok((tree::absolute(candidate), resolved, origin, elf));
                    }
                    continue;
                }
                Some(Sniff::Elf(elf)) => format!("{resolved} is {}, not {abi}", elf.abi),
                _ => format!("{resolved} is not an ELF file"),
            };
            if !loader.skips_foreign_files() {
                return Err(why);
            }
            if !seen.contains(&why) {
                seen.push(why);
            }
        }
        let searched = if name.contains('/') {
            String::new()
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
            let found = lookup(self.rootfs, &self.config.working_dir);
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
        let program = self.check_program(first, "the entrypoint", run_as, 0, problems)?;
        // A wrapper's own program is started too.
        let wrapper = program.rsplit('/').next().unwrap_or_default();
        if ["tini", "tini-static", "dumb-init", "env"].contains(&wrapper) {
            let rest = &argv[1..];
            let started = match rest.iter().position(|a| a == "--") {
                Some(at) => rest.get(at + 1),
                None => rest.iter().find(|a| {
                    let option = a.starts_with('-');
                    let assignment = wrapper == "env" && a.contains('=');
                    !option && !assignment
                }),
            };
            if let Some(started) = started {
                self.check_program(
                    started,
                    &format!("the program {wrapper} starts"),
                    run_as,
                    1,
                    problems,
                );
            }
        }
        Some(program)
    }

    /// `USER` as uid and gid; a name must be in `/etc/passwd` (`/etc/group`).
    fn run_as(&self, problems: &mut BTreeSet<Problem>) -> Option<RunAs> {
        let spec = self.config.user.trim();
        if spec.is_empty() {
            return Some(RunAs { uid: 0, gid: 0 });
        }
        let (user, group) = match spec.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (spec, None),
        };
        let mut problem = |message: String| {
            problems.insert(Problem {
                file: "USER".into(),
                message: format!("{spec}: {message}"),
                library: None,
                package: None,
            });
            None
        };
        let passwd = self.text("/etc/passwd");
        let entry = |name: &str| -> Option<(u64, u64)> {
            passwd?.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() >= 4 && fields[0] == name)
                    .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                    .flatten()
            })
        };
        let (uid, mut gid) = match user.parse::<u64>() {
            Ok(uid) => (uid, 0),
            Err(_) => match (passwd, entry(user)) {
                (_, Some(ids)) => ids,
                (None, None) => {
                    return problem("a user name, but the image has no /etc/passwd".into())
                }
                (Some(_), None) => return problem(format!("no user `{user}` in /etc/passwd")),
            },
        };
        if let Some(group) = group {
            gid = match group.parse::<u64>() {
                Ok(gid) => gid,
                Err(_) => {
                    let found = self.text("/etc/group").and_then(|text| {
                        text.lines().find_map(|line| {
                            let fields: Vec<&str> = line.split(':').collect();
                            (fields.len() >= 3 && fields[0] == group)
                                .then(|| fields[2].parse().ok())
                                .flatten()
                        })
                    });
                    match found {
                        Some(gid) => gid,
                        None => return problem(format!("no group `{group}` in /etc/group")),
                    }
                }
            };
        }
        Some(RunAs { uid, gid })
    }

    /// `name` as the runtime (or the kernel, for `#!`) finds and executes it.
    fn check_program(
        &self,
        name: &str,
        role: &str,
        run_as: Option<RunAs>,
        depth: usize,
        problems: &mut BTreeSet<Problem>,
    ) -> Option<String> {
        let mut problem = |file: &str, message: String| {
            problems.insert(Problem {
                file: file.to_string(),
                message,
                library: None,
                package: None,
            });
            None
        };
        let path = if name.starts_with('/') {
            name.to_string()
        } else if name.contains('/') {
            let dir = if self.config.working_dir.is_empty() {
                "/"
            } else {
                &self.config.working_dir
            };
            format!("{}/{name}", dir.trim_end_matches('/'))
        } else {
            let search = self.config.env("PATH").unwrap_or(DEFAULT_PATH);
            let found = split_path(search).into_iter().find_map(|dir| {
                let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
                lookup(self.rootfs, &candidate).file().map(|_| candidate)
            });
            match found {
                Some(path) => path,
                None => return problem(name, format!("{role} `{name}` is not in PATH ({search})")),
            }
        };
        let found = lookup(self.rootfs, &path);
        let Some((resolved, entry)) = found.file() else {
            return problem(&path, format!("{role}: {}", found.why_not(&path)));
        };
        if let Some(run_as) = run_as {
            let bits = if run_as.uid == 0 {
                0o111
            } else if entry.uid == run_as.uid {
                0o100
            } else if entry.gid == run_as.gid {
                0o010
            } else {
                0o001
            };
            if entry.mode & bits == 0 {
                return problem(
                    &path,
                    format!(
                        "{role} is not executable by uid {} gid {} (mode {:o}, owner {}:{})",
                        run_as.uid, run_as.gid, entry.mode, entry.uid, entry.gid
                    ),
                );
            }
        }
        match self.sniff_of(entry) {
            Some(Sniff::Elf(file)) if file.loadable => {}
            Some(Sniff::Elf(_)) => {
                return problem(&path, format!("{role} is an ELF file but not a program"))
            }
            Some(Sniff::Script(line)) => {
                let mut words = line.split_whitespace();
                let Some(interpreter) = words.next() else {
                    return problem(&path, format!("{role} is a script with an empty #! line"));
                };
                if depth >= MAX_SCRIPT_DEPTH {
                    return problem(&path, format!("{role}: #! interpreters nested too deep"));
                }
                let role = format!("the #! interpreter of {resolved}");
                let interpreter_path =
                    self.check_program(interpreter, &role, run_as, depth + 1, problems)?;
                if interpreter_path.ends_with("/env") {
                    if let Some(program) = words.next().filter(|w| !w.starts_with('-')) {
                        let role = format!("the program `env` starts for {resolved}");
                        self.check_program(program, &role, run_as, depth + 1, problems)?;
                    }
                }
            }
            Some(Sniff::TooLarge(_)) => {}
            _ => {
                return problem(
                    &path,
                    format!("{role} is neither an ELF program nor a #! script: exec fails"),
                )
            }
        }
        Some(path)
    }
}

/// The folders searched for a library `loaded[at]` needs.
fn search_dirs(
    loader: &Loader,
    loaded: &[Loaded<'_>],
    at: usize,
    library_path: &[String],
    system: &[String],
) -> Vec<String> {
    // The object and those that loaded it, nearest first.
    let mut chain = Vec::new();
    let mut next = Some(at);
    while let Some(index) = next {
        chain.push(&loaded[index]);
        next = loaded[index].loaded_by;
    }
    let origin_of = |object: &Loaded<'_>| parent(&object.found_at);
    let mut dirs: Vec<String> = Vec::new();
    match loader {
        Loader::Musl { .. } => {
            dirs.extend(library_path.iter().cloned());
            for object in &chain {
                let runpath = if object.elf.runpath.is_empty() {
                    &object.elf.rpath
                } else {
                    &object.elf.runpath
                };
                for path in runpath {
                    dirs.extend(expand_origin(path, &origin_of(object)));
                }
            }
        }
        Loader::Glibc { .. } => {
            if chain[0].elf.runpath.is_empty() {
                for object in chain.iter().filter(|o| o.elf.runpath.is_empty()) {
                    for path in &object.elf.rpath {
                        dirs.extend(expand_origin(path, &origin_of(object)));
                    }
                }
            }
            dirs.extend(library_path.iter().cloned());
            for path in &chain[0].elf.runpath {
                dirs.extend(expand_origin(path, &origin_of(chain[0])));
            }
        }
    }
    dirs.extend(system.iter().cloned());
    dirs
}

#[cfg(test)]
mod tests;
