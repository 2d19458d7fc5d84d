//! A typed model of a Containerfile: just enough of the Dockerfile grammar to
//! reason about what an image pulls in and how it runs commands.
//!
//! Covered: parser directives (`# syntax=`, `# escape=`), comments, line
//! continuations (also across comment lines, as BuildKit does), heredocs,
//! instruction flags, global and per-stage `ARG` defaults with `$VAR`/`${VAR}`/
//! `${VAR:-default}` substitution in `FROM`, stage names and `COPY --from`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::oci::reference::ImageRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerfile {
    pub path: PathBuf,
    /// Value of a `# syntax=` parser directive, with its line.
    pub syntax: Option<(usize, String)>,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-cased keyword: `FROM`, `RUN`, …
    pub keyword: String,
    /// `--name=value` flags in order; a bare `--flag` has an empty value.
    pub flags: Vec<(String, String)>,
    /// Everything after the flags, continuations joined with a space.
    pub args: String,
    /// Heredoc bodies (`<<EOF … EOF`) that belong to this instruction.
    pub heredocs: Vec<String>,
}

/// How a `RUN`, `CMD` or `ENTRYPOINT` passes its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// `["cmd", "arg"]`: no shell involved.
    Exec(Vec<String>),
    /// Anything else, including heredocs: run through `/bin/sh -c`.
    Shell,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(flag, _)| flag == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn command_form(&self) -> CommandForm {
        if !self.heredocs.is_empty() {
            return CommandForm::Shell;
        }
        let trimmed = self.args.trim();
        if trimmed.starts_with('[') {
            if let Ok(words) = serde_json::from_str::<Vec<String>>(trimmed) {
                return CommandForm::Exec(words);
            }
        }
        CommandForm::Shell
    }
}

/// One `FROM` and what follows it up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    pub line: usize,
    /// The `FROM` argument as written (`${STAGEX_REGISTRY}/core-musl:…`).
    pub base_written: String,
    /// The `FROM` argument after `ARG` substitution.
    pub base: String,
    pub name: Option<String>,
}

/// A reference that leaves this Containerfile: an image to pull, or an image
/// of this repository supplied as a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    pub line: usize,
    /// `FROM` or `COPY --from`.
    pub context: &'static str,
    pub written: String,
    pub reference: ImageRef,
}

