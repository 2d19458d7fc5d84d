//! syft, for the SBOM a generic scanner makes of the same archive (beside
//! ours, to compare what it sees with what we know).

use std::path::Path;

use anyhow::Result;

use super::process::{Cmd, Env};

/// `syft scan oci-archive:<archive>` written as SPDX and CycloneDX JSON.
pub fn plan(archive: &Path, spdx: &Path, cyclonedx: &Path) -> Cmd {
    let mut command = Cmd::new("syft");
    command
        .arg("scan")
        .arg(format!("oci-archive:{}", archive.display()))
        .arg("--quiet")
        .arg("-o")
        .arg(format!("spdx-json={}", spdx.display()))
        .arg("-o")
        .arg(format!("cyclonedx-json={}", cyclonedx.display()))
        // Never phone home from a build.
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false");
    command
}

pub fn run(archive: &Path, spdx: &Path, cyclonedx: &Path, env: &Env) -> Result<()> {
    let mut command = plan(archive, spdx, cyclonedx);
    command.envs(env);
    command.output()?;
    Ok(())
}
