//! `cargo xtask lint`: supply-chain rules over every Containerfile.

use std::fmt;

use anyhow::Result;
use clap::Args;
use xshell::Shell;

use crate::catalog::{Catalog, Image, InputKind};
use crate::containerfile::CommandForm;
use crate::release::Release;
use crate::settings;

/// Check every Containerfile: pinned StageX digests from the release, exec-form RUN, …
#[derive(Debug, Args)]
pub struct Lint {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `base-go/Containerfile:4`
    pub location: String,
    pub rule: &'static str,
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
    pub fn run(self, sh: &Shell) -> Result<()> {
        let root = sh.current_dir();
        let catalog = Catalog::load(&root)?;
        let release = Release::load(&root, settings::STAGEX_RELEASE)?;
        let findings = check(&catalog, &release);
        for finding in &findings {
            eprintln!("{finding}");
        }
        if findings.is_empty() {
            eprintln!(
                "lint: {} Containerfiles follow every rule (StageX release {})",
                catalog.images.len(),
                release.name
            );
            Ok(())
        } else {
            Err(crate::Failure(format!("lint: {} finding(s)", findings.len())).into())
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

fn check_image(image: &Image, release: &Release) -> Vec<Finding> {
    let path = image.containerfile_path();
    let at = |line: usize| format!("{path}:{line}");
    let mut findings = Vec::new();
    let file = &image.containerfile;

    if let Some((line, syntax)) = &file.syntax {
        if !syntax.contains("@sha256:") {
            findings.push(Finding {
                location: at(*line),
                rule: "unpinned-frontend",
                message: format!("`# syntax={syntax}` makes BuildKit pull a frontend image by tag at build time"),
                fix: "delete the line (the built-in frontend is enough) or pin it `# syntax=docker/dockerfile:1@sha256:<digest>`".into(),
            });
        }
    }

    if !file.declares_arg("SOURCE_DATE_EPOCH") {
        findings.push(Finding {
            location: at(1),
            rule: "missing-source-date-epoch",
            message: "`SOURCE_DATE_EPOCH` is not declared, so RUN steps cannot see the build's fixed timestamp".into(),
            fix: "add `ARG SOURCE_DATE_EPOCH` in each stage that runs commands (or before the first FROM)".into(),
        });
    }

    for input in &image.inputs {
        let reference = &input.reference;
        match &input.kind {
            InputKind::Ours { .. } => {}
            InputKind::Context { name } => {
                let declared_for = settings::BUILD_CONTEXTS
                    .iter()
                    .find(|context| context.name == name)
                    .map(|context| context.image);
                if declared_for != Some(image.name.as_str()) {
                    findings.push(Finding {
                        location: at(input.line),
                        rule: "foreign-build-context",
                        message: format!(
                            "build context `{name}` is declared for image `{}`, not `{}`",
                            declared_for.unwrap_or("?"),
                            image.name
                        ),
                        fix: "declare a build context for this image in BUILD_CONTEXTS (xtask/src/settings.rs)".into(),
                    });
                }
            }
            InputKind::Other => findings.push(Finding {
                location: at(input.line),
                rule: "not-stagex",
                message: format!("{} `{}` is not a StageX image", input.context, input.written),
                fix: format!(
                    "build from StageX packages (`${{{}}}/<package>:<version>@sha256:<digest>`) or from one of this repository's images by its directory name",
                    settings::REGISTRY_ARG
                ),
            }),
            InputKind::Stagex { package } => {
                let expected = release.package(package);
                let suggestion = expected
                    .map(|p| format!("write `{}`", p.pinned(&format!("${{{}}}", settings::REGISTRY_ARG))))
                    .unwrap_or_else(|| {
                        format!(
                            "use a package from StageX release {} (see stagex-release/{}/digests/)",
                            release.name, release.name
                        )
                    });
                if reference.tag.as_deref() == Some("latest") {
                    findings.push(Finding {
                        location: at(input.line),
                        rule: "latest-tag",
                        message: format!("`{}` uses the moving tag `latest`", input.written),
                        fix: suggestion.clone(),
                    });
                }
                let Some(expected) = expected else {
                    findings.push(Finding {
                        location: at(input.line),
                        rule: "unknown-package",
                        message: format!(
                            "`{package}` is not a package of StageX release {}",
                            release.name
                        ),
                        fix: suggestion,
                    });
                    continue;
                };
                match reference.digest_hex() {
                    None => findings.push(Finding {
                        location: at(input.line),
                        rule: "unpinned",
                        message: format!("`{}` is not pinned by digest", input.written),
                        fix: suggestion.clone(),
                    }),
                    Some(digest) if digest != expected.digest => findings.push(Finding {
                        location: at(input.line),
                        rule: "digest-not-in-release",
                        message: format!(
                            "digest sha256:{digest} of `{package}` is not the one in StageX release {} (sha256:{})",
                            release.name, expected.digest
                        ),
                        fix: suggestion.clone(),
                    }),
                    Some(_) => {}
                }
                match (&reference.tag, &expected.version) {
                    (Some(tag), Some(version)) if tag != version && tag != "latest" => {
                        findings.push(Finding {
                            location: at(input.line),
                            rule: "version-mismatch",
                            message: format!(
                                "tag `{tag}` of `{package}` does not match release {} version `{version}`",
                                release.name
                            ),
                            fix: suggestion.clone(),
                        })
                    }
                    (None, Some(version)) => findings.push(Finding {
                        location: at(input.line),
                        rule: "missing-version-tag",
                        message: format!(
                            "`{package}` has no version tag: readers cannot tell which version is pinned (release {} has `{version}`)",
                            release.name
                        ),
                        fix: suggestion.clone(),
                    }),
                    _ => {}
                }
            }
        }
    }

    for instruction in &file.instructions {
        let location = at(instruction.line);
        match instruction.keyword.as_str() {
            "RUN" | "CMD" | "ENTRYPOINT" if instruction.command_form() == CommandForm::Shell => {
                findings.push(Finding {
                    location,
                    rule: "shell-form",
                    message: format!(
                        "{} runs through `/bin/sh -c`, which runtime images do not have and which hides word splitting",
                        instruction.keyword
                    ),
                    fix: format!(
                        "use exec form: {} [\"/path/to/program\", \"arg\", …]",
                        instruction.keyword
                    ),
                });
            }
            "ADD" => {
                let remote = instruction.args.split_whitespace().any(|word| {
                    word.starts_with("http://")
                        || word.starts_with("https://")
                        || word.starts_with("git@")
                        || word.ends_with(".git")
                });
                if remote {
                    findings.push(Finding {
                        location,
                        rule: "add-url",
                        message: "ADD fetches from the network at build time, unpinned and unverified".into(),
                        fix: "vendor the file into the build context (with its checksum checked in) and COPY it".into(),
                    });
                }
            }
            _ => {}
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MUSL_HEX: &str = "816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";
    const FILESYSTEM_HEX: &str = "cd3a66471ce1f630fa77d5c9bd9829f9f9fab6302a1aaa64d67b74f1f069b750";

    fn release() -> Release {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Release::load(root, settings::STAGEX_RELEASE).unwrap()
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
