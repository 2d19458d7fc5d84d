//! Package facts: what each pinned StageX package ships that decides whether
//! an image made from it can start (its ELF files with their interpreter,
//! soname and `DT_NEEDED`, its data files and links), each with where in the
//! package's definition it was read. Kept beside the release lists as
//! `stagex-release/<release>/packages.facts`; `lint` computes every image's
//! closure from them offline, `check-runtime` compares them with what a real
//! build shipped.
//!
//! One record per line, fields separated by blanks, an optional free-text
//! note after ` -- `, `#` comments:
//!
//! ```text
//! package core-openssl digest=<hex> read=stagex-mirror/stagex@<commit> [scope=build] [status=needs-reading]
//! elf  core-openssl /usr/bin/openssl interp=/lib/ld-musl-x86_64.so.1 needs=libssl.so.3,libcrypto.so.3 at=packages/core/openssl/Containerfile:21
//! elf  core-openssl /usr/lib/libssl.so.3 soname=libssl.so.3 needs=libcrypto.so.3 at=…
//! data core-ca-certificates /etc/ssl/certs/ca-certificates.crt at=…
//! link core-ca-certificates /etc/ssl/cert.pem to=certs/ca-certificates.crt at=…
//! ```
//!
//! A need whose name ends in `?` is uncertain: the definition's build flags
//! leave it open (say why in the note). `scope=build` marks a package read
//! only as a build stage (a pallet): its files are not recorded, and copying
//! it into an image cannot be checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::release::{is_name, read_list};

/// The facts file of a release folder.
pub const FILE: &str = "packages.facts";

/// Where a fact was read: a path in the package repository and a line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub path: String,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path, self.line)
    }
}

/// One library an ELF file asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub soname: String,
    /// The definition leaves this link open (written `name?`).
    pub uncertain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Elf {
        interpreter: Option<String>,
        soname: Option<String>,
        needs: Vec<Need>,
    },
    Data,
    Link {
        target: String,
    },
}

/// One file a package ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    /// Absolute path in the package's filesystem.
    pub path: String,
    pub kind: Kind,
    pub source: Source,
    pub note: Option<String>,
    /// Line of the record in the facts file.
    pub line: usize,
}

/// What is known about one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFacts {
    pub name: String,
    /// The manifest digest hex the facts were read for.
    pub digest: String,
    /// `repository@commit` of the definitions read.
    pub read: String,
    /// Only ever a build stage: no files recorded.
    pub build_only: bool,
    /// `pins update` moved the digest: the facts describe the old one.
    pub needs_reading: bool,
    pub files: Vec<FileFact>,
    /// Line of the `package` record.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// `stagex-release/<release>/packages.facts`, for messages.
    pub path: String,
    pub packages: BTreeMap<String, PackageFacts>,
}

impl Facts {
    /// The facts of a release folder; `None` when it has no facts file.
    pub fn load_dir(dir: &Path, shown: &str) -> Result<Option<Facts>> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = read_list(&path)?;
        Facts::parse(shown, &text).map(Some)
    }

    /// The facts of the release the checkout pins against.
    pub fn current(root: &Path) -> Result<Option<Facts>> {
        let release = super::release::current_name(root)?;
        let dir = root.join("stagex-release").join(&release);
        Facts::load_dir(&dir, &format!("stagex-release/{release}/{FILE}"))
    }

    pub fn package(&self, name: &str) -> Option<&PackageFacts> {
        self.packages.get(name)
    }

    /// Packages whose files provide `soname` in a library folder.
    pub fn providers(&self, soname: &str) -> Vec<(&PackageFacts, &FileFact)> {
        self.packages
            .values()
            .flat_map(|package| package.files.iter().map(move |file| (package, file)))
            .filter(|(_, file)| file.provides() == Some(soname))
            .collect()
    }

    /// Packages that ship an ELF file named `name` (an interpreter, by its
    /// file name).
    pub fn shipping(&self, name: &str) -> Vec<(&PackageFacts, &FileFact)> {
        self.packages
            .values()
            .flat_map(|package| package.files.iter().map(move |file| (package, file)))
            .filter(|(_, file)| {
                matches!(file.kind, Kind::Elf { .. }) && file.path.rsplit('/').next() == Some(name)
            })
            .collect()
    }

    pub fn parse(path: &str, text: &str) -> Result<Facts> {
        let mut facts = Facts {
            path: path.to_string(),
            packages: BTreeMap::new(),
        };
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let at = || format!("{path}:{line}");
            let (fields, note) = match raw.split_once(" -- ") {
                Some((fields, note)) => (fields, Some(note.trim().to_string())),
                None => (raw, None),
            };
            let fields = fields.trim();
            if fields.is_empty() || fields.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = fields.split_whitespace().collect();
            let record = parse_record(&words, note, line).with_context(at)?;
            match record {
                Record::Package(package) => {
                    if facts.packages.contains_key(&package.name) {
                        bail!("{}: package `{}` is recorded twice", at(), package.name);
                    }
                    facts.packages.insert(package.name.clone(), package);
                }
                Record::File(package, file) => {
                    let Some(owner) = facts.packages.get_mut(&package) else {
                        bail!(
                            "{}: `{package}` has no `package {package} digest=… read=…` line above this one",
                            at()
                        );
                    };
                    if owner.build_only {
                        bail!(
                            "{}: `{package}` is scope=build (files not recorded); drop scope=build to record its files",
                            at()
                        );
                    }
                    if owner.files.iter().any(|f| f.path == file.path) {
                        bail!("{}: `{}` of `{package}` is recorded twice", at(), file.path);
                    }
                    owner.files.push(file);
                }
            }
        }
        Ok(facts)
    }

    /// The facts file as text, records grouped by package in the order read.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for package in self.packages.values() {
            text.push_str(&package.render_header());
            text.push('\n');
            for file in &package.files {
                text.push_str(&file.render(&package.name));
                text.push('\n');
            }
        }
        text
    }
}

