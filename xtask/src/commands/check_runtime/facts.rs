//! Facts that correct themselves: after a real build, the archive's ELF files
//! against the package facts (`stagex-release/<release>/packages.facts`) of
//! the packages the image copied. Every difference is reported with the
//! facts line as observed, ready to paste (`check-runtime --write-facts`
//! writes them). Pure: the archive's files and the facts in, differences out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::check::Sniff;
use super::elf::ElfFile;
use crate::commands::closure;
use crate::model::catalog::Catalog;
use crate::model::facts::{Facts, FileFact, Kind, Need};
use crate::oci::rootfs::{self, Rootfs};

/// Link hops followed in the archive.
const MAX_HOPS: usize = 32;

/// What the archive holds, as far as the facts speak of it.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Absolute path → ELF facts of regular files that are ELF.
    pub elves: BTreeMap<String, ElfFile>,
    /// Absolute path → symlink target as written.
    pub links: BTreeMap<String, String>,
    /// Every absolute path in the archive.
    pub paths: BTreeSet<String>,
    /// The layer (0-based) each ELF file came from.
    pub layer_of: BTreeMap<String, usize>,
    /// The instruction keyword that made each layer (`COPY`, `RUN`, …),
    /// from the image config's history, when it accounts for every layer.
    pub layer_kinds: Option<Vec<String>>,
}

impl Observed {
    pub fn new(
        rootfs: &Rootfs,
        sniffs: &HashMap<rootfs::Origin, Sniff>,
        layer_kinds: Option<Vec<String>>,
    ) -> Observed {
        let mut observed = Observed {
            layer_kinds,
            ..Observed::default()
        };
        for (path, entry) in &rootfs.entries {
            let absolute = format!("/{path}");
            if entry.kind == rootfs::Kind::Symlink {
                if let Some(target) = &entry.link {
                    observed.links.insert(absolute.clone(), target.clone());
                }
            }
            if let Some(Sniff::Elf(elf)) = entry.origin().and_then(|origin| sniffs.get(&origin)) {
                observed.elves.insert(absolute.clone(), elf.clone());
                observed.layer_of.insert(absolute.clone(), entry.layer);
            }
            observed.paths.insert(absolute);
        }
        observed
    }

    /// `path` with every link on the way resolved, if it leads anywhere.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut current: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            current.push(part);
            let here = format!("/{}", current.join("/"));
            if let Some(target) = self.links.get(&here) {
                hops += 1;
                if hops > MAX_HOPS {
                    return None;
                }
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                pending.extend(
                    target
                        .split('/')
                        .filter(|p| !p.is_empty())
                        .rev()
                        .map(str::to_string),
                );
            } else if !self.paths.contains(&here) {
                return None;
            }
        }
        Some(format!("/{}", current.join("/")))
    }
}

/// One way the facts and the archive differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Difference {
    pub package: String,
    pub path: String,
    /// What differs, for people.
    pub what: String,
    /// The facts line as recorded (and its line in the facts file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_line: Option<usize>,
    /// The facts line as observed; `None`: the line should go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

