//! The closure check of `lint`: from the package facts
//! (`stagex-release/<release>/packages.facts`) and each Containerfile's
//! `FROM` and `COPY --from` lines, which files every image ships, and
//! whether each shipped ELF file finds its interpreter and every library it
//! needs. Pure: no engine, no network. `check-runtime` proves the same on
//! the built archive; this predicts it before anything is built.

use std::collections::{BTreeMap, BTreeSet};

use super::lint::{Finding, Rule};
use crate::model::catalog::{Catalog, Image, InputKind};
use crate::model::containerfile::Instruction;
use crate::model::facts::{Facts, FileFact, Kind, PackageFacts};
use crate::model::release::Release;

/// Library folders musl searches by default (after `/lib` is resolved).
const LIBRARY_DIRS: &[&str] = &["/usr/local/lib", "/usr/lib"];

/// Link hops followed before giving up (musl's own limit is higher; a
/// package chain is never this long).
const MAX_HOPS: usize = 16;

/// A file an image ships, with where it came from.
#[derive(Debug, Clone)]
pub struct Shipped {
    pub package: String,
    pub fact: FileFact,
    /// The Containerfile line that brought it in, and the image it is in.
    pub image: String,
    pub line: usize,
}

/// Files by path (as copied, before links are resolved).
pub type Files = BTreeMap<String, Shipped>;

/// What lint reports: findings (failures) and notes (printed, not failing).
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
}

/// Every image's closure, and whether the facts cover every pin.
pub fn check(catalog: &Catalog, release: &Release, facts: &Facts) -> Outcome {
    let mut outcome = Outcome::default();
    let mut noted: BTreeSet<&str> = BTreeSet::new();
    for image in &catalog.images {
        for (input, package) in image.stagex_inputs() {
            match facts.package(package) {
                None => outcome.findings.push(Finding {
                    location: format!("{}:{}", image.containerfile_path(), input.line),
                    rule: Rule::MissingFacts,
                    message: format!(
                        "`{package}` has no record in {}: whether the files it ships can load is unknown",
                        facts.path
                    ),
                    fix: format!(
                        "read its definition (packages/<stage>/{}/Containerfile) and add `package {package} digest=… read=…` with its elf/data/link lines (or scope=build for a build stage)",
                        package.split_once('-').map(|(_, n)| n).unwrap_or(package)
                    ),
                }),
                Some(known) if noted.insert(package) => {
                    let digest = release.package(package).map(|p| p.digest.as_str());
                    if known.needs_reading || digest.is_some_and(|d| d != known.digest) {
                        outcome.notes.push(format!(
                            "{}:{}: the facts of `{package}` were read for sha256:{} and the pin has moved{}: read its definition again and update them (a build's check-runtime reports what differs)",
                            facts.path,
                            known.line,
                            crate::report::short_digest(&known.digest),
                            digest
                                .map(|d| format!(" to sha256:{}", crate::report::short_digest(d)))
                                .unwrap_or_default()
                        ));
                    }
                }
                Some(_) => {}
            }
        }
    }
    let mut memo: BTreeMap<String, Files> = BTreeMap::new();
    for image in &catalog.images {
        let files = image_files(image, catalog, facts, &mut memo);
        outcome.findings.extend(check_files(image, &files, facts));
    }
    outcome
}

/// The files an image's final stage ships, as far as the facts know them.
pub fn image_files(
    image: &Image,
    catalog: &Catalog,
    facts: &Facts,
    memo: &mut BTreeMap<String, Files>,
) -> Files {
    if let Some(files) = memo.get(&image.name) {
        return files.clone();
    }
    let stages = split_stages(image);
    let files = match stages.len() {
        0 => Files::new(),
        n => stage_files(image, &stages, n - 1, catalog, facts, memo, 0),
    };
    memo.insert(image.name.clone(), files.clone());
    files
}

