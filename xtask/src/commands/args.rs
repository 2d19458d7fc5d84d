//! Argument groups that mean the same in every subcommand that takes them.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;

use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::pgp::lookaside::Lookaside;
use crate::pgp::verify::Keyring;

/// `[IMAGE…|--all]`: naming no image means every image, as `--all` does.
#[derive(Debug, Args, Clone, Default)]
pub struct ImageArgs {
    /// Images by directory name (default: every image).
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Every image (the same as naming none).
    #[arg(long, conflicts_with = "images")]
    pub all: bool,
}

impl ImageArgs {
    /// The names to select; empty selects every image.
    pub fn names(&self) -> &[String] {
        if self.all {
            &[]
        } else {
            &self.images
        }
    }

    /// The selected images' names, in the catalog's order; an unknown name
    /// is a usage error.
    pub fn select(&self, catalog: &Catalog) -> Result<Vec<String>> {
        Ok(catalog
            .select(self.names())?
            .iter()
            .map(|image| image.name.clone())
            .collect())
    }
}

/// Where StageX images are pulled from and which BuildKit builds.
#[derive(Debug, Args, Clone, Default)]
pub struct EngineArgs {
    /// Pull StageX images through this prefix instead of the Containerfiles'
    /// default (e.g. `registry.internal/stagex`, a mirror).
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
    /// A buildx builder (`docker buildx create …`): remote or Kubernetes BuildKit.
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
}

/// How many images are worked on at once.
#[derive(Debug, Args, Clone, Default)]
pub struct JobsArg {
    /// How many at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

impl JobsArg {
    pub fn get(&self) -> usize {
        self.jobs.unwrap_or_else(default_jobs).max(1)
    }
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// `--json PATH|-`: the command's one versioned report document
/// ([`crate::report::Document`]), to a file (missing folders are created;
/// written atomically) or to stdout (`-`).
#[derive(Debug, Args, Clone, Default)]
pub struct JsonArg {
    /// Also write the report document (`xtask/<command>/v1`, schema in docs/schemas/) to PATH, `-` for stdout; missing folders are created.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

impl JsonArg {
    /// Write `command`'s document (its step rows and its result) when
    /// `--json` was given.
    pub fn write<T: Serialize>(
        &self,
        command: &str,
        steps: &[crate::report::StepReport],
        result: &T,
    ) -> Result<()> {
        match &self.json {
            Some(path) => crate::files::write_json(
                path,
                &crate::report::Document::new(command, steps.to_vec(), result),
            ),
            None => Ok(()),
        }
    }

    /// Whether the document goes to stdout (people's output then stays on stderr).
    pub fn to_stdout(&self) -> bool {
        self.json.as_deref() == Some(std::path::Path::new("-"))
    }
}

/// Where signatures and keys come from, shared with `mirror`.
#[derive(Debug, Args, Clone)]
pub struct TrustArgs {
    /// Signature store: https://…, file://… or http://… on loopback (default: StageX's; a CI runner's own copy via XTASK_LOOKASIDE).
    #[arg(long, value_name = "URL", env = "XTASK_LOOKASIDE")]
    pub lookaside: Option<String>,
    /// Accept a plain http:// signature store off loopback (printed when used).
    #[arg(long)]
    pub insecure_lookaside: bool,
    /// Folder of maintainer public keys (default: keys/).
    #[arg(long, value_name = "DIR", env = "XTASK_KEYRING")]
    pub keyring: Option<String>,
    /// Distinct maintainer keys that must have signed (default: StageX's rule).
    #[arg(long, value_name = "N")]
    pub threshold: Option<usize>,
}

impl TrustArgs {
    pub fn lookaside(&self) -> &str {
        // An empty XTASK_LOOKASIDE (a runner config's blank) is unset.
        self.lookaside
            .as_deref()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or(settings::UPSTREAM_LOOKASIDE)
    }

    pub fn lookaside_store(&self) -> Result<Lookaside> {
        Lookaside::new(self.lookaside(), self.insecure_lookaside)
    }

    pub fn keyring(&self, root: &std::path::Path) -> Result<Keyring> {
        // An empty XTASK_KEYRING (a runner config's blank) is unset.
        let dir = self
            .keyring
            .as_deref()
            .filter(|dir| !dir.trim().is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join(settings::KEYS_DIR));
        let keyring = Keyring::load(&dir)?;
        for note in &keyring.notes {
            crate::ui::say!("note: {note}");
        }
        Ok(keyring)
    }

    pub fn threshold(&self) -> Result<usize> {
        let threshold = self.threshold.unwrap_or(settings::SIGNATURE_THRESHOLD);
        if threshold == 0 {
            bail!("--threshold 0 would accept unsigned images: use 1 or more");
        }
        Ok(threshold)
    }
}