impl PackageFacts {
    pub fn render_header(&self) -> String {
        let mut line = format!(
            "package {} digest={} read={}",
            self.name, self.digest, self.read
        );
        if self.build_only {
            line.push_str(" scope=build");
        }
        if self.needs_reading {
            line.push_str(" status=needs-reading");
        }
        line
    }
}

impl FileFact {
    /// The soname this file answers to in a library folder.
    pub fn provides(&self) -> Option<&str> {
        match &self.kind {
            Kind::Elf {
                soname: Some(soname),
                ..
            } => Some(soname),
            _ => None,
        }
    }

    pub fn render(&self, package: &str) -> String {
        let mut line = match &self.kind {
            Kind::Elf {
                interpreter,
                soname,
                needs,
            } => {
                let mut line = format!("elf {package} {}", self.path);
                if let Some(interpreter) = interpreter {
                    line.push_str(&format!(" interp={interpreter}"));
                }
                if let Some(soname) = soname {
                    line.push_str(&format!(" soname={soname}"));
                }
                if !needs.is_empty() {
                    let needs: Vec<String> = needs
                        .iter()
                        .map(|n| format!("{}{}", n.soname, if n.uncertain { "?" } else { "" }))
                        .collect();
                    line.push_str(&format!(" needs={}", needs.join(",")));
                }
                line
            }
            Kind::Data => format!("data {package} {}", self.path),
            Kind::Link { target } => format!("link {package} {} to={target}", self.path),
        };
        line.push_str(&format!(" at={}", self.source));
        if let Some(note) = &self.note {
            line.push_str(&format!(" -- {note}"));
        }
        line
    }
}