/// For each instruction of the final stage that may add a layer (`COPY`,
/// `ADD`, `RUN`, `WORKDIR`, in order): its keyword, and the StageX package it
/// copies from, if it copies one (directly, or through a stage that is only
/// that package). A built image's last layers are these (a `WORKDIR` of a
/// folder that exists adds none): a file's layer names the package it came
/// from.
pub fn layer_packages(image: &Image) -> Vec<(String, Option<String>)> {
    let stages = split_stages(image);
    let Some((last, earlier)) = stages.split_last() else {
        return Vec::new();
    };
    let package_at = |line: usize, context: &str| {
        image
            .inputs
            .iter()
            .find(|input| input.line == line && input.context == context)
            .and_then(|input| match &input.kind {
                InputKind::Stagex { package } => Some(package.clone()),
                _ => None,
            })
    };
    last.body
        .iter()
        .filter(|i| matches!(i.keyword.as_str(), "COPY" | "ADD" | "RUN" | "WORKDIR"))
        .map(|instruction| {
            let package = instruction
                .flag("from")
                .filter(|_| instruction.keyword == "COPY")
                .and_then(|from| match stage_index(&stages, from, stages.len() - 1) {
                    Some(index) if earlier[index].body.is_empty() => {
                        package_at(earlier[index].from.line, "FROM")
                    }
                    Some(_) => None,
                    None => package_at(instruction.line, "COPY --from"),
                });
            (instruction.keyword.clone(), package)
        })
        .collect()
}

/// One stage: its FROM line, name and instructions.
struct StageText<'a> {
    from: &'a Instruction,
    name: Option<String>,
    body: Vec<&'a Instruction>,
}

fn split_stages(image: &Image) -> Vec<StageText<'_>> {
    let mut stages: Vec<StageText<'_>> = Vec::new();
    for instruction in &image.containerfile.instructions {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => Some(name.to_lowercase()),
                _ => None,
            };
            stages.push(StageText {
                from: instruction,
                name,
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(instruction);
        }
    }
    stages
}

