//! grype: vulnerabilities of our own SBOM (its `sbom:` input), and of single
//! CPEs for the advisory pass. The database is used as it is found
//! (`GRYPE_DB_CACHE_DIR` passes through); it is not updated from a build.

use std::path::Path;

use super::process::Cmd;

fn grype() -> Cmd {
    let mut command = Cmd::new("grype");
    command
        .env("GRYPE_DB_AUTO_UPDATE", "false")
        .env("GRYPE_CHECK_FOR_APP_UPDATE", "false");
    command
}

/// `grype sbom:<sbom> -o json` (the JSON on stdout).
pub fn scan_sbom(sbom: &Path) -> Cmd {
    let mut command = grype();
    command
        .arg(format!("sbom:{}", sbom.display()))
        .args(["--output", "json", "--quiet"]);
    command
}

/// `grype <cpe> -o json`: what grype knows about one CPE.
pub fn scan_cpe(cpe: &str) -> Cmd {
    let mut command = grype();
    command.arg(cpe).args(["--output", "json", "--quiet"]);
    command
}
