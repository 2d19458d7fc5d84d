//! `cargo xtask demo`: the whole pipeline on this machine, offline. Stand-in
//! "StageX" images go into the test registry, a checkout shaped like ours pins
//! them, and `all`'s pipeline runs on it, pushing to the test registry.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::standins;
use super::test_env::{self, Layout};
use crate::commands::all::{run_pipeline, PipelineOptions};
use crate::commands::args::{default_jobs, JsonArg};
use crate::commands::signing::{KeyArgs, PUBLIC_KEY};
use crate::pipeline::Step;
use crate::report::{self, Outcome};
use crate::tools::cosign;
use crate::tools::Status;

/// The whole pipeline offline, on stand-in StageX images in the test registry.
#[derive(Debug, Args)]
pub struct Demo {
    /// Work folder: stand-ins and the fixture checkout (default: target/demo).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    json: JsonArg,
}

/// A fixed epoch: the demo's output does not depend on when it runs.
pub const DEMO_EPOCH: u64 = 1_700_000_000;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DemoReport {
    pub registry: String,
    pub images: Vec<DemoImage>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DemoImage {
    pub image: String,
    pub digest: String,
    pub archive: String,
    pub reproducible: bool,
    pub pushed: Option<String>,
    /// The manifest pulled back from the registry by digest, after the whole
    /// pipeline ran, is the archive's, byte for byte (false when not pushed).
    pub pulled_back_identical: bool,
    /// Its signature and SBOM attestations verified against cosign.pub.
    pub signed_and_verified: bool,
}

impl Demo {
    pub fn run(self, root: &Path) -> Result<()> {
        let dir = self.dir.clone().unwrap_or_else(|| root.join("target/demo"));
        let layout = Layout::for_root(root);
        test_env::up_for(&layout, test_env::Purpose::Pipeline)?;
        let prepared = standins::prepare(&layout, &dir)?;
        // grype and malcontent cannot be installed here: their gates are left
        // out, said so, and push ships without them (it warns per image).
        let skip: Vec<Step> = Step::GATES
            .iter()
            .copied()
            .filter(|step| step.skipped_without_its_tool())
            .filter(|step| {
                step.optional_tools()
                    .iter()
                    .any(|tool| tool.check(&prepared.env).status != Status::Ok)
            })
            .collect();
        for step in &skip {
            crate::ui::say!("demo: {step} is skipped, its tool is not installed");
        }
        // A throwaway key pair: what the demo pushes is signed and verified
        // like a release, against this checkout's cosign.pub.
        let keys = tempfile::tempdir()?;
        let password =
            crate::hash::hex_sha256(format!("{:?}", std::time::SystemTime::now()).as_bytes());
        let prefix = keys.path().join("cosign");
        let mut generate = cosign::generate_key_pair(&prefix);
        generate
            .envs(&prepared.env)
            .secret_env(cosign::PASSWORD_ENV, password.clone());
        generate.output()?;
        std::fs::copy(
            prefix.with_extension("pub"),
            prepared.checkout.join(PUBLIC_KEY),
        )?;
        // As `signing-key init` does: the admission policy embeds the key.
        crate::commands::k8s::ensure(&prepared.checkout, crate::files::Mode::Write)?;
        let options = PipelineOptions {
            skip,
            engine: Default::default(),
            epoch: Some(DEMO_EPOCH),
            jobs: default_jobs(),
            env: prepared.env.clone(),
            // A repository of this run's own: what earlier runs pushed (or
            // a test running beside this one) is never taken for this one's.
            push_prefix: Some(format!("{}/{}", prepared.registry, run_repository())),
            key: KeyArgs {
                key: Some(prefix.with_extension("key")),
                no_tlog: true,
                password: Some(password),
            },
            // The demo's gates without their tools are skipped; its throwaway
            // key signs anyway, and each record says which gates it lacked.
            sign_ungated: true,
            scan: Default::default(),
            fail_on_risk: crate::commands::malcontent::Risk::High,
        };
        let run = run_pipeline(&prepared.checkout, &options)?;
        let passed = |step: Step, image: &str| {
            run.reports
                .iter()
                .any(|r| r.step == step.name() && r.image == image && r.outcome == Outcome::Passed)
        };
        let mut images = Vec::new();
        for (name, record) in &run.built {
            let archive = prepared.checkout.join(&record.archive);
            let pushed = run
                .pushed
                .get(name)
                .map(|p| format!("{}@{}", p.repository, p.digest));
            let pulled_back_identical = match &pushed {
                Some(pinned) => pulled_back_identical(pinned, &archive)?,
                None => false,
            };
            images.push(DemoImage {
                image: name.clone(),
                digest: record.manifest_digest.clone(),
                archive: archive.display().to_string(),
                reproducible: passed(Step::VerifyReproducible, name),
                pushed,
                pulled_back_identical,
                signed_and_verified: passed(Step::Verify, name),
            });
        }
        anstream::eprint!("\n{}", report::coloured_table(&run.reports));
        for image in &images {
            crate::ui::say!(
                "{:<12} {}  reproducible={}  pushed={}  signed and verified={}",
                image.image,
                image.digest,
                image.reproducible,
                image.pushed.as_deref().unwrap_or("-"),
                image.signed_and_verified
            );
        }
        let demo = DemoReport {
            registry: prepared.registry.clone(),
            images,
        };
        self.json.write("demo", &run.reports, &demo)?;
        report::fail_if_any(&run.reports, "demo")
    }
}

/// `demo-<pid>-<seconds, hex>`: the demo's push repository, its own per run.
fn run_repository() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    format!("demo-{}-{seconds:x}", std::process::id())
}

/// Whether the registry serves, for `pinned` (`repository@digest`), the
/// manifest bytes of the archive at `archive`: pulled back, not assumed.
pub fn pulled_back_identical(pinned: &str, archive: &Path) -> Result<bool> {
    use crate::oci::{archive::OciArchive, auth::Role, reference::ImageRef, registry};
    let archive = OciArchive::open(archive)?;
    let reference = ImageRef::parse(pinned)?;
    registry::block_on(async {
        let client = registry::Registry::connect_to(&reference, Role::Source).await?;
        let served = client.pull_manifest(&reference).await?;
        Ok(served.as_ref() == archive.manifest_bytes.as_slice())
    })?
}
