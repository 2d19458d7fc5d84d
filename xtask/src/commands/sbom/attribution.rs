//! Which input left each layer of a built image, read from the image's own
//! history and its Containerfile: the layers our final stage made are matched
//! from the end (BuildKit records `COPY . /`, not its `--from`, so the
//! instructions are matched by kind and order), and the layers before them
//! came with the image the final stage starts from.

use std::collections::BTreeSet;

use crate::model::catalog::{Image, InputKind};
use crate::model::containerfile::Instruction;

/// Where a layer's files came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A StageX package, copied in whole (`COPY --from=<package stage> . /`)
    /// or started from (`FROM <package>`).
    Package(String),
    /// Another image of this repository the image is built on.
    OurImage(String),
    /// Made here by an instruction (a RUN, a COPY of build output).
    Instruction(String),
    /// Not known (the history and the Containerfile disagree).
    Unknown,
}

/// What an instruction or a `FROM` names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    Stage(usize),
    Source(Source),
    Scratch,
}

struct StageInfo {
    line: usize,
    base: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

/// Instructions that leave a layer; WORKDIR only when it had to create the
/// folder, so it may or may not have one.
fn leaves_layer(instruction: &Instruction) -> Option<bool> {
    match instruction.keyword.as_str() {
        "COPY" | "ADD" | "RUN" => Some(false),
        "WORKDIR" => Some(true),
        _ => None,
    }
}

/// One instruction of the final stage's chain that may leave a layer.
#[derive(Debug, Clone)]
struct Made {
    keyword: String,
    source: Source,
    /// It may have left no layer (WORKDIR on an existing folder).
    optional: bool,
}

/// What the Containerfile says the final image is made of: the image its
/// chain of stages starts from, and each instruction of that chain that may
/// leave a layer, in order.
#[derive(Debug, Clone)]
pub struct FinalStage {
    root: Source,
    made: Vec<Made>,
}

impl FinalStage {
    pub fn of(image: &Image) -> Option<FinalStage> {
        let stages = image.containerfile.stages().ok()?;
        let mut infos: Vec<StageInfo> = stages
            .iter()
            .map(|stage| StageInfo {
                line: stage.line,
                base: stage.base.clone(),
                name: stage.name.clone(),
                instructions: Vec::new(),
            })
            .collect();
        for instruction in &image.containerfile.instructions {
            if instruction.keyword == "FROM" {
                continue;
            }
            if let Some(info) = infos.iter_mut().rev().find(|i| i.line < instruction.line) {
                info.instructions.push(instruction.clone());
            }
        }
        let resolve = |name: &str, before: usize, line: usize| -> Named {
            if name == "scratch" {
                return Named::Scratch;
            }
            if let Some(index) = infos[..before].iter().position(|info| {
                info.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }) {
                return Named::Stage(index);
            }
            if let Ok(index) = name.parse::<usize>() {
                if index < before {
                    return Named::Stage(index);
                }
            }
            let input = image.inputs.iter().find(|input| input.line == line);
            Named::Source(match input.map(|i| &i.kind) {
                Some(InputKind::Stagex { package }) => Source::Package(package.clone()),
                Some(InputKind::Ours { image }) => Source::OurImage(image.clone()),
                Some(InputKind::Context { name }) => {
                    Source::Instruction(format!("COPY from {name}"))
                }
                _ => Source::Unknown,
            })
        };
        // The chain of stages the final stage grows from, root first.
        let last = infos.len().checked_sub(1)?;
        let mut chain = vec![last];
        let root = loop {
            let current = *chain.last().unwrap_or(&last);
            match resolve(&infos[current].base, current, infos[current].line) {
                Named::Stage(parent) if !chain.contains(&parent) => chain.push(parent),
                Named::Stage(_) => break Source::Unknown,
                Named::Source(source) => break source,
                Named::Scratch => break Source::Unknown,
            }
        };
        chain.reverse();
        // A stage used by `COPY --from`: a package when it only holds the package.
        let stage_source = |index: usize| -> Source {
            let info = &infos[index];
            let pure = !info
                .instructions
                .iter()
                .any(|i| leaves_layer(i) == Some(false));
            match resolve(&info.base, index, info.line) {
                Named::Source(Source::Package(package)) if pure => Source::Package(package),
                Named::Source(Source::OurImage(image)) if pure => Source::OurImage(image),
                _ => Source::Instruction(format!(
                    "built in stage `{}`",
                    info.name.clone().unwrap_or_else(|| index.to_string())
                )),
            }
        };
        let mut made = Vec::new();
        for &index in &chain {
            for instruction in &infos[index].instructions {
                let Some(optional) = leaves_layer(instruction) else {
                    continue;
                };
                let source = match (instruction.keyword.as_str(), instruction.flag("from")) {
                    ("COPY", Some(from)) => match resolve(from, index, instruction.line) {
                        Named::Stage(stage) => stage_source(stage),
                        Named::Source(source) => source,
                        Named::Scratch => Source::Unknown,
                    },
                    _ => {
                        Source::Instruction(format!("{} {}", instruction.keyword, instruction.args))
                    }
                };
                made.push(Made {
                    keyword: instruction.keyword.clone(),
                    source,
                    optional,
                });
            }
        }
        Some(FinalStage { root, made })
    }

    /// The StageX packages whose files the image holds, whatever the image's
    /// history says: the one the chain starts from and each copied from.
    pub fn packages(&self) -> BTreeSet<String> {
        std::iter::once(&self.root)
            .chain(self.made.iter().map(|m| &m.source))
            .filter_map(|source| match source {
                Source::Package(package) => Some(package.clone()),
                _ => None,
            })
            .collect()
    }

