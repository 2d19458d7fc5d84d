//! `cargo xtask lint`: supply-chain rules over every Containerfile. Each rule
//! is a [`Rule`] with its id; each finding names the file, the line, the rule
//! and the fix.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::args::JsonArg;
use crate::error::fail;
use crate::model::catalog::{Catalog, Image, Input, InputKind};
use crate::model::containerfile::{CommandForm, Containerfile, Instruction};
use crate::model::facts::{self, Facts};
use crate::model::release::Release;
use crate::model::settings;

/// Check every Containerfile: pinned StageX digests from the release, exec-form RUN, …
#[derive(Debug, Args)]
pub struct Lint {
    #[command(flatten)]
    pub json: JsonArg,
}

/// The rules, each with the id findings carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// `# syntax=` pulls a frontend image by tag.
    UnpinnedFrontend,
    /// RUN steps cannot see the build's fixed timestamp.
    MissingSourceDateEpoch,
    /// A named build context used by an image it is not declared for.
    ForeignBuildContext,
    /// An image that is neither StageX nor ours.
    NotStagex,
    LatestTag,
    UnknownPackage,
    Unpinned,
    DigestNotInRelease,
    VersionMismatch,
    MissingVersionTag,
    /// RUN/CMD/ENTRYPOINT through `/bin/sh -c`.
    ShellForm,
    /// ADD from the network.
    AddUrl,
    /// A pinned package with no record in the package facts.
    MissingFacts,
    /// A shipped ELF file needs a library nothing in the image provides.
    MissingLibrary,
    /// A shipped ELF file's dynamic linker is not in the image.
    MissingInterpreter,
}

impl Rule {
    /// Every rule, in the order docs/lint-rules.md lists them (a unit test
    /// holds this list to the enum).
    pub const ALL: [Rule; 15] = [
        Rule::UnpinnedFrontend,
        Rule::MissingSourceDateEpoch,
        Rule::ForeignBuildContext,
        Rule::NotStagex,
        Rule::LatestTag,
        Rule::UnknownPackage,
        Rule::Unpinned,
        Rule::DigestNotInRelease,
        Rule::VersionMismatch,
        Rule::MissingVersionTag,
        Rule::ShellForm,
        Rule::AddUrl,
        Rule::MissingFacts,
        Rule::MissingLibrary,
        Rule::MissingInterpreter,
    ];

    /// What the rule finds, for docs/lint-rules.md (`cargo xtask docs`).
    pub fn doc(self) -> &'static str {
        match self {
            Rule::UnpinnedFrontend => "a `# syntax=` line naming a frontend image by tag: BuildKit would pull it at build time, unpinned",
            Rule::MissingSourceDateEpoch => "a Containerfile that does not declare `ARG SOURCE_DATE_EPOCH`, so its RUN steps cannot see the build's fixed timestamp",
            Rule::ForeignBuildContext => "a named build context used by an image it is not declared for (`BUILD_CONTEXTS` in `xtask/src/model/settings.rs`)",
            Rule::NotStagex => "a `FROM` or `COPY --from` image that is neither a StageX package nor one of this repository's images",
            Rule::LatestTag => "a StageX image by the moving tag `latest`",
            Rule::UnknownPackage => "a StageX package that the pinned release does not list",
            Rule::Unpinned => "a StageX image not pinned by digest",
            Rule::DigestNotInRelease => "a StageX digest other than the one the pinned release lists for that package",
            Rule::VersionMismatch => "a StageX tag other than the release's version of that package",
            Rule::MissingVersionTag => "a StageX pin without the version tag the release has for it (readers cannot tell which version is pinned)",
            Rule::ShellForm => "`RUN`, `CMD` or `ENTRYPOINT` in shell form: it needs `/bin/sh -c`, which runtime images do not have",
            Rule::AddUrl => "`ADD` from a URL or git repository: fetched at build time, unpinned and unverified",
            Rule::MissingFacts => "a pinned package with no record in the package facts, so what the image ships cannot be checked",
            Rule::MissingLibrary => "an ELF file the image ships that needs a library nothing copied into the image provides (the pinned package that would is named)",
            Rule::MissingInterpreter => "an ELF file the image ships whose dynamic linker is not in the image",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Rule::UnpinnedFrontend => "unpinned-frontend",
            Rule::MissingSourceDateEpoch => "missing-source-date-epoch",
            Rule::ForeignBuildContext => "foreign-build-context",
            Rule::NotStagex => "not-stagex",
            Rule::LatestTag => "latest-tag",
            Rule::UnknownPackage => "unknown-package",
            Rule::Unpinned => "unpinned",
            Rule::DigestNotInRelease => "digest-not-in-release",
            Rule::VersionMismatch => "version-mismatch",
            Rule::MissingVersionTag => "missing-version-tag",
            Rule::ShellForm => "shell-form",
            Rule::AddUrl => "add-url",
            Rule::MissingFacts => "missing-facts",
            Rule::MissingLibrary => "missing-library",
            Rule::MissingInterpreter => "missing-interpreter",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// `base-go/Containerfile:4`
    pub location: String,
    pub rule: Rule,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}\n    fix: {}",
            self.location, self.rule, self.message, self.fix
        )
    }
}