/// The facts file `text` with the `package` lines of `moved` marked
/// `status=needs-reading` (their digest moved: the facts describe the old
/// one); every other line as it was.
pub fn mark_needs_reading(text: &str, moved: &[&str]) -> String {
    let mut out = String::with_capacity(text.len() + 32 * moved.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let words: Vec<&str> = body.split_whitespace().collect();
        let marks = matches!(words.as_slice(), ["package", name, ..] if moved.contains(name))
            && !words.contains(&"status=needs-reading");
        out.push_str(body);
        if marks {
            out.push_str(" status=needs-reading");
        }
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

enum Record {
    Package(PackageFacts),
    File(String, FileFact),
}

fn parse_record(words: &[&str], note: Option<String>, line: usize) -> Result<Record> {
    let (kind, rest) = words
        .split_first()
        .context("expected a record: package, elf, data or link")?;
    let Some((&package, rest)) = rest.split_first() else {
        bail!("`{kind}` needs a package name");
    };
    if !is_name(package) {
        bail!("`{}` is not a package name", package.escape_debug());
    }
    if *kind == "package" {
        let mut fields = Fields::new(rest, &["digest", "read", "scope", "status"])?;
        let digest = fields.required("digest")?;
        if !crate::oci::reference::is_sha256_hex(&digest) {
            bail!("digest `{digest}` is not a sha256 hex digest");
        }
        let read = fields.required("read")?;
        let build_only = match fields.take("scope").as_deref() {
            None => false,
            Some("build") => true,
            Some(other) => bail!("scope `{other}`: the only scope is `build`"),
        };
        let needs_reading = match fields.take("status").as_deref() {
            None => false,
            Some("needs-reading") => true,
            Some(other) => bail!("status `{other}`: the only status is `needs-reading`"),
        };
        if note.is_some() {
            bail!("a package record takes no note");
        }
        return Ok(Record::Package(PackageFacts {
            name: package.to_string(),
            digest,
            read,
            build_only,
            needs_reading,
            files: Vec::new(),
            line,
        }));
    }
    let Some((&path, rest)) = rest.split_first() else {
        bail!("`{kind} {package}` needs a path");
    };
    if !is_absolute_path(path) {
        bail!("`{path}` is not an absolute path without `.` or `..` parts");
    }
    let allowed: &[&str] = match *kind {
        "elf" => &["interp", "soname", "needs", "at"],
        "data" => &["at"],
        "link" => &["to", "at"],
        other => bail!("unknown record `{other}`: expected package, elf, data or link"),
    };
    let mut fields = Fields::new(rest, allowed)?;
    let source = parse_source(&fields.required("at")?)?;
    let kind = match *kind {
        "elf" => {
            let interpreter = fields.take("interp");
            if let Some(interpreter) = &interpreter {
                if !is_absolute_path(interpreter) {
                    bail!("interp `{interpreter}` is not an absolute path");
                }
            }
            let soname = fields.take("soname");
            if let Some(soname) = &soname {
                if !is_soname(soname) {
                    bail!("soname `{soname}` is not a library file name");
                }
            }
            let needs = match fields.take("needs") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|item| {
                        let (soname, uncertain) = match item.strip_suffix('?') {
                            Some(soname) => (soname, true),
                            None => (item, false),
                        };
                        if !is_soname(soname) {
                            bail!("needed `{item}` is not a library file name");
                        }
                        Ok(Need {
                            soname: soname.to_string(),
                            uncertain,
                        })
                    })
                    .collect::<Result<_>>()?,
            };
            if needs.iter().any(|n| n.uncertain) && note.is_none() {
                bail!("an uncertain need (`name?`) says why after ` -- `");
            }
            Kind::Elf {
                interpreter,
                soname,
                needs,
            }
        }
        "data" => Kind::Data,
        _ => Kind::Link {
            target: fields.required("to")?,
        },
    };
    Ok(Record::File(
        package.to_string(),
        FileFact {
            path: path.to_string(),
            kind,
            source,
            note,
            line,
        },
    ))
}

/// `key=value` words, each key at most once and from a known set.
struct Fields {
    values: BTreeMap<String, String>,
}

impl Fields {
    fn new(words: &[&str], allowed: &[&str]) -> Result<Fields> {
        let mut values = BTreeMap::new();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                bail!(
                    "`{word}`: expected key=value (one of {})",
                    allowed.join(", ")
                );
            };
            if !allowed.contains(&key) {
                bail!(
                    "unknown field `{key}`: expected one of {}",
                    allowed.join(", ")
                );
            }
            if value.is_empty() {
                bail!("`{key}=` has no value");
            }
            if values.insert(key.to_string(), value.to_string()).is_some() {
                bail!("`{key}` is given twice");
            }
        }
        Ok(Fields { values })
    }

    fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    fn required(&mut self, key: &str) -> Result<String> {
        self.take(key)
            .with_context(|| format!("`{key}=` is missing"))
    }
}

/// `packages/core/openssl/Containerfile:21`
fn parse_source(text: &str) -> Result<Source> {
    let (path, line) = text.rsplit_once(':').with_context(|| {
        format!("at `{text}`: expected <path in the package repository>:<line>")
    })?;
    let line: usize = line
        .parse()
        .ok()
        .filter(|l| *l > 0)
        .with_context(|| format!("at `{text}`: `{line}` is not a line number"))?;
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..") {
        bail!("at `{text}`: expected a relative path in the package repository");
    }
    Ok(Source {
        path: path.to_string(),
        line,
    })
}