/// The archive against the facts of everything `image` copied.
pub fn compare(
    image: &str,
    catalog: &Catalog,
    facts: &Facts,
    observed: &Observed,
) -> Vec<Difference> {
    let Some(image) = catalog.image(image) else {
        return Vec::new();
    };
    let shipped = closure::image_files(image, catalog, facts, &mut BTreeMap::new());
    let mut differences = Vec::new();
    let mut accounted: BTreeSet<String> = BTreeSet::new();
    let mut by_fact: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, item) in &shipped {
        let Kind::Elf {
            interpreter,
            soname,
            needs,
        } = &item.fact.kind
        else {
            if let Some(real) = observed.resolve(path) {
                accounted.insert(real);
            }
            continue;
        };
        // The same fact copied twice (a base image and a COPY) is one.
        if !by_fact.insert((item.package.clone(), item.fact.path.clone())) {
            continue;
        }
        let recorded_text = item.fact.render(&item.package);
        let recorded = |what: String, observed: Option<String>| Difference {
            package: item.package.clone(),
            path: path.clone(),
            what,
            recorded: Some(recorded_text.clone()),
            recorded_line: Some(item.fact.line),
            observed,
        };
        let Some(real) = observed.resolve(path) else {
            differences.push(recorded(
                "recorded, but the archive has no such file".into(),
                None,
            ));
            continue;
        };
        accounted.insert(real.clone());
        let Some(elf) = observed.elves.get(&real) else {
            differences.push(recorded(
                format!("recorded as ELF, but {real} is not an ELF file"),
                None,
            ));
            continue;
        };
        let seen_needs: Vec<Need> = elf
            .needed
            .iter()
            .map(|soname| Need {
                soname: soname.clone(),
                uncertain: false,
            })
            .collect();
        let same_needs = needs.len() == seen_needs.len()
            && needs
                .iter()
                .all(|n| !n.uncertain && elf.needed.contains(&n.soname));
        if same_needs && *interpreter == elf.interpreter {
            continue;
        }
        let fact = FileFact {
            path: item.fact.path.clone(),
            kind: Kind::Elf {
                interpreter: elf.interpreter.clone(),
                soname: soname.clone(),
                needs: seen_needs,
            },
            source: item.fact.source.clone(),
            note: None,
            line: item.fact.line,
        };
        let mut what = Vec::new();
        if *interpreter != elf.interpreter {
            what.push(format!(
                "interpreter {} (recorded {})",
                elf.interpreter.as_deref().unwrap_or("none"),
                interpreter.as_deref().unwrap_or("none")
            ));
        }
        let recorded_names: BTreeSet<&str> = needs.iter().map(|n| n.soname.as_str()).collect();
        let seen_names: BTreeSet<&str> = elf.needed.iter().map(String::as_str).collect();
        let added: Vec<&str> = seen_names.difference(&recorded_names).copied().collect();
        let gone: Vec<&str> = recorded_names.difference(&seen_names).copied().collect();
        let settled: Vec<&str> = needs
            .iter()
            .filter(|n| n.uncertain && seen_names.contains(n.soname.as_str()))
            .map(|n| n.soname.as_str())
            .collect();
        if !added.is_empty() {
            what.push(format!("also needs {}", added.join(", ")));
        }
        if !gone.is_empty() {
            what.push(format!("does not need {}", gone.join(", ")));
        }
        if !settled.is_empty() {
            what.push(format!(
                "needs {} (recorded as uncertain)",
                settled.join(", ")
            ));
        }
        differences.push(recorded(what.join("; "), Some(fact.render(&item.package))));
    }
    // ELF files no fact speaks of. The image's last layers are its final
    // stage's COPY/ADD/RUN, one each: a file's layer names the package it was
    // copied from; one the image built itself is no package's fact. A file
    // of an earlier layer (a base image) is named by candidates only.
    let copied: BTreeSet<&str> = shipped.values().map(|s| s.package.as_str()).collect();
    let candidates = copied.into_iter().collect::<Vec<_>>().join(", ");
    let sources = layer_sources(&closure::layer_packages(image), observed);
    let source_of = |path: &str| -> Option<Option<String>> {
        let layer = observed.layer_of.get(path)?;
        sources.get(layer).cloned()
    };
    for (path, elf) in &observed.elves {
        if accounted.contains(path) {
            continue;
        }
        let package = match source_of(path) {
            // Built by the image itself (a build stage, the context, RUN).
            Some(None) => continue,
            Some(Some(package)) => package,
            None => "<package>".to_string(),
        };
        let fact = FileFact {
            path: path.clone(),
            kind: Kind::Elf {
                interpreter: elf.interpreter.clone(),
                soname: None,
                needs: elf
                    .needed
                    .iter()
                    .map(|soname| Need {
                        soname: soname.clone(),
                        uncertain: false,
                    })
                    .collect(),
            },
            // Where the package's other facts were read; which line
            // installs this file is for a person to find.
            source: facts
                .package(&package)
                .and_then(|p| p.files.first())
                .map(|f| crate::model::facts::Source {
                    path: f.source.path.clone(),
                    line: 1,
                })
                .unwrap_or(crate::model::facts::Source {
                    path: "packages/<stage>/<name>/Containerfile".into(),
                    line: 1,
                }),
            note: Some("observed in a build: name the line that installs it".into()),
            line: 0,
        };
        let what = if package == "<package>" {
            format!("an ELF file no fact records (from one of {candidates}, or a base image)")
        } else {
            format!("an ELF file no fact of {package} records")
        };
        differences.push(Difference {
            observed: Some(fact.render(&package)),
            package,
            path: path.clone(),
            what,
            recorded: None,
            recorded_line: None,
        });
    }
    differences
}