/// Files of stage `index`: its base's, then each COPY's. `None` parts (a
/// RUN, a COPY from the build context or from a stage with RUN) are files
/// the facts cannot know; check-runtime sees them.
fn stage_files(
    image: &Image,
    stages: &[StageText<'_>],
    index: usize,
    catalog: &Catalog,
    facts: &Facts,
    memo: &mut BTreeMap<String, Files>,
    depth: usize,
) -> Files {
    if depth > stages.len() {
        return Files::new();
    }
    let stage = &stages[index];
    let mut files = source_files(
        image,
        stages,
        index,
        stage.from.line,
        "FROM",
        catalog,
        facts,
        memo,
        depth,
    )
    .unwrap_or_default();
    for instruction in &stage.body {
        if instruction.keyword != "COPY" {
            continue;
        }
        let Some(from) = instruction.flag("from") else {
            continue;
        };
        let Some(from_files) = (match stage_index(stages, from, index) {
            Some(earlier) if opaque(&stages[earlier]) => None,
            Some(earlier) => Some(stage_files(
                image,
                stages,
                earlier,
                catalog,
                facts,
                memo,
                depth + 1,
            )),
            None => source_files(
                image,
                stages,
                index,
                instruction.line,
                "COPY --from",
                catalog,
                facts,
                memo,
                depth,
            ),
        }) else {
            continue;
        };
        let words: Vec<&str> = instruction.args.split_whitespace().collect();
        let Some((dest, sources)) = words.split_last() else {
            continue;
        };
        for (path, shipped) in &from_files {
            for source in sources {
                if let Some(to) = copied_path(path, source, dest) {
                    files.insert(
                        to.clone(),
                        Shipped {
                            fact: FileFact {
                                path: to,
                                ..shipped.fact.clone()
                            },
                            image: image.name.clone(),
                            line: instruction.line,
                            ..shipped.clone()
                        },
                    );
                }
            }
        }
    }
    files
}

/// A stage whose files the facts cannot know: it runs commands.
fn opaque(stage: &StageText<'_>) -> bool {
    stage.body.iter().any(|i| {
        matches!(i.keyword.as_str(), "RUN" | "ADD")
            || (i.keyword == "COPY" && i.flag("from").is_none())
    })
}

/// An earlier stage named (or numbered) `name`.
fn stage_index(stages: &[StageText<'_>], name: &str, before: usize) -> Option<usize> {
    let lower = name.to_lowercase();
    if let Ok(number) = name.parse::<usize>() {
        return (number < before).then_some(number);
    }
    stages[..before]
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// The files behind a FROM or COPY --from at `line`: an earlier stage, a
/// StageX package (its facts) or one of our images (its closure).
#[allow(clippy::too_many_arguments)]
fn source_files(
    image: &Image,
    stages: &[StageText<'_>],
    index: usize,
    line: usize,
    context: &str,
    catalog: &Catalog,
    facts: &Facts,
    memo: &mut BTreeMap<String, Files>,
    depth: usize,
) -> Option<Files> {
    if context == "FROM" {
        let base = stages[index]
            .from
            .args
            .split_whitespace()
            .next()
            .unwrap_or_default();
        if base.eq_ignore_ascii_case("scratch") {
            return Some(Files::new());
        }
        if let Some(earlier) = stage_index(stages, base, index) {
            return Some(stage_files(
                image,
                stages,
                earlier,
                catalog,
                facts,
                memo,
                depth + 1,
            ));
        }
    }
    let input = image
        .inputs
        .iter()
        .find(|input| input.line == line && input.context == context)?;
    match &input.kind {
        InputKind::Stagex { package } => {
            let known = facts.package(package)?;
            (!known.build_only).then(|| package_files(known, image, line))
        }
        InputKind::Ours { image: ours } => {
            let ours = catalog.image(ours)?;
            Some(image_files(ours, catalog, facts, memo))
        }
        _ => None,
    }
}

fn package_files(package: &PackageFacts, image: &Image, line: usize) -> Files {
    package
        .files
        .iter()
        .map(|fact| {
            (
                fact.path.clone(),
                Shipped {
                    package: package.name.clone(),
                    fact: fact.clone(),
                    image: image.name.clone(),
                    line,
                },
            )
        })
        .collect()
}

/// Where `path` lands when `COPY <source> <dest>` copies it, if it does:
/// `.` or `/` copies everything, a folder its contents, a pattern (`*` in
/// the last part) or a file by name.
pub fn copied_path(path: &str, source: &str, dest: &str) -> Option<String> {
    let source = source.trim_end_matches("/.");
    let join = |dir: &str, rest: &str| {
        format!(
            "{}/{}",
            dir.trim_end_matches('/'),
            rest.trim_start_matches('/')
        )
    };
    if source == "." || source == "/" || source.is_empty() {
        return Some(join(dest, path));
    }
    let source = if source.starts_with('/') {
        source.to_string()
    } else {
        format!("/{source}")
    };
    let folder = source.trim_end_matches('/');
    if let Some(rest) = path.strip_prefix(folder).filter(|r| r.starts_with('/')) {
        return Some(join(dest, rest));
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let into = |dest: &str| {
        if dest.ends_with('/') {
            join(dest, name)
        } else {
            dest.to_string()
        }
    };
    if source.contains('*') {
        let (dir, pattern) = source.rsplit_once('/')?;
        let (file_dir, _) = path.rsplit_once('/')?;
        return (dir == file_dir && glob(pattern, name)).then(|| into(dest));
    }
    (path == source).then(|| into(dest))
}

/// `*` matches any run of characters (no other pattern characters are used).
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

/// Follow links (the shipped ones) from `path` to a file that is not a link.
fn resolve<'a>(files: &'a Files, path: &str) -> Option<&'a Shipped> {
    let mut path = canonical(files, path);
    for _ in 0..MAX_HOPS {
        let shipped = files.get(&path)?;
        match &shipped.fact.kind {
            Kind::Link { target } => {
                let target = if target.starts_with('/') {
                    target.clone()
                } else {
                    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalize(&format!("{dir}/{target}"))
                };
                path = canonical(files, &target);
            }
            _ => return Some(shipped),
        }
    }
    None
}

/// `path` with its folders' links resolved (`/lib/x` → `/usr/lib/x` when
/// `/lib` is a shipped link to `usr/lib`).
fn canonical(files: &Files, path: &str) -> String {
    let mut path = normalize(path);
    for _ in 0..MAX_HOPS {
        let parts: Vec<&str> = path.split('/').collect();
        let mut changed = None;
        for end in 2..parts.len() {
            let prefix = parts[..end].join("/");
            if let Some(Shipped {
                fact:
                    FileFact {
                        kind: Kind::Link { target },
                        ..
                    },
                ..
            }) = files.get(&prefix)
            {
                let base = if target.starts_with('/') {
                    target.clone()
                } else {
                    let dir = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    format!("{dir}/{target}")
                };
                changed = Some(normalize(&format!("{base}/{}", parts[end..].join("/"))));
                break;
            }
        }
        match changed {
            Some(next) => path = next,
            None => break,
        }
    }
    path
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Each ELF file this image brings in (not its base image's: those are
/// reported there), against everything it ships.
fn check_files(image: &Image, files: &Files, facts: &Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, shipped) in files {
        if shipped.image != image.name {
            continue;
        }
        let Kind::Elf {
            interpreter, needs, ..
        } = &shipped.fact.kind
        else {
            continue;
        };
        let at = format!("{}:{}", image.containerfile_path(), shipped.line);
        let read = format!(
            "`{path}` of {} (read at {})",
            shipped.package, shipped.fact.source
        );
        if let Some(interpreter) = interpreter {
            if resolve(files, interpreter).is_none() {
                findings.push(Finding {
                    location: at.clone(),
                    rule: Rule::MissingInterpreter,
                    message: format!(
                        "{read} is loaded by {interpreter}, which {} does not ship{}",
                        image.name,
                        providers_text(
                            facts,
                            interpreter.rsplit('/').next().unwrap_or(interpreter),
                            true
                        )
                    ),
                    fix: narrow_fix(shipped),
                });
                continue;
            }
        }
        for need in needs {
            let found = LIBRARY_DIRS.iter().any(|dir| {
                resolve(files, &format!("{dir}/{}", need.soname))
                    .is_some_and(|s| matches!(s.fact.kind, Kind::Elf { .. }))
            });
            if found || !seen.insert((path.clone(), need.soname.clone())) {
                continue;
            }
            let uncertain = if need.uncertain {
                format!(
                    " (an uncertain reading: {}; a build's check-runtime settles it)",
                    shipped.fact.note.as_deref().unwrap_or("see the facts")
                )
            } else {
                String::new()
            };
            findings.push(Finding {
                location: at.clone(),
                rule: Rule::MissingLibrary,
                message: format!(
                    "{read} needs {}, which nothing copied into {} ships{}{uncertain}",
                    need.soname,
                    image.name,
                    providers_text(facts, &need.soname, false)
                ),
                fix: narrow_fix(shipped),
            });
        }
    }
    findings
}

/// `; core-openssl provides it (packages/core/openssl/Containerfile:30)`
fn providers_text(facts: &Facts, soname: &str, by_file_name: bool) -> String {
    let found = if by_file_name {
        facts.shipping(soname)
    } else {
        facts.providers(soname)
    };
    let providers: Vec<String> = found
        .iter()
        .map(|(package, file)| format!("{} ({})", package.name, file.source))
        .collect();
    if providers.is_empty() {
        "; no pinned package is known to provide it".to_string()
    } else {
        format!("; pinned package {} provides it", providers.join(", "))
    }
}

fn narrow_fix(shipped: &Shipped) -> String {
    format!(
        "copy the package that provides it too, or copy only the files of {} the image uses (`COPY --from=<stage> <path> <dest>`) so no program that cannot load is shipped",
        shipped.package
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::release::Release;

    const HEX: &str = "816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";

    #[test]
    fn copies_land_where_buildkit_puts_them() {
        let cases = [
            ("/usr/bin/x", ".", "/", Some("/usr/bin/x")),
            (
                "/etc/ssl/certs/a.crt",
                "/etc/ssl/",
                "/etc/ssl/",
                Some("/etc/ssl/certs/a.crt"),
            ),
            (
                "/etc/ssl/certs/a.crt",
                "/etc/ssl",
                "/opt/ssl",
                Some("/opt/ssl/certs/a.crt"),
            ),
            ("/usr/bin/x", "/etc/ssl/", "/etc/ssl/", None),
            (
                "/usr/lib/libncursesw.so.6",
                "/usr/lib/libncursesw.so.6*",
                "/usr/lib/",
                Some("/usr/lib/libncursesw.so.6"),
            ),
            (
                "/usr/lib/libncurses++w.so.6",
                "/usr/lib/libncursesw.so.6*",
                "/usr/lib/",
                None,
            ),
            ("/usr/bin/x", "/usr/bin/x", "/bin/y", Some("/bin/y")),
            ("/usr/bin/xy", "/usr/bin/x", "/bin/", None),
        ];
        for (path, source, dest, expected) in cases {
            assert_eq!(
                copied_path(path, source, dest).as_deref(),
                expected,
                "{path} {source} {dest}"
            );
        }
    }

    fn facts() -> Facts {
        Facts::parse(
            "facts",
            &format!(
                "package core-filesystem digest={HEX} read=r\n\
                 link core-filesystem /lib to=usr/lib at=f:1\n\
                 package core-musl digest={HEX} read=r\n\
                 elf core-musl /usr/lib/ld-musl-x86_64.so.1 soname=libc.musl-x86_64.so.1 at=m:1\n\
                 link core-musl /usr/lib/libc.musl-x86_64.so.1 to=ld-musl-x86_64.so.1 at=m:2\n\
                 package core-ca-certificates digest={HEX} read=r\n\
                 data core-ca-certificates /etc/ssl/certs/ca-certificates.crt at=c:24\n\
                 link core-ca-certificates /etc/ssl/cert.pem to=certs/ca-certificates.crt at=c:25\n\
                 elf core-ca-certificates /usr/bin/c_rehash interp=/lib/ld-musl-x86_64.so.1 needs=libcrypto.so.3,libc.musl-x86_64.so.1 at=c:22\n\
                 package core-openssl digest={HEX} read=r\n\
                 elf core-openssl /usr/lib/libcrypto.so.3 soname=libcrypto.so.3 needs=libc.musl-x86_64.so.1 at=o:30\n\
                 package core-ruby digest={HEX} read=r\n\
                 elf core-ruby /usr/lib/libruby.so.3.4 soname=libruby.so.3.4 needs=libgmp.so.10?,libc.musl-x86_64.so.1 at=r:40 -- gmp from the pallet\n"
            ),
        )
        .unwrap()
    }

    fn run(containerfile: &str) -> Vec<String> {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("img")).unwrap();
        std::fs::write(root.path().join("img/Containerfile"), containerfile).unwrap();
        let catalog = Catalog::load(root.path()).unwrap();
        let release = Release {
            name: "test".into(),
            packages: Default::default(),
        };
        check(&catalog, &release, &facts())
            .findings
            .iter()
            .map(|f| format!("{} {} {}", f.location, f.rule, f.message))
            .collect()
    }

    const HEAD: &str = "FROM stagex/core-filesystem@sha256:{HEX}\n";

    fn file(lines: &str) -> String {
        format!(
            "FROM stagex/core-musl@sha256:{HEX} AS musl\nFROM stagex/core-ca-certificates@sha256:{HEX} AS ca\nFROM stagex/core-openssl@sha256:{HEX} AS openssl\nFROM stagex/core-ruby@sha256:{HEX} AS ruby\n{}{lines}",
            HEAD.replace("{HEX}", HEX)
        )
    }

    #[test]
    fn a_whole_package_copy_is_caught_with_the_soname_and_its_provider() {
        let findings = run(&file("COPY --from=musl . /\nCOPY --from=ca . /\n"));
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].starts_with("img/Containerfile:7 missing-library `/usr/bin/c_rehash` of core-ca-certificates (read at c:22) needs libcrypto.so.3"),
            "{findings:?}"
        );
        assert!(
            findings[0].contains("core-openssl (o:30) provides it"),
            "{findings:?}"
        );
        // Without musl the interpreter is missing first.
        let findings = run(&file("COPY --from=ca . /\n"));
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("missing-interpreter"), "{findings:?}");
        assert!(
            findings[0].contains("core-musl (m:1) provides it"),
            "{findings:?}"
        );
    }

    #[test]
    fn copying_only_the_data_or_the_provider_passes() {
        assert_eq!(
            run(&file("COPY --from=ca /etc/ssl/ /etc/ssl/\n")),
            Vec::<String>::new()
        );
        assert_eq!(
            run(&file(
                "COPY --from=musl . /\nCOPY --from=openssl . /\nCOPY --from=ca . /\n"
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_uncertain_need_fails_and_says_it_is_uncertain() {
        let findings = run(&file("COPY --from=musl . /\nCOPY --from=ruby . /\n"));
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("needs libgmp.so.10"), "{findings:?}");
        assert!(
            findings[0].contains("uncertain reading: gmp from the pallet"),
            "{findings:?}"
        );
    }

    #[test]
    fn a_pin_without_facts_is_a_finding() {
        let text = format!("FROM stagex/core-nope@sha256:{HEX}\n");
        let findings = run(&text);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("missing-facts"), "{findings:?}");
    }
}