impl Containerfile {
    pub fn read(path: &Path) -> Result<Containerfile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Containerfile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Containerfile> {
        let lines: Vec<&str> = text.lines().collect();
        let (syntax, escape) = parser_directives(&lines);
        let mut instructions = Vec::new();
        let mut index = 0;
        while index < lines.len() {
            let raw = lines[index];
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                index += 1;
                continue;
            }
            let start_line = index + 1;
            // Join continuation lines; comment lines inside a continuation are dropped.
            let mut logical = String::new();
            let mut current = trimmed.to_string();
            loop {
                let continued = strip_continuation(&current, escape);
                match continued {
                    Some(head) => {
                        logical.push_str(head);
                        logical.push(' ');
                        index += 1;
                        // Skip comment and blank lines inside the continuation.
                        while index < lines.len() {
                            let next = lines[index].trim_start();
                            if next.starts_with('#') || next.is_empty() {
                                index += 1;
                            } else {
                                break;
                            }
                        }
                        if index >= lines.len() {
                            break;
                        }
                        current = lines[index].trim_start().to_string();
                    }
                    None => {
                        logical.push_str(&current);
                        index += 1;
                        break;
                    }
                }
            }
            let mut instruction = split_instruction(&logical, start_line).with_context(|| {
                format!(
                    "{}:{}: cannot parse instruction",
                    path.display(),
                    start_line
                )
            })?;
            // Heredocs: `<<EOF` or `<<-EOF` (optionally quoted) in the arguments.
            for marker in heredoc_markers(&instruction.args) {
                let mut body = String::new();
                let mut closed = false;
                while index < lines.len() {
                    let line = lines[index];
                    index += 1;
                    let candidate = if marker.strip_tabs {
                        line.trim_start_matches('\t')
                    } else {
                        line
                    };
                    if candidate == marker.word {
                        closed = true;
                        break;
                    }
                    body.push_str(line);
                    body.push('\n');
                }
                if !closed {
                    bail!(
                        "{}:{}: heredoc <<{} is never closed: add a line `{}`",
                        path.display(),
                        start_line,
                        marker.word,
                        marker.word
                    );
                }
                instruction.heredocs.push(body);
            }
            instructions.push(instruction);
        }
        Ok(Containerfile {
            path: path.to_path_buf(),
            syntax,
            instructions,
        })
    }

    /// `ARG` defaults declared before the first `FROM`: the only ones visible in `FROM`.
    pub fn global_args(&self) -> BTreeMap<String, Option<String>> {
        let mut args = BTreeMap::new();
        for instruction in &self.instructions {
            if instruction.keyword == "FROM" {
                break;
            }
            if instruction.keyword == "ARG" {
                for (name, value) in parse_arg_declarations(&instruction.args) {
                    args.insert(name, value);
                }
            }
        }
        args
    }

    /// Whether `ARG NAME` is declared anywhere in the file.
    pub fn declares_arg(&self, wanted: &str) -> bool {
        self.instructions
            .iter()
            .filter(|instruction| instruction.keyword == "ARG")
            .flat_map(|instruction| parse_arg_declarations(&instruction.args))
            .any(|(name, _)| name == wanted)
    }

    /// Stages with their `FROM` substituted against the global `ARG` defaults,
    /// overridden by `build_args` (as `--build-arg` would).
    pub fn stages_with(&self, build_args: &BTreeMap<String, String>) -> Result<Vec<Stage>> {
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in self.global_args() {
            if let Some(value) = build_args.get(&name).cloned().or(value) {
                args.insert(name, value);
            }
        }
        let mut stages = Vec::new();
        for instruction in self.instructions.iter().filter(|i| i.keyword == "FROM") {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let (written, name) = match words.as_slice() {
                [image] => (*image, None),
                [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    (*image, Some(name.to_string()))
                }
                _ => bail!(
                    "{}:{}: FROM takes `IMAGE [AS NAME]`, found `FROM {}`",
                    self.path.display(),
                    instruction.line,
                    instruction.args
                ),
            };
            let base = substitute(written, &args).with_context(|| {
                format!(
                    "{}:{}: in `FROM {}`",
                    self.path.display(),
                    instruction.line,
                    written
                )
            })?;
            stages.push(Stage {
                index: stages.len(),
                line: instruction.line,
                base_written: written.to_string(),
                base,
                name,
            });
        }
        if stages.is_empty() {
            bail!(
                "{}: no FROM instruction: a Containerfile needs at least one stage",
                self.path.display()
            );
        }
        Ok(stages)
    }

    pub fn stages(&self) -> Result<Vec<Stage>> {
        self.stages_with(&BTreeMap::new())
    }

    /// Every image this file pulls from outside itself: `FROM` bases that are not
    /// earlier stages (nor `scratch`), and `COPY --from` that is not a stage.
    pub fn external_refs(&self) -> Result<Vec<ExternalRef>> {
        let stages = self.stages()?;
        let mut refs = Vec::new();
        let mut seen_stage_names: Vec<&str> = Vec::new();
        for stage in &stages {
            let is_earlier_stage = seen_stage_names
                .iter()
                .any(|name| name.eq_ignore_ascii_case(&stage.base));
            if !is_earlier_stage && stage.base != "scratch" {
                refs.push(ExternalRef {
                    line: stage.line,
                    context: "FROM",
                    written: stage.base_written.clone(),
                    reference: ImageRef::parse(&stage.base)
                        .with_context(|| format!("{}:{}", self.path.display(), stage.line))?,
                });
            }
            if let Some(name) = &stage.name {
                seen_stage_names.push(name);
            }
        }
        let stage_names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
        for instruction in &self.instructions {
            if instruction.keyword != "COPY" {
                continue;
            }
            let Some(from) = instruction.flag("from") else {
                continue;
            };
            let is_stage = stage_names.iter().any(|n| n.eq_ignore_ascii_case(from))
                || from.parse::<usize>().is_ok();
            if !is_stage {
                refs.push(ExternalRef {
                    line: instruction.line,
                    context: "COPY --from",
                    written: from.to_string(),
                    reference: ImageRef::parse(from)
                        .with_context(|| format!("{}:{}", self.path.display(), instruction.line))?,
                });
            }
        }
        refs.sort_by_key(|r| r.line);
        Ok(refs)
    }
}