/// Layer → the package its instruction copied (`None`: the image made it),
/// pairing the final stage's instructions with the last layers from the end;
/// a `WORKDIR` no layer answers to made none. Layers before (a base image)
/// or past a disagreement are left out: their package is not known.
pub fn layer_sources(
    instructions: &[(String, Option<String>)],
    observed: &Observed,
) -> BTreeMap<usize, Option<String>> {
    let mut sources = BTreeMap::new();
    let Some(kinds) = &observed.layer_kinds else {
        return sources;
    };
    let mut layers = kinds.iter().enumerate().rev().peekable();
    for (keyword, package) in instructions.iter().rev() {
        match layers.peek() {
            Some((index, kind)) if *kind == keyword => {
                sources.insert(*index, package.clone());
                layers.next();
            }
            _ if keyword == "WORKDIR" => {}
            _ => break,
        }
    }
    sources
}

/// The keyword of each layer's instruction, from an image config's history
/// (`created_by` of the entries that are not `empty_layer`), when it
/// accounts for every layer of `rootfs.diff_ids`.
pub fn layer_kinds(config: &serde_json::Value) -> Option<Vec<String>> {
    let layers = config["rootfs"]["diff_ids"].as_array()?.len();
    let kinds: Vec<String> = config["history"]
        .as_array()?
        .iter()
        .filter(|entry| !entry["empty_layer"].as_bool().unwrap_or(false))
        .map(|entry| {
            let created_by = entry["created_by"].as_str().unwrap_or_default();
            // `/bin/sh -c #(nop) COPY …` (the classic builder) or `COPY …`.
            let text = created_by
                .split_once("#(nop)")
                .map(|(_, rest)| rest)
                .unwrap_or(created_by);
            text.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase()
        })
        .collect();
    (kinds.len() == layers).then_some(kinds)
}

/// The differences for people: one line each, and the line to paste.
pub fn render(image: &str, facts_path: &str, differences: &[Difference]) -> String {
    if differences.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "[{image}] package facts: {} difference(s) from {facts_path} (what the build shipped; `check-runtime --write-facts` records them):\n",
        differences.len()
    );
    for d in differences {
        text.push_str(&format!("  - {} ({}): {}\n", d.path, d.package, d.what));
        if let Some(recorded) = &d.recorded {
            text.push_str(&format!(
                "      recorded (line {}): {recorded}\n",
                d.recorded_line.unwrap_or_default()
            ));
        }
        match &d.observed {
            Some(observed) => text.push_str(&format!("      observed: {observed}\n")),
            None => text.push_str("      observed: (no such ELF file: drop the line)\n"),
        }
    }
    text
}