    /// One source per layer of the built image, `history` (each layer's
    /// `created_by`) long. Our layers are matched from the end; when they all
    /// match, the layers before them came with the root image. What does not
    /// match stays [`Source::Unknown`]: nothing is guessed.
    pub fn sources(&self, history: &[String]) -> Vec<Source> {
        let layers = history.len();
        let mut sources = vec![Source::Unknown; layers];
        let (mut pending, mut left) = (self.made.len(), layers);
        while pending > 0 && left > 0 {
            let made = &self.made[pending - 1];
            if history[left - 1]
                .trim_start()
                .starts_with(made.keyword.as_str())
            {
                sources[left - 1] = made.source.clone();
                left -= 1;
            } else if !made.optional {
                break;
            }
            pending -= 1;
        }
        if self.made[..pending].iter().all(|m| m.optional) {
            for source in &mut sources[..left] {
                *source = self.root.clone();
            }
        }
        sources
    }
}

/// One source per layer of the built image, `history` long.
pub fn layer_sources(image: &Image, history: &[String]) -> Vec<Source> {
    match FinalStage::of(image) {
        Some(stage) => stage.sources(history),
        None => vec![Source::Unknown; history.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalog::Catalog;

    const MUSL: &str = "stagex/core-musl:1.2.5@sha256:816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";
    const FS: &str = "stagex/core-filesystem@sha256:cd3a66471ce1f630fa77d5c9bd9829f9f9fab6302a1aaa64d67b74f1f069b750";
    const GO: &str = "stagex/pallet-go:1.26.0@sha256:4b7f9fe27d84dd9109fe89c4dab1cefdd66bf2f670817ef95ffd335b84fdf2cb";

    fn catalog(files: &[(&str, String)]) -> (tempfile::TempDir, Catalog) {
        let root = tempfile::tempdir().unwrap();
        for (dir, text) in files {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
            std::fs::write(root.path().join(dir).join("Containerfile"), text).unwrap();
        }
        let catalog = Catalog::load(root.path()).unwrap();
        (root, catalog)
    }

    #[test]
    fn packages_copied_whole_and_the_root_image() {
        let (_root, catalog) = catalog(&[(
            "base",
            format!("FROM {MUSL} AS musl\nFROM {FS}\nCOPY --from=musl . /\nENV A=b\nRUN [\"/bin/true\"]\n"),
        )]);
        let image = catalog.image("base").unwrap();
        // Two layers of core-filesystem, then ours.
        let history = [
            "COPY . / # buildkit",
            "RUN x",
            "COPY . / # buildkit",
            "RUN /bin/true # buildkit",
        ]
        .map(String::from);
        assert_eq!(
            layer_sources(image, &history),
            [
                Source::Package("core-filesystem".into()),
                Source::Package("core-filesystem".into()),
                Source::Package("core-musl".into()),
                Source::Instruction("RUN [\"/bin/true\"]".into()),
            ]
        );
    }

    #[test]
    fn build_stages_and_our_images() {
        let (_root, catalog) = catalog(&[
            ("base", format!("FROM {FS}\n")),
            (
                "examples/app",
                format!("FROM {GO} AS build\nRUN [\"go\", \"build\"]\nFROM base\nCOPY --from=build /out/app /app\n"),
            ),
        ]);
        let image = catalog.image("app").unwrap();
        let history = ["COPY . /", "COPY /out/app /app # buildkit"].map(String::from);
        assert_eq!(
            layer_sources(image, &history),
            [
                Source::OurImage("base".into()),
                Source::Instruction("built in stage `build`".into()),
            ]
        );
        // History that does not fit the Containerfile: nothing is guessed.
        let odd = ["RUN something else"].map(String::from);
        assert_eq!(layer_sources(image, &odd), [Source::Unknown]);
        // pallet-go only built: not among the packages the image holds.
        let stage = FinalStage::of(image).unwrap();
        assert!(stage.packages().is_empty());
    }

    /// WORKDIR leaves a layer only when it creates the folder; either way
    /// the layers match, and what the image holds does not depend on it.
    #[test]
    fn a_workdir_may_or_may_not_leave_a_layer() {
        let (_root, catalog) = catalog(&[(
            "base",
            format!("FROM {MUSL} AS musl\nFROM {FS}\nWORKDIR /app\nCOPY --from=musl . /\n"),
        )]);
        let image = catalog.image("base").unwrap();
        let musl = Source::Package("core-musl".into());
        let fs = Source::Package("core-filesystem".into());
        let with = ["COPY . /", "WORKDIR /app", "COPY . / # buildkit"].map(String::from);
        assert_eq!(
            layer_sources(image, &with),
            [
                fs.clone(),
                Source::Instruction("WORKDIR /app".into()),
                musl.clone()
            ]
        );
        let without = ["COPY . /", "COPY . / # buildkit"].map(String::from);
        assert_eq!(layer_sources(image, &without), [fs, musl]);
        let stage = FinalStage::of(image).unwrap();
        assert_eq!(
            stage.packages().into_iter().collect::<Vec<_>>(),
            ["core-filesystem", "core-musl"]
        );
        // A history that does not match leaves layers unknown, never the
        // packages out.
        let odd = ["ADD x", "RUN y"].map(String::from);
        assert_eq!(
            layer_sources(image, &odd),
            [Source::Unknown, Source::Unknown]
        );
    }
}
