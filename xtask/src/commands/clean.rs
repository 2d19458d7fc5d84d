//! `cargo xtask clean`: remove what the pipeline left in this checkout.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

/// Remove what commands left: out/ (archives, records, reports) and target/demo; with --test-env, also the stopped test services under target/test-env.
#[derive(Debug, Args)]
pub struct Clean {
    /// Also stop and remove the test services (`test-env down`, then target/test-env).
    #[arg(long)]
    pub test_env: bool,
}

/// The folders `clean` removes, relative to the root.
pub fn folders(test_env: bool) -> Vec<&'static str> {
    let mut folders = vec!["out", "target/demo"];
    if test_env {
        folders.push("target/test-env");
    }
    folders
}

impl Clean {
    /// `stop` stops the test services first (handed down: dev/ sits above commands/).
    pub fn run_with(self, root: &Path, stop: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.test_env {
            stop()?;
        }
        for folder in folders(self.test_env) {
            let path = root.join(folder);
            match std::fs::symlink_metadata(&path) {
                Ok(_) => {
                    std::fs::remove_dir_all(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                    crate::ui::say!("removed {folder}/");
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("reading {}", path.display()))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_only_what_commands_leave() {
        let root = tempfile::tempdir().unwrap();
        for folder in [
            "out/base",
            "target/demo/x",
            "target/debug",
            "target/test-env",
        ] {
            std::fs::create_dir_all(root.path().join(folder)).unwrap();
        }
        let mut stopped = false;
        Clean { test_env: false }
            .run_with(root.path(), || {
                stopped = true;
                Ok(())
            })
            .unwrap();
        assert!(!stopped);
        assert!(!root.path().join("out").exists());
        assert!(!root.path().join("target/demo").exists());
        assert!(root.path().join("target/debug").exists());
        assert!(root.path().join("target/test-env").exists());
        Clean { test_env: true }
            .run_with(root.path(), || {
                stopped = true;
                Ok(())
            })
            .unwrap();
        assert!(stopped);
        assert!(!root.path().join("target/test-env").exists());
        assert!(root.path().join("target/debug").exists());
    }
}
