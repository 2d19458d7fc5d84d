//! grype: vulnerabilities of our own SBOM (its `sbom:` input), and of single
//! CPEs for the advisory pass. The database is used as it is found
//! (`GRYPE_DB_CACHE_DIR` passes through); it is not updated from a build.
//! A database built longer ago than `GRYPE_DB_MAX_AGE_HOURS`
//! (`xtask/src/model/settings.rs`) fails the scan: grype refuses it, and the
//! scan step reports grype's error (refresh it with `grype db update`).

use std::path::Path;

use super::process::Cmd;

fn grype() -> Cmd {
    let mut command = Cmd::new("grype");
    command
        .env("GRYPE_DB_AUTO_UPDATE", "false")
        .env("GRYPE_CHECK_FOR_APP_UPDATE", "false")
        .env("GRYPE_DB_VALIDATE_AGE", "true")
        .env(
            "GRYPE_DB_MAX_ALLOWED_BUILT_AGE",
            format!("{}h", crate::model::settings::GRYPE_DB_MAX_AGE_HOURS),
        );
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