fn is_absolute_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 4096
        && path
            .split('/')
            .skip(1)
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !path.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn is_soname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.contains(".so")
        && !name.contains('/')
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ',')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";

    fn parse(text: &str) -> Result<Facts> {
        Facts::parse("facts", text)
    }

    #[test]
    fn records_are_read_with_their_sources_and_render_back() {
        let text = format!(
            "# comment\npackage core-x digest={HEX} read=stagex-mirror/stagex@abc\n\
             elf core-x /usr/bin/x interp=/lib/ld-musl-x86_64.so.1 needs=libc.musl-x86_64.so.1,libgmp.so.10? at=packages/core/x/Containerfile:20 -- configure finds gmp.h only if the pallet has it\n\
             elf core-x /usr/lib/libx.so.1 soname=libx.so.1 at=packages/core/x/Containerfile:21\n\
             data core-x /etc/x.conf at=packages/core/x/Containerfile:22\n\
             link core-x /etc/y to=x.conf at=packages/core/x/Containerfile:23\n\
             package pallet-x digest={HEX} read=stagex-mirror/stagex@abc scope=build\n"
        );
        let facts = parse(&text).unwrap();
        let x = facts.package("core-x").unwrap();
        assert_eq!(x.files.len(), 4);
        assert_eq!(
            x.files[0].kind,
            Kind::Elf {
                interpreter: Some("/lib/ld-musl-x86_64.so.1".into()),
                soname: None,
                needs: vec![
                    Need {
                        soname: "libc.musl-x86_64.so.1".into(),
                        uncertain: false
                    },
                    Need {
                        soname: "libgmp.so.10".into(),
                        uncertain: true
                    },
                ],
            }
        );
        assert_eq!(
            x.files[0].source.to_string(),
            "packages/core/x/Containerfile:20"
        );
        assert_eq!(facts.providers("libx.so.1").len(), 1);
        assert!(facts.package("pallet-x").unwrap().build_only);
        // Rendering gives the same facts back (the comment line aside).
        let rendered = facts.render();
        assert_eq!(parse(&rendered).unwrap().render(), rendered);
        assert_eq!(rendered.lines().count(), text.lines().count() - 1);
    }

    #[test]
    fn bad_records_name_the_line_and_the_fix() {
        for (text, expected) in [
            ("elf core-x /x at=a:1\n", "facts:1: `core-x` has no `package core-x"),
            (
                &format!("package core-x digest={HEX} read=r\nelf core-x usr/x at=a:1\n"),
                "facts:2: `usr/x` is not an absolute path",
            ),
            (
                &format!("package core-x digest={HEX} read=r\nelf core-x /x needs=liby.so.1? at=a:1\n"),
                "facts:2: an uncertain need (`name?`) says why",
            ),
            (
                &format!("package core-x digest={HEX} read=r\ndata core-x /x at=a\n"),
                "facts:2: at `a`: expected <path in the package repository>:<line>",
            ),
            (
                &format!("package core-x digest={HEX} read=r\ndata core-x /x at=a:1 colour=red\n"),
                "facts:2: unknown field `colour`",
            ),
            ("package core-x digest=12 read=r\n", "facts:1: digest `12` is not"),
            (
                &format!("package core-x digest={HEX} read=r\ndata core-x /x at=a:1\ndata core-x /x at=a:2\n"),
                "facts:3: `/x` of `core-x` is recorded twice",
            ),
        ] {
            let error = format!("{:#}", parse(text).unwrap_err());
            assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
        }
    }

    #[test]
    fn moved_packages_are_marked_and_nothing_else_changes() {
        let text = format!(
            "# c\npackage core-a digest={HEX} read=r\ndata core-a /x at=a:1\npackage core-b digest={HEX} read=r\n"
        );
        let marked = mark_needs_reading(&text, &["core-b"]);
        assert_eq!(
            marked,
            format!(
                "# c\npackage core-a digest={HEX} read=r\ndata core-a /x at=a:1\npackage core-b digest={HEX} read=r status=needs-reading\n"
            )
        );
        let facts = parse(&marked).unwrap();
        assert!(facts.package("core-b").unwrap().needs_reading);
        assert!(!facts.package("core-a").unwrap().needs_reading);
        // Marking twice changes nothing more.
        assert_eq!(mark_needs_reading(&marked, &["core-b"]), marked);
    }

    /// The repository's own facts parse, and every pin has a record.
    #[test]
    fn the_repositorys_facts_parse() {
        let root = crate::files::project_root();
        let facts = Facts::current(&root).unwrap().expect("a facts file");
        assert!(facts.package("core-ca-certificates").is_some());
    }
}