impl Lint {
    pub fn run(self, root: &Path) -> Result<()> {
        let linted = lint_repository(root)?;
        self.json.write("lint", &[], &linted.findings)?;
        linted.verdict()
    }
}

/// The findings over a whole checkout, each already printed.
pub struct Linted {
    pub findings: Vec<Finding>,
    pub images: usize,
    pub release: String,
}

pub fn lint_repository(root: &Path) -> Result<Linted> {
    let catalog = Catalog::load(root)?;
    let release = Release::current(root)?;
    let mut findings = check(&catalog, &release);
    // What the images ship, from the package facts (closure.rs).
    match Facts::current(root)? {
        Some(facts) => {
            let closure = super::closure::check(&catalog, &release, &facts);
            findings.extend(closure.findings);
            for note in closure.notes {
                crate::ui::say!("note: {note}");
            }
        }
        None => findings.push(Finding {
            location: format!("stagex-release/{}/{}", release.name, facts::FILE),
            rule: Rule::MissingFacts,
            message: "no package facts: what the images ship cannot be checked".into(),
            fix: "record the pinned packages' files (see stagex-release/README.md)".into(),
        }),
    }
    for finding in &findings {
        crate::ui::say!("{finding}");
    }
    Ok(Linted {
        findings,
        images: catalog.images.len(),
        release: release.name,
    })
}

impl Linted {
    /// Passed, or a failure (exit 1) counting the findings.
    pub fn verdict(&self) -> Result<()> {
        if self.findings.is_empty() {
            crate::ui::say!(
                "lint: {} Containerfiles follow every rule (StageX release {})",
                self.images,
                self.release
            );
            Ok(())
        } else {
            fail(format!("lint: {} finding(s)", self.findings.len()))
        }
    }
}

pub fn check(catalog: &Catalog, release: &Release) -> Vec<Finding> {
    catalog
        .images
        .iter()
        .flat_map(|image| check_image(image, release))
        .collect()
}

/// Findings about one image, in file order per kind of rule.
fn check_image(image: &Image, release: &Release) -> Vec<Finding> {
    let at = Locator {
        path: image.containerfile_path(),
    };
    let mut findings = check_directives(&image.containerfile, &at);
    for input in &image.inputs {
        findings.extend(check_input(image, input, release, &at));
    }
    for instruction in &image.containerfile.instructions {
        findings.extend(check_instruction(instruction, &at));
    }
    findings
}

/// Makes findings at lines of one file.
struct Locator {
    path: String,
}

impl Locator {
    fn finding(&self, line: usize, rule: Rule, message: String, fix: String) -> Finding {
        Finding {
            location: format!("{}:{line}", self.path),
            rule,
            message,
            fix,
        }
    }
}

fn check_directives(file: &Containerfile, at: &Locator) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some((line, syntax)) = &file.syntax {
        if !syntax.contains("@sha256:") {
            findings.push(at.finding(
                *line,
                Rule::UnpinnedFrontend,
                format!("`# syntax={syntax}` makes BuildKit pull a frontend image by tag at build time"),
                "delete the line (the built-in frontend is enough) or pin it `# syntax=docker/dockerfile:1@sha256:<digest>`".into(),
            ));
        }
    }
    if !file.declares_arg("SOURCE_DATE_EPOCH") {
        findings.push(at.finding(
            1,
            Rule::MissingSourceDateEpoch,
            "`SOURCE_DATE_EPOCH` is not declared, so RUN steps cannot see the build's fixed timestamp".into(),
            "add `ARG SOURCE_DATE_EPOCH` in each stage that runs commands (or before the first FROM)".into(),
        ));
    }
    findings
}

