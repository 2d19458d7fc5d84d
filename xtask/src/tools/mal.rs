//! malcontent (`mal`): suspicious behaviour in an extracted filesystem. Its
//! exit status does not reflect what it found: the gate is ours.

use std::path::Path;

use super::process::Cmd;

/// `mal --format json analyze <dir>` (the JSON on stdout).
pub fn analyze(dir: &Path) -> Cmd {
    let mut command = Cmd::new("mal");
    command.args(["--format", "json", "analyze"]).arg(dir);
    command
}