fn parser_directives(lines: &[&str]) -> (Option<(usize, String)>, char) {
    let mut syntax = None;
    let mut escape = '\\';
    // Directives must come first, before any blank line, comment or instruction.
    for (index, line) in lines.iter().enumerate() {
        let Some(comment) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = comment.split_once('=') else {
            break;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        match key.as_str() {
            "syntax" => syntax = Some((index + 1, value)),
            "escape" => escape = value.chars().next().unwrap_or('\\'),
            "check" => {}
            _ => break,
        }
    }
    (syntax, escape)
}

fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let trimmed = line.trim_end();
    trimmed.strip_suffix(escape)
}

fn split_instruction(logical: &str, line: usize) -> Result<Instruction> {
    let logical = logical.trim();
    let (keyword, rest) = match logical.split_once(char::is_whitespace) {
        Some((keyword, rest)) => (keyword, rest.trim_start()),
        None => (logical, ""),
    };
    if keyword.is_empty() || !keyword.chars().all(|c| c.is_ascii_alphabetic()) {
        bail!("`{keyword}` is not an instruction keyword");
    }
    let mut flags = Vec::new();
    let mut rest = rest;
    while let Some(after_dashes) = rest.strip_prefix("--") {
        let end = after_dashes
            .find(char::is_whitespace)
            .unwrap_or(after_dashes.len());
        let flag = &after_dashes[..end];
        let (name, value) = flag.split_once('=').unwrap_or((flag, ""));
        flags.push((name.to_ascii_lowercase(), value.to_string()));
        rest = after_dashes[end..].trim_start();
    }
    Ok(Instruction {
        line,
        keyword: keyword.to_ascii_uppercase(),
        flags,
        args: rest.to_string(),
        heredocs: Vec::new(),
    })
}

struct HeredocMarker {
    word: String,
    strip_tabs: bool,
}

fn heredoc_markers(args: &str) -> Vec<HeredocMarker> {
    // Exec form never carries heredocs.
    if args.trim_start().starts_with('[') {
        return Vec::new();
    }
    let mut markers = Vec::new();
    let mut rest = args;
    while let Some(position) = rest.find("<<") {
        let mut after = &rest[position + 2..];
        let strip_tabs = after.starts_with('-');
        if strip_tabs {
            after = &after[1..];
        }
        let word: String = after
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '|' && *c != ';')
            .collect();
        let unquoted = word.trim_matches(|c| c == '"' || c == '\'').to_string();
        if !unquoted.is_empty() && unquoted.chars().all(|c| c.is_alphanumeric() || c == '_') {
            markers.push(HeredocMarker {
                word: unquoted,
                strip_tabs,
            });
        }
        rest = &after[word.len()..];
    }
    markers
}

/// `ARG A=1 B C="x"` → `[(A, Some(1)), (B, None), (C, Some(x))]`.
pub fn parse_arg_declarations(args: &str) -> Vec<(String, Option<String>)> {
    args.split_whitespace()
        .map(|word| match word.split_once('=') {
            Some((name, value)) => (
                name.to_string(),
                Some(value.trim_matches('"').trim_matches('\'').to_string()),
            ),
            None => (word.to_string(), None),
        })
        .collect()
}