fn check_input(image: &Image, input: &Input, release: &Release, at: &Locator) -> Vec<Finding> {
    match &input.kind {
        InputKind::Ours { .. } => Vec::new(),
        InputKind::Context { name } => check_context(image, input, name, at),
        InputKind::Other => vec![at.finding(
            input.line,
            Rule::NotStagex,
            format!("{} `{}` is not a StageX image", input.context, input.written),
            format!(
                "build from StageX packages (`${{{}}}/<package>:<version>@sha256:<digest>`) or from one of this repository's images by its directory name",
                settings::REGISTRY_ARG
            ),
        )],
        InputKind::Stagex { package } => check_stagex(input, package, release, at),
    }
}

/// A source build context belongs to the one image it is declared for.
fn check_context(image: &Image, input: &Input, name: &str, at: &Locator) -> Vec<Finding> {
    let declared_for = settings::BUILD_CONTEXTS
        .iter()
        .find(|context| context.name == name)
        .map(|context| context.image);
    if declared_for == Some(image.name.as_str()) {
        return Vec::new();
    }
    vec![at.finding(
        input.line,
        Rule::ForeignBuildContext,
        format!(
            "build context `{name}` is declared for image `{}`, not `{}`",
            declared_for.unwrap_or("?"),
            image.name
        ),
        "declare a build context for this image in BUILD_CONTEXTS (xtask/src/model/settings.rs)"
            .into(),
    )]
}

/// A StageX input is pinned by the release's digest and carries its version tag.
fn check_stagex(input: &Input, package: &str, release: &Release, at: &Locator) -> Vec<Finding> {
    let reference = &input.reference;
    let expected = release.package(package);
    let fix = match expected {
        Some(p) => format!(
            "write `{}`",
            p.pinned(&format!("${{{}}}", settings::REGISTRY_ARG))
        ),
        None => format!(
            "use a package from StageX release {} (see stagex-release/{}/digests/)",
            release.name, release.name
        ),
    };
    let mut findings = Vec::new();
    let mut add = |rule: Rule, message: String| {
        findings.push(at.finding(input.line, rule, message, fix.clone()))
    };
    if reference.tag.as_deref() == Some("latest") {
        add(
            Rule::LatestTag,
            format!("`{}` uses the moving tag `latest`", input.written),
        );
    }
    let Some(expected) = expected else {
        add(
            Rule::UnknownPackage,
            format!(
                "`{package}` is not a package of StageX release {}",
                release.name
            ),
        );
        return findings;
    };
    match reference.digest_hex() {
        None => add(
            Rule::Unpinned,
            format!("`{}` is not pinned by digest", input.written),
        ),
        Some(digest) if digest != expected.digest => add(
            Rule::DigestNotInRelease,
            format!(
                "digest sha256:{digest} of `{package}` is not the one in StageX release {} (sha256:{})",
                release.name, expected.digest
            ),
        ),
        Some(_) => {}
    }
    match (&reference.tag, &expected.version) {
        (Some(tag), Some(version)) if tag != version && tag != "latest" => add(
            Rule::VersionMismatch,
            format!(
                "tag `{tag}` of `{package}` does not match release {} version `{version}`",
                release.name
            ),
        ),
        (None, Some(version)) => add(
            Rule::MissingVersionTag,
            format!(
                "`{package}` has no version tag: readers cannot tell which version is pinned (release {} has `{version}`)",
                release.name
            ),
        ),
        _ => {}
    }
    findings
}

