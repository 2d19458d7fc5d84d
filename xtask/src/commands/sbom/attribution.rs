//! Which input left each layer of a built image, read from the image's own
//! history and its Containerfile: the layers our final stage made are matched
//! from the end (BuildKit records `COPY . /`, not its `--from`, so the
//! instructions are matched by kind and order), and the layers before them
//! came with the image the final stage starts from.

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

fn is_layer(instruction: &Instruction) -> bool {
    matches!(instruction.keyword.as_str(), "COPY" | "ADD" | "RUN")
}

/// One source per layer of the built image, `layers` long.
pub fn layer_sources(image: &Image, history: &[String]) -> Vec<Source> {
    let layers = history.len();
    let Ok(stages) = image.containerfile.stages() else {
        return vec![Source::Unknown; layers];
    };
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
            Some(InputKind::Context { name }) => Source::Instruction(format!("COPY from {name}")),
            _ => Source::Unknown,
        })
    };
    // The chain of stages the final stage grows from, root first.
    let last = infos.len() - 1;
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
        let pure = !info.instructions.iter().any(is_layer);
        match resolve(&info.base, index, info.line) {
            Named::Source(Source::Package(package)) if pure => Source::Package(package),
            Named::Source(Source::OurImage(image)) if pure => Source::OurImage(image),
            _ => Source::Instruction(format!(
                "built in stage `{}`",
                info.name.clone().unwrap_or_else(|| index.to_string())
            )),
        }
    };
    let ours: Vec<(String, Source)> = chain
        .iter()
        .flat_map(|&index| {
            infos[index]
                .instructions
                .iter()
                .filter(|i| is_layer(i))
                .map(move |i| (index, i))
        })
        .map(|(index, instruction)| {
            let source = match (instruction.keyword.as_str(), instruction.flag("from")) {
                ("COPY", Some(from)) => match resolve(from, index, instruction.line) {
                    Named::Stage(stage) => stage_source(stage),
                    Named::Source(source) => source,
                    Named::Scratch => Source::Unknown,
                },
                _ => Source::Instruction(format!("{} {}", instruction.keyword, instruction.args)),
            };
            (instruction.keyword.clone(), source)
        })
        .collect();
    let mut sources = vec![Source::Unknown; layers];
    let mut matched = 0;
    for ((keyword, source), created_by) in ours.iter().rev().zip(history.iter().rev()) {
        if !created_by.trim_start().starts_with(keyword.as_str()) {
            break;
        }
        matched += 1;
        sources[layers - matched] = source.clone();
    }
    if matched == ours.len() {
        // Everything before our own layers came with the root image.
        for source in &mut sources[..layers - matched] {
            *source = root.clone();
        }
    }
    sources
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
    }
}
