//! The provenance of one image, purely from its build record: an in-toto
//! Statement v1 whose predicate is SLSA provenance v1. Nothing here reads a
//! clock, a file or a process: the same record gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::commands::sbom::document::oci_purl;
use crate::model::settings;
use crate::oci::reference::ImageRef;
use crate::records::build::BuildRecord;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";

/// What each resolved dependency is, in its `annotations.kind`.
pub const KIND_STAGEX: &str = "stagex";
pub const KIND_SOURCE: &str = "source";
pub const KIND_IMAGE: &str = "image";
pub const KIND_CHECKOUT: &str = "checkout";

/// An in-toto Statement v1 about one image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Provenance,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// The SLSA provenance v1 predicate. Every value is a string, a boolean or
/// an object of them: cosign re-encodes the predicate it attests, and a
/// number could come back in another spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// What a person chose: the image, its Containerfile, the build arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalParameters {
    pub image: String,
    pub containerfile: FileDigest,
    /// `--build-arg`s as buildx received them.
    pub build_args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Relative to the checkout.
    pub path: String,
    pub sha256: String,
}

/// What the build platform set: the epoch, where StageX was pulled from,
/// the network, the engine and buildx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InternalParameters {
    /// Seconds, as a string.
    pub source_date_epoch: String,
    pub registry_prefix: String,
    pub network: bool,
    pub engine_version: String,
    pub buildx_version: String,
}

/// An in-toto ResourceDescriptor: `uri`, `digest`, `name`, and
/// `annotations.kind` (stagex, source, image, checkout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceDescriptor {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
}

impl ResourceDescriptor {
    pub fn kind(&self) -> &str {
        self.annotations
            .get("kind")
            .map(String::as_str)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: Metadata,
}

/// Empty, on purpose: no wall-clock times (two builds of one commit give
/// the same bytes), and no `invocationId`, which cosign 2.5 re-encodes as
/// `invocationID` (in-toto-golang's spelling), so the attested predicate
/// would no longer be this one. cosign writes `"metadata": {}` whatever it
/// is given; so do we, and the two stay equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    /// This repository's xtask at its version.
    pub id: String,
    pub version: BTreeMap<String, String>,
}

/// The builder id: this repository's xtask at `version`.
pub fn builder_id(version: &str) -> String {
    format!("{}/xtask@{version}", settings::SOURCE_REPOSITORY)
}

fn descriptor(uri: String, digest: (&str, &str), name: &str, kind: &str) -> ResourceDescriptor {
    ResourceDescriptor {
        uri,
        digest: BTreeMap::from([(digest.0.to_string(), digest.1.to_string())]),
        name: name.to_string(),
        annotations: BTreeMap::from([("kind".to_string(), kind.to_string())]),
    }
}