/// The facts file `text` with the differences applied: a recorded line is
/// replaced by the observed one (or dropped); a file no fact records is
/// added after its package's last line, with the `at=` left for a person
/// to fill in; one whose package is not known is left to people. Pure.
pub fn apply(text: &str, differences: &[Difference]) -> String {
    let replace: BTreeMap<usize, Option<&str>> = differences
        .iter()
        .filter_map(|d| d.recorded_line.map(|line| (line, d.observed.as_deref())))
        .collect();
    let mut added: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in differences {
        if let (None, Some(observed)) = (d.recorded_line, &d.observed) {
            if d.package != "<package>" {
                added.entry(d.package.as_str()).or_default().push(observed);
            }
        }
    }
    // The last line of each package's records.
    let mut last_line: BTreeMap<String, usize> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [_, package, ..] = words.as_slice() {
            if matches!(words[0], "package" | "elf" | "data" | "link") {
                last_line.insert(package.to_string(), index + 1);
            }
        }
    }
    let mut out = String::new();
    for (index, line) in text.lines().enumerate() {
        match replace.get(&(index + 1)) {
            Some(Some(observed)) => {
                out.push_str(observed);
                out.push('\n');
            }
            Some(None) => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
        for (package, lines) in &added {
            if last_line.get(*package) == Some(&(index + 1)) {
                for observed in lines {
                    out.push_str(observed);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// Write the differences into the checkout's facts file.
pub fn write(root: &Path, differences: &[Difference]) -> Result<()> {
    let release = crate::model::release::current_name(root)?;
    let path = root
        .join("stagex-release")
        .join(release)
        .join(crate::model::facts::FILE);
    let text = crate::model::release::read_list(&path)?;
    let updated = apply(&text, differences);
    Facts::parse(&path.display().to_string(), &updated)
        .context("the facts as they would be written do not parse: nothing was written")?;
    crate::files::write_atomically(&path, updated.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::check_runtime::elf::Abi;

    const HEX: &str = "816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";

    fn elf(interpreter: Option<&str>, needed: &[&str]) -> ElfFile {
        ElfFile {
            abi: Abi {
                bits: 64,
                little_endian: true,
                machine: 62,
            },
            loadable: true,
            interpreter: interpreter.map(str::to_string),
            needed: needed.iter().map(|s| s.to_string()).collect(),
            rpath: Vec::new(),
            runpath: Vec::new(),
        }
    }

    fn facts_text() -> String {
        format!(
            "package core-ruby digest={HEX} read=r\n\
             elf core-ruby /usr/lib/libruby.so.3.4 soname=libruby.so.3.4 needs=libgmp.so.10?,libc.musl-x86_64.so.1 at=r:40 -- gmp from the pallet\n\
             elf core-ruby /usr/bin/ruby interp=/lib/ld-musl-x86_64.so.1 needs=libruby.so.3.4,libc.musl-x86_64.so.1 at=r:48\n\
             elf core-ruby /usr/bin/erb-helper interp=/lib/ld-musl-x86_64.so.1 at=r:49\n"
        )
    }

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("img")).unwrap();
        std::fs::write(
            root.path().join("img/Containerfile"),
            format!(
                "FROM stagex/core-ruby@sha256:{HEX} AS ruby\nFROM scratch AS build\nRUN [\"/make\"]\nFROM scratch\nCOPY --from=ruby . /\nCOPY --from=build /out/app /usr/bin/app\n"
            ),
        )
        .unwrap();
        let catalog = Catalog::load(root.path()).unwrap();
        (root, catalog)
    }

    fn observed() -> Observed {
        let mut observed = Observed::default();
        for path in [
            "/lib",
            "/usr",
            "/usr/lib",
            "/usr/bin",
            "/usr/lib/libruby.so.3.4.9",
            "/usr/bin/ruby",
            "/usr/bin/gem-native",
        ] {
            observed.paths.insert(path.to_string());
        }
        observed.paths.insert("/usr/lib/libruby.so.3.4".into());
        observed
            .links
            .insert("/usr/lib/libruby.so.3.4".into(), "libruby.so.3.4.9".into());
        observed.elves.insert(
            "/usr/lib/libruby.so.3.4.9".into(),
            elf(
                None,
                &["libgmp.so.10", "libucontext.so.1", "libc.musl-x86_64.so.1"],
            ),
        );
        observed.elves.insert(
            "/usr/bin/ruby".into(),
            elf(
                Some("/lib/ld-musl-x86_64.so.1"),
                &["libruby.so.3.4", "libc.musl-x86_64.so.1"],
            ),
        );
        observed.elves.insert(
            "/usr/bin/gem-native".into(),
            elf(Some("/lib/ld-musl-x86_64.so.1"), &["libc.musl-x86_64.so.1"]),
        );
        // The image built /usr/bin/app itself (the last layer): no package's.
        observed.paths.insert("/usr/bin/app".into());
        observed.elves.insert(
            "/usr/bin/app".into(),
            elf(Some("/lib/ld-musl-x86_64.so.1"), &["libc.musl-x86_64.so.1"]),
        );
        observed.layer_kinds = Some(vec!["COPY".into(), "COPY".into(), "COPY".into()]);
        for path in [
            "/usr/lib/libruby.so.3.4.9",
            "/usr/bin/ruby",
            "/usr/bin/gem-native",
        ] {
            observed.layer_of.insert(path.into(), 1);
        }
        observed.layer_of.insert("/usr/bin/app".into(), 2);
        observed
    }

    #[test]
    fn every_difference_is_reported_with_the_line_to_paste() {
        let (_root, catalog) = catalog();
        let facts = Facts::parse("facts", &facts_text()).unwrap();
        let differences = compare("img", &catalog, &facts, &observed());
        let shown: Vec<(String, String, Option<String>)> = differences
            .iter()
            .map(|d| (d.path.clone(), d.what.clone(), d.observed.clone()))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "/usr/bin/erb-helper".to_string(),
                    "recorded, but the archive has no such file".to_string(),
                    None
                ),
                (
                    "/usr/lib/libruby.so.3.4".to_string(),
                    "also needs libucontext.so.1; needs libgmp.so.10 (recorded as uncertain)".to_string(),
                    Some("elf core-ruby /usr/lib/libruby.so.3.4 soname=libruby.so.3.4 needs=libgmp.so.10,libucontext.so.1,libc.musl-x86_64.so.1 at=r:40".to_string())
                ),
                (
                    "/usr/bin/gem-native".to_string(),
                    "an ELF file no fact of core-ruby records".to_string(),
                    Some("elf core-ruby /usr/bin/gem-native interp=/lib/ld-musl-x86_64.so.1 needs=libc.musl-x86_64.so.1 at=r:1 -- observed in a build: name the line that installs it".to_string())
                ),
            ]
        );
        // Written back, the facts say what was observed and parse.
        let written = apply(&facts_text(), &differences);
        let facts = Facts::parse("facts", &written).unwrap();
        assert!(!written.contains("erb-helper"), "{written}");
        assert!(
            written.contains("needs=libgmp.so.10,libucontext.so.1"),
            "{written}"
        );
        assert!(
            written.contains("elf core-ruby /usr/bin/gem-native"),
            "{written}"
        );
        // Compared again, the facts and the archive agree.
        assert_eq!(compare("img", &catalog, &facts, &observed()), []);
        // Without the layer count, a file's package is not known: named by
        // candidates, and not written.
        let mut unlayered = observed();
        unlayered.layer_kinds = None;
        let differences = compare("img", &catalog, &facts, &unlayered);
        let unknown: Vec<&Difference> = differences
            .iter()
            .filter(|d| d.package == "<package>")
            .collect();
        assert_eq!(unknown.len(), 1, "{differences:?}");
        assert_eq!(unknown[0].path, "/usr/bin/app");
        assert_eq!(apply(&written, &differences), written);
    }

    #[test]
    fn layers_are_named_by_the_history_from_the_end() {
        let config = serde_json::json!({
            "rootfs": {"diff_ids": ["sha256:a", "sha256:b", "sha256:c", "sha256:d"]},
            "history": [
                {"created_by": "COPY / / # buildkit"},
                {"created_by": "ARG SOURCE_DATE_EPOCH", "empty_layer": true},
                {"created_by": "COPY /etc/ssl/ /etc/ssl/ # buildkit"},
                {"created_by": "/bin/sh -c #(nop) COPY file:abc in / "},
                {"created_by": "RUN /make # buildkit"},
                {"created_by": "ENTRYPOINT [\"/app\"]", "empty_layer": true},
            ]
        });
        let kinds = layer_kinds(&config).unwrap();
        assert_eq!(kinds, ["COPY", "COPY", "COPY", "RUN"]);
        let observed = Observed {
            layer_kinds: Some(kinds),
            ..Observed::default()
        };
        let instructions = [
            ("COPY".to_string(), Some("core-a".to_string())),
            ("COPY".to_string(), Some("core-b".to_string())),
            ("WORKDIR".to_string(), None),
            ("RUN".to_string(), None),
        ];
        let sources = layer_sources(&instructions, &observed);
        assert_eq!(
            sources,
            BTreeMap::from([
                (1, Some("core-a".to_string())),
                (2, Some("core-b".to_string())),
                (3, None)
            ])
        );
        // A history that does not account for every layer names none.
        let mut short = config.clone();
        short["rootfs"]["diff_ids"] = serde_json::json!(["sha256:a"]);
        assert_eq!(layer_kinds(&short), None);
    }

    #[test]
    fn matching_facts_report_nothing() {
        let (_root, catalog) = catalog();
        let text = format!(
            "package core-ruby digest={HEX} read=r\n\
             elf core-ruby /usr/bin/ruby interp=/lib/ld-musl-x86_64.so.1 needs=libruby.so.3.4,libc.musl-x86_64.so.1 at=r:48\n"
        );
        let facts = Facts::parse("facts", &text).unwrap();
        let mut observed = observed();
        observed.elves.remove("/usr/bin/gem-native");
        observed.elves.remove("/usr/lib/libruby.so.3.4.9");
        observed.elves.remove("/usr/bin/app");
        assert_eq!(compare("img", &catalog, &facts, &observed), []);
    }
}
