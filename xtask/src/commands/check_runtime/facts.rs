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
}

impl Observed {
    pub fn new(rootfs: &Rootfs, sniffs: &HashMap<rootfs::Origin, Sniff>) -> Observed {
        let mut observed = Observed::default();
        for (path, entry) in &rootfs.entries {
            let absolute = format!("/{path}");
            if entry.kind == rootfs::Kind::Symlink {
                if let Some(target) = &entry.link {
                    observed.links.insert(absolute.clone(), target.clone());
                }
            }
            if let Some(Sniff::Elf(elf)) = entry.origin().and_then(|origin| sniffs.get(&origin)) {
                observed.elves.insert(absolute.clone(), elf.clone());
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    // ELF files no fact speaks of: from a package the facts miss, or the
    // image's own build. Which package is not in the archive: say where to look.
    let copied: BTreeSet<&str> = shipped.values().map(|s| s.package.as_str()).collect();
    let candidates = copied.into_iter().collect::<Vec<_>>().join(", ");
    for (path, elf) in &observed.elves {
        if accounted.contains(path) {
            continue;
        }
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
            source: crate::model::facts::Source {
                path: "packages/<stage>/<name>/Containerfile".into(),
                line: 1,
            },
            note: None,
            line: 0,
        };
        differences.push(Difference {
            package: "<package>".into(),
            path: path.clone(),
            what: format!(
                "an ELF file no fact records (from one of {candidates}, or built by the image itself)"
            ),
            recorded: None,
            recorded_line: None,
            observed: Some(fact.render("<package>")),
        });
    }
    differences
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
/// left to people (its package is not known). Pure.
pub fn apply(text: &str, differences: &[Difference]) -> String {
    let replace: BTreeMap<usize, Option<&str>> = differences
        .iter()
        .filter_map(|d| d.recorded_line.map(|line| (line, d.observed.as_deref())))
        .collect();
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
                "FROM stagex/core-ruby@sha256:{HEX} AS ruby\nFROM scratch\nCOPY --from=ruby . /\n"
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
                    "an ELF file no fact records (from one of core-ruby, or built by the image itself)".to_string(),
                    Some("elf <package> /usr/bin/gem-native interp=/lib/ld-musl-x86_64.so.1 needs=libc.musl-x86_64.so.1 at=packages/<stage>/<name>/Containerfile:1".to_string())
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
        // Compared again, only the file no fact records is left.
        let again = compare("img", &catalog, &facts, &observed());
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(again[0].package, "<package>");
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
        assert_eq!(compare("img", &catalog, &facts, &observed), []);
    }
}