/// The statement for the image `record` describes, made by xtask `version`.
pub fn statement(record: &BuildRecord, version: &str) -> Result<Statement> {
    let Some(builder) = &record.builder else {
        bail!(
            "the build record of `{}` does not name the engine and buildx that built it (an older record): rebuild it with `cargo xtask build {}`",
            record.image,
            record.image
        );
    };
    let Some(hex) = record.manifest_digest.strip_prefix("sha256:") else {
        bail!(
            "the build record of `{}` has no sha256 manifest digest (`{}`)",
            record.image,
            record.manifest_digest
        );
    };
    let mut dependencies = Vec::new();
    for input in &record.stagex_inputs {
        let reference = ImageRef::parse(input)?;
        let Some(digest) = reference.digest.as_deref() else {
            bail!(
                "`{input}` in the build record of `{}` is not pinned by digest",
                record.image
            );
        };
        let purl = oci_purl(
            reference.name(),
            digest,
            Some(&reference.repository_url()),
            reference.tag.as_deref(),
        );
        let hex = digest.trim_start_matches("sha256:");
        dependencies.push(descriptor(purl, ("sha256", hex), input, KIND_STAGEX));
    }
    for source in &record.sources {
        dependencies.push(descriptor(
            format!("git+{}@refs/tags/{}", source.git, source.tag),
            ("gitCommit", &source.commit),
            &source.context,
            KIND_SOURCE,
        ));
    }
    for base in &record.built_on {
        let hex = base.manifest_digest.trim_start_matches("sha256:");
        dependencies.push(descriptor(
            oci_purl(&base.image, &base.manifest_digest, None, None),
            ("sha256", hex),
            &base.image,
            KIND_IMAGE,
        ));
    }
    if let Some(commit) = &record.checkout_commit {
        dependencies.push(descriptor(
            format!("git+{}", settings::SOURCE_REPOSITORY),
            ("gitCommit", commit),
            "checkout",
            KIND_CHECKOUT,
        ));
    }
    let mut build_args = BTreeMap::from([(
        "SOURCE_DATE_EPOCH".to_string(),
        record.source_date_epoch.to_string(),
    )]);
    if record.registry_prefix != settings::UPSTREAM_PREFIX {
        build_args.insert(
            settings::REGISTRY_ARG.to_string(),
            record.registry_prefix.clone(),
        );
    }
    Ok(Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: record.image.clone(),
            digest: BTreeMap::from([("sha256".to_string(), hex.to_string())]),
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: settings::PROVENANCE_BUILD_TYPE.into(),
                external_parameters: ExternalParameters {
                    image: record.image.clone(),
                    containerfile: FileDigest {
                        path: record.containerfile.clone(),
                        sha256: record.containerfile_sha256.clone(),
                    },
                    build_args,
                },
                internal_parameters: InternalParameters {
                    source_date_epoch: record.source_date_epoch.to_string(),
                    registry_prefix: record.registry_prefix.clone(),
                    network: record.network,
                    engine_version: builder.engine.clone(),
                    buildx_version: builder.buildx.clone(),
                },
                resolved_dependencies: dependencies,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: builder_id(version),
                    version: BTreeMap::from([("xtask".to_string(), version.to_string())]),
                },
                metadata: Metadata {},
            },
        },
    })
}

/// The bytes of `provenance.json`: pretty JSON, fields in their fixed
/// order, maps sorted, one trailing newline.
pub fn render(statement: &Statement) -> Result<String> {
    let mut text = serde_json::to_string_pretty(statement)?;
    text.push('\n');
    Ok(text)
}

impl Statement {
    /// The subject's `sha256:<hex>`, when it has exactly one subject.
    pub fn subject_digest(&self) -> Option<String> {
        match self.subject.as_slice() {
            [one] => one.digest.get("sha256").map(|hex| format!("sha256:{hex}")),
            _ => None,
        }
    }

    /// The sha256 digests of the StageX images it names.
    pub fn stagex_digests(&self) -> BTreeSet<String> {
        self.dependencies(KIND_STAGEX)
            .filter_map(|d| d.digest.get("sha256"))
            .map(|hex| format!("sha256:{hex}"))
            .collect()
    }

    pub fn dependencies<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a ResourceDescriptor> + 'a {
        self.predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .filter(move |d| d.kind() == kind)
    }

    /// Refuse what is not ours to rebuild: another statement or predicate
    /// type, another build type, no single sha256 subject.
    pub fn check_ours(&self) -> Result<()> {
        if self.statement_type != STATEMENT_TYPE {
            bail!(
                "its `_type` is `{}`, not {STATEMENT_TYPE}",
                self.statement_type
            );
        }
        if self.predicate_type != PREDICATE_TYPE {
            bail!(
                "its predicateType is `{}`, not {PREDICATE_TYPE}",
                self.predicate_type
            );
        }
        let build_type = &self.predicate.build_definition.build_type;
        if build_type != settings::PROVENANCE_BUILD_TYPE {
            bail!(
                "its buildType is `{build_type}`, not ours ({}): it describes a build this tool cannot repeat",
                settings::PROVENANCE_BUILD_TYPE
            );
        }
        if self.subject_digest().is_none() {
            bail!("it has no single sha256 subject");
        }
        Ok(())
    }
}

