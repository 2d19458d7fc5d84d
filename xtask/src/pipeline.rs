//! The one list of pipeline steps, in order. `all` and `demo` run it, `--skip`
//! takes its names, and anything that needs to know what the pipeline does
//! (doctor's "needed by", later the generated workflows) reads it from here.

use clap::ValueEnum;
use serde::Serialize;

use crate::tools::Tool;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    ValueEnum,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Supply-chain rules over every Containerfile.
    Lint,
    /// DIGESTS.md is up to date.
    Digests,
    /// cpes.txt is up to date.
    Cpes,
    /// k8s/ and policies/ are what the settings and cosign.pub make.
    K8s,
    /// Every image built reproducibly into out/, with its build record.
    Build,
    /// Every built image built twice more and compared byte for byte.
    VerifyReproducible,
    /// Every built image's SBOM (ours, and syft's when installed).
    Sbom,
    /// Every image's SBOM scanned by grype, gated on severity.
    Scan,
    /// Every image's filesystem analysed by malcontent, gated on risk.
    Malcontent,
    /// Every built image pushed by digest (only with a push destination).
    Push,
    /// Every pushed digest signed, its SBOMs attested (cosign, the project's key).
    Sign,
    /// Every pushed digest's signature and attestations verified against cosign.pub.
    Verify,
}

impl Step {
    /// The pipeline, in the order it runs.
    pub const ALL: &'static [Step] = &[
        Step::Lint,
        Step::Digests,
        Step::Cpes,
        Step::K8s,
        Step::Build,
        Step::VerifyReproducible,
        Step::Sbom,
        Step::Scan,
        Step::Malcontent,
        Step::Push,
        Step::Sign,
        Step::Verify,
    ];

    /// The steps whose passing record an image needs before it ships.
    pub const GATES: &'static [Step] = &[Step::Sbom, Step::Scan, Step::Malcontent];

    pub fn name(self) -> &'static str {
        match self {
            Step::Lint => "lint",
            Step::Digests => "digests",
            Step::Cpes => "cpes",
            Step::K8s => "k8s",
            Step::Build => "build",
            Step::VerifyReproducible => "verify-reproducible",
            Step::Sbom => "sbom",
            Step::Scan => "scan",
            Step::Malcontent => "malcontent",
            Step::Push => "push",
            Step::Sign => "sign",
            Step::Verify => "verify",
        }
    }

    /// What must be on this machine for the step to run.
    pub fn tools(self) -> &'static [Tool] {
        match self {
            Step::Lint
            | Step::Digests
            | Step::Cpes
            | Step::K8s
            | Step::Sbom
            | Step::Scan
            | Step::Malcontent
            | Step::Push => &[],
            Step::Sign | Step::Verify => &[Tool::Cosign],
            Step::Build | Step::VerifyReproducible => &[
                Tool::DockerEngine,
                Tool::ContainerdStore,
                Tool::Buildx,
                Tool::Git,
            ],
        }
    }

    /// What the step uses when it is here: without it the step does less
    /// (sbom leaves syft's view out) or is skipped (scan, malcontent), and
    /// `all` says the run is incomplete.
    pub fn optional_tools(self) -> &'static [Tool] {
        match self {
            Step::Sbom => &[Tool::Syft],
            Step::Scan => &[Tool::Grype],
            Step::Malcontent => &[Tool::Mal],
            _ => &[],
        }
    }

    /// A step that cannot run without its optional tool.
    pub fn skipped_without_its_tool(self) -> bool {
        matches!(self, Step::Scan | Step::Malcontent)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every tool the given steps need, once each, in a stable order.
pub fn tools_for(steps: &[Step]) -> Vec<Tool> {
    let mut tools: Vec<Tool> = steps.iter().flat_map(|s| s.tools()).copied().collect();
    tools.sort();
    tools.dedup();
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `--skip` takes are the names reports carry.
    #[test]
    fn value_names_are_step_names() {
        for step in Step::ALL {
            let value = step.to_possible_value().unwrap();
            assert_eq!(value.get_name(), step.name());
        }
        assert_eq!(Step::ALL.len(), Step::value_variants().len());
    }

    #[test]
    fn tools_are_collected_once_each() {
        assert_eq!(
            tools_for(&[Step::Lint, Step::Build, Step::VerifyReproducible]),
            [
                Tool::DockerEngine,
                Tool::ContainerdStore,
                Tool::Buildx,
                Tool::Git
            ]
        );
    }
}