/// Expand `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` as the
/// Dockerfile frontend does in `FROM`. An undefined variable with no default is
/// an error: it would silently expand to nothing and change the reference.
pub fn substitute(text: &str, args: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            let Some(close) = chars[i..].iter().position(|c| *c == '}') else {
                bail!("unclosed `${{` in `{text}`");
            };
            let inner: String = chars[i + 2..i + close].iter().collect();
            i += close + 1;
            let (name, modifier) = match inner.find(':') {
                Some(colon) => (&inner[..colon], Some(&inner[colon..])),
                None => (inner.as_str(), None),
            };
            let value = args.get(name).filter(|v| !v.is_empty());
            match (modifier, value) {
                (None, Some(value)) => out.push_str(value),
                (None, None) => bail!(
                    "`${{{name}}}` has no value: declare `ARG {name}=<default>` before the first FROM"
                ),
                (Some(m), value) if m.starts_with(":-") => {
                    out.push_str(value.map(String::as_str).unwrap_or(&m[2..]))
                }
                (Some(m), value) if m.starts_with(":+") => {
                    if value.is_some() {
                        out.push_str(&m[2..])
                    }
                }
                (Some(m), _) => bail!("unsupported substitution `${{{name}{m}}}`"),
            }
        } else {
            let name: String = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            if name.is_empty() {
                out.push('$');
                i += 1;
                continue;
            }
            i += 1 + name.len();
            match args.get(&name).filter(|v| !v.is_empty()) {
                Some(value) => out.push_str(value),
                None => bail!(
                    "`${name}` has no value: declare `ARG {name}=<default>` before the first FROM"
                ),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Containerfile {
        Containerfile::parse(Path::new("Containerfile"), text).unwrap()
    }

    const MUSL: &str =
        "stagex/core-musl:1.2.5@sha256:816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";

    #[test]
    fn continuations_comments_and_flags() {
        let file = parse(
            "# a comment\nARG SOURCE_DATE_EPOCH\nFROM scratch AS build\nRUN --network=none \\\n  # inside\n  [\"/bin/true\", \\\n   \"x\"]\nCOPY --from=build --chmod=0755 /a /b\n",
        );
        let keywords: Vec<_> = file
            .instructions
            .iter()
            .map(|i| (i.line, i.keyword.as_str()))
            .collect();
        assert_eq!(keywords, [(2, "ARG"), (3, "FROM"), (4, "RUN"), (8, "COPY")]);
        let run = &file.instructions[2];
        assert_eq!(run.flag("network"), Some("none"));
        assert_eq!(
            run.command_form(),
            CommandForm::Exec(vec!["/bin/true".into(), "x".into()])
        );
        assert_eq!(file.instructions[3].flag("from"), Some("build"));
        assert_eq!(file.instructions[3].flag("chmod"), Some("0755"));
    }

    #[test]
    fn shell_form_and_heredocs_are_shell() {
        let file =
            parse("FROM scratch\nRUN echo hi\nRUN <<-EOF\n\techo a\n\tEOF\nRUN [\"true\"]\n");
        let forms: Vec<_> = file
            .instructions
            .iter()
            .skip(1)
            .map(|i| i.command_form())
            .collect();
        assert_eq!(forms[0], CommandForm::Shell);
        assert_eq!(forms[1], CommandForm::Shell);
        assert_eq!(
            file.instructions[2].heredocs,
            vec!["\techo a\n".to_string()]
        );
        assert_eq!(forms[2], CommandForm::Exec(vec!["true".into()]));
        assert_eq!(file.instructions[3].line, 6);
    }

    #[test]
    fn unclosed_heredoc_is_an_error_with_line() {
        let error = Containerfile::parse(
            Path::new("x/Containerfile"),
            "FROM scratch\nRUN <<EOF\necho\n",
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("x/Containerfile:2"),
            "{error:#}"
        );
    }

    #[test]
    fn syntax_directive_is_seen_only_at_the_top() {
        assert_eq!(
            parse("# syntax=docker/dockerfile:1\nFROM scratch\n").syntax,
            Some((1, "docker/dockerfile:1".to_string()))
        );
        assert_eq!(parse("FROM scratch\n# syntax=x\n").syntax, None);
    }

    #[test]
    fn global_args_substitute_into_from_and_stage_names_resolve() {
        let file = parse(&format!(
            "ARG STAGEX_REGISTRY=stagex\nARG SOURCE_DATE_EPOCH\nFROM ${{STAGEX_REGISTRY}}/{} AS musl\nFROM musl AS again\nFROM scratch\nCOPY --from=musl . /\nCOPY --from=again . /\nCOPY --from=0 . /\n",
            MUSL.trim_start_matches("stagex/")
        ));
        let stages = file.stages().unwrap();
        assert_eq!(stages[0].base, MUSL);
        assert_eq!(stages[0].name.as_deref(), Some("musl"));
        let external = file.external_refs().unwrap();
        assert_eq!(external.len(), 1, "{external:?}");
        assert_eq!(external[0].reference.name(), "core-musl");
        assert_eq!(external[0].line, 3);

        let overridden = file
            .stages_with(&BTreeMap::from([(
                "STAGEX_REGISTRY".to_string(),
                "127.0.0.1:5000/stagex".to_string(),
            )]))
            .unwrap();
        let reference = ImageRef::parse(&overridden[0].base).unwrap();
        assert_eq!(reference.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(reference.repository, "stagex/core-musl");
    }

    #[test]
    fn copy_from_an_image_is_external() {
        let file = parse(&format!("FROM scratch\nCOPY --from={MUSL} . /\n"));
        let external = file.external_refs().unwrap();
        assert_eq!(external[0].context, "COPY --from");
        assert_eq!(external[0].reference.tag.as_deref(), Some("1.2.5"));
    }

    #[test]
    fn arg_without_default_in_from_is_an_error() {
        let file = parse("ARG REGISTRY\nFROM ${REGISTRY}/x\n");
        let error = file.stages().unwrap_err();
        assert!(
            format!("{error:#}").contains("Containerfile:2"),
            "{error:#}"
        );
        assert!(
            format!("{error:#}").contains("ARG REGISTRY=<default>"),
            "{error:#}"
        );
    }

    #[test]
    fn substitution_forms() {
        let args = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(
            substitute("$A/${A}/${B:-d}/${A:+y}/${B:+n}", &args).unwrap(),
            "x/x/d/y/"
        );
    }

    /// Every real pinned line collected from public repositories parses, and
    /// yields the digest written on it.
    #[test]
    fn real_pinned_refs_parse() {
        let text = include_str!("../../tests/testdata/pinned-refs.txt");
        let mut checked = 0;
        for row in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let columns: Vec<&str> = row.split('\t').collect();
            let line = columns[3];
            let reference = if line.starts_with("FROM") || line.starts_with("COPY") {
                // A lone COPY line needs a stage to live in.
                let stage = if line.starts_with("COPY") {
                    "FROM scratch\n"
                } else {
                    ""
                };
                let file = Containerfile::parse(Path::new(columns[2]), &format!("{stage}{line}\n"))
                    .unwrap_or_else(|e| panic!("{row}: {e:#}"));
                let refs = file
                    .external_refs()
                    .unwrap_or_else(|e| panic!("{row}: {e:#}"));
                assert_eq!(refs.len(), 1, "{row}");
                refs[0].reference.clone()
            } else {
                // A constant in Go source: the quoted reference alone.
                let quoted = line.split('"').nth(1).expect("a quoted reference");
                ImageRef::parse(quoted).unwrap_or_else(|e| panic!("{row}: {e:#}"))
            };
            let digest = reference.digest_hex().unwrap();
            assert!(line.contains(digest), "{row}");
            assert!(line.contains(reference.name()), "{row}");
            assert!(reference.repository.contains("stagex/"), "{row}");
            checked += 1;
        }
        assert!(checked > 100, "only {checked} rows");
    }
}