/// Whether the StageX digests a provenance names are exactly the ones the
/// image's Containerfile pins: `Ok` or what differs.
pub fn compare_pins(named: &BTreeSet<String>, pinned: &BTreeSet<String>) -> Result<(), String> {
    if named == pinned {
        return Ok(());
    }
    let missing: Vec<&String> = pinned.difference(named).collect();
    let extra: Vec<&String> = named.difference(pinned).collect();
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!(
            "the Containerfile pins {} it does not name",
            missing
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !extra.is_empty() {
        why.push(format!(
            "it names {} the Containerfile does not pin",
            extra
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Err(why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::build::{BuilderVersions, BuiltOn, SourceInput};

    fn record() -> BuildRecord {
        let mut record = BuildRecord::example("forgejo-runner", &"a".repeat(64));
        record.manifest_digest = format!("sha256:{}", "1".repeat(64));
        record.containerfile_sha256 = "c".repeat(64);
        record.source_date_epoch = 1_700_000_000;
        record.stagex_inputs = vec![format!("stagex/core-musl:1.2.5@sha256:{}", "2".repeat(64))];
        record.built_on = vec![BuiltOn {
            image: "base".into(),
            manifest_digest: format!("sha256:{}", "3".repeat(64)),
        }];
        record.sources = vec![SourceInput {
            context: "forgejo-runner-src".into(),
            git: "https://code.forgejo.org/forgejo/runner".into(),
            tag: "v12.6.2".into(),
            commit: "4".repeat(40),
        }];
        record.builder = Some(BuilderVersions {
            engine: "28.5.2".into(),
            buildx: "0.13.1".into(),
        });
        record.checkout_commit = Some("5".repeat(40));
        record
    }

    #[test]
    fn a_statement_from_a_record() {
        let statement = statement(&record(), "0.1.0").unwrap();
        statement.check_ours().unwrap();
        assert_eq!(
            statement.subject_digest().unwrap(),
            format!("sha256:{}", "1".repeat(64))
        );
        assert_eq!(
            statement.stagex_digests(),
            BTreeSet::from([format!("sha256:{}", "2".repeat(64))])
        );
        insta::assert_snapshot!(render(&statement).unwrap());
    }

    #[test]
    fn the_same_record_gives_the_same_bytes_and_another_epoch_others() {
        let once = render(&statement(&record(), "0.1.0").unwrap()).unwrap();
        assert_eq!(
            once,
            render(&statement(&record(), "0.1.0").unwrap()).unwrap()
        );
        let mut later = record();
        later.source_date_epoch += 1;
        assert_ne!(once, render(&statement(&later, "0.1.0").unwrap()).unwrap());
        // And it reads back as what was written.
        let back: Statement = serde_json::from_str(&once).unwrap();
        assert_eq!(back, statement(&record(), "0.1.0").unwrap());
    }

    #[test]
    fn a_mirror_is_a_build_argument_and_an_old_record_is_refused() {
        let mut mirrored = record();
        mirrored.registry_prefix = "registry.internal/stagex".into();
        let statement = statement(&mirrored, "0.1.0").unwrap();
        let args = &statement
            .predicate
            .build_definition
            .external_parameters
            .build_args;
        assert_eq!(args["STAGEX_REGISTRY"], "registry.internal/stagex");
        let mut old = record();
        old.builder = None;
        let error = super::statement(&old, "0.1.0").unwrap_err().to_string();
        assert!(
            error.contains("cargo xtask build forgejo-runner"),
            "{error}"
        );
    }

    #[test]
    fn foreign_statements_are_refused() {
        let mut other = statement(&record(), "0.1.0").unwrap();
        other.predicate.build_definition.build_type = "https://example.com/other".into();
        assert!(other
            .check_ours()
            .unwrap_err()
            .to_string()
            .contains("not ours"));
        let mut two = statement(&record(), "0.1.0").unwrap();
        two.subject.push(two.subject[0].clone());
        assert!(two.check_ours().is_err());
        // Unknown fields are refused, not ignored.
        let mut value = serde_json::to_value(statement(&record(), "0.1.0").unwrap()).unwrap();
        value["predicate"]["runDetails"]["metadata"] =
            serde_json::json!({"startedOn": "2026-01-01T00:00:00Z"});
        assert!(serde_json::from_value::<Statement>(value).is_err());
    }

    #[test]
    fn pins_compare_as_sets() {
        let a = BTreeSet::from(["sha256:a".to_string()]);
        let b = BTreeSet::from(["sha256:b".to_string()]);
        assert!(compare_pins(&a, &a).is_ok());
        let why = compare_pins(&a, &b).unwrap_err();
        assert_eq!(
            why,
            "the Containerfile pins sha256:b it does not name; it names sha256:a the Containerfile does not pin"
        );
    }
}