fn check_instruction(instruction: &Instruction, at: &Locator) -> Option<Finding> {
    match instruction.keyword.as_str() {
        "RUN" | "CMD" | "ENTRYPOINT" if instruction.command_form() == CommandForm::Shell => {
            Some(at.finding(
                instruction.line,
                Rule::ShellForm,
                format!(
                    "{} runs through `/bin/sh -c`, which runtime images do not have and which hides word splitting",
                    instruction.keyword
                ),
                format!(
                    "use exec form: {} [\"/path/to/program\", \"arg\", …]",
                    instruction.keyword
                ),
            ))
        }
        "ADD" => {
            let remote = instruction.args.split_whitespace().any(|word| {
                word.starts_with("http://")
                    || word.starts_with("https://")
                    || word.starts_with("git@")
                    || word.ends_with(".git")
            });
            remote.then(|| {
                at.finding(
                    instruction.line,
                    Rule::AddUrl,
                    "ADD fetches from the network at build time, unpinned and unverified".into(),
                    "vendor the file into the build context (with its checksum checked in) and COPY it".into(),
                )
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `Rule::ALL` names every variant of the enum, in its order, so
    /// docs/lint-rules.md lists a new rule as soon as it exists.
    #[test]
    fn every_rule_is_in_the_rule_list() {
        let source = include_str!("lint.rs");
        let body = source
            .split("pub enum Rule {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .unwrap();
        let variants: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("//") && line.ends_with(','))
            .map(|line| line.trim_end_matches(','))
            .collect();
        let listed: Vec<String> = Rule::ALL.iter().map(|rule| format!("{rule:?}")).collect();
        assert_eq!(listed, variants);
    }

    const MUSL_HEX: &str = "816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";
    const FILESYSTEM_HEX: &str = "cd3a66471ce1f630fa77d5c9bd9829f9f9fab6302a1aaa64d67b74f1f069b750";

    fn release() -> Release {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Release::current(root).unwrap()
    }

    fn lint(text: &str) -> Vec<String> {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("img")).unwrap();
        std::fs::write(root.path().join("img/Containerfile"), text).unwrap();
        let catalog = Catalog::load(root.path()).unwrap();
        check(&catalog, &release())
            .iter()
            .map(|f| format!("{} {}", f.location, f.rule))
            .collect()
    }

    #[test]
    fn a_clean_file_has_no_findings() {
        let text = format!(
            "ARG STAGEX_REGISTRY=stagex\nARG SOURCE_DATE_EPOCH\nFROM ${{STAGEX_REGISTRY}}/core-musl:1.2.5@sha256:{MUSL_HEX} AS musl\nFROM ${{STAGEX_REGISTRY}}/core-filesystem@sha256:{FILESYSTEM_HEX}\nCOPY --from=musl . /\nENTRYPOINT [\"/bin/app\"]\n"
        );
        assert_eq!(lint(&text), Vec::<String>::new());
    }

    #[test]
    fn each_rule_names_file_and_line() {
        let other_hex = "0".repeat(64);
        let text = format!(
            "# syntax=docker/dockerfile:1\nFROM stagex/core-musl:1.2.5@sha256:{other_hex} AS a\nFROM stagex/core-musl:latest AS b\nFROM stagex/core-musl:9.9@sha256:{MUSL_HEX} AS c\nFROM stagex/core-musl@sha256:{MUSL_HEX} AS d\nFROM stagex/core-nope@sha256:{MUSL_HEX} AS e\nFROM debian:bookworm\nRUN apt-get update\nADD https://example.com/x.tgz /x\nCMD [\"ok\"]\nENTRYPOINT app\n"
        );
        assert_eq!(
            lint(&text),
            [
                "img/Containerfile:1 unpinned-frontend",
                "img/Containerfile:1 missing-source-date-epoch",
                "img/Containerfile:2 digest-not-in-release",
                "img/Containerfile:3 latest-tag",
                "img/Containerfile:3 unpinned",
                "img/Containerfile:4 version-mismatch",
                "img/Containerfile:5 missing-version-tag",
                "img/Containerfile:6 unknown-package",
                "img/Containerfile:7 not-stagex",
                "img/Containerfile:8 shell-form",
                "img/Containerfile:9 add-url",
                "img/Containerfile:11 shell-form",
            ]
        );
    }

    /// A source context used by another image than the one it is declared for.
    #[test]
    fn a_foreign_build_context_is_refused() {
        let context = &settings::BUILD_CONTEXTS[0];
        let text = format!(
            "ARG SOURCE_DATE_EPOCH\nFROM scratch\nCOPY --from={} . /src\n",
            context.name
        );
        assert_eq!(lint(&text), ["img/Containerfile:3 foreign-build-context"]);
        // Under the image it belongs to, the same line is fine.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(context.image);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Containerfile"), &text).unwrap();
        let catalog = Catalog::load(root.path()).unwrap();
        assert_eq!(check(&catalog, &release()), []);
    }

    #[test]
    fn the_fix_gives_the_release_reference() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("img")).unwrap();
        std::fs::write(
            root.path().join("img/Containerfile"),
            "ARG SOURCE_DATE_EPOCH\nFROM stagex/core-musl:1.2.5\n",
        )
        .unwrap();
        let catalog = Catalog::load(root.path()).unwrap();
        let findings = check(&catalog, &release());
        assert_eq!(findings.len(), 1);
        assert_eq!(
            findings[0].fix,
            format!("write `${{STAGEX_REGISTRY}}/core-musl:1.2.5@sha256:{MUSL_HEX}`")
        );
    }
}
