//! `cargo xtask signing-key init`: the project's cosign key pair. The public
//! key goes to `cosign.pub` at the root (committed); the private key to a
//! folder outside the checkout, readable by its owner only, never into the
//! repository. Nothing is overwritten without `--force`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::PUBLIC_KEY;
use crate::error::fail;
use crate::tools::cosign;
use crate::tools::process::Env;
use crate::tools::{self, Tool};

/// The project's cosign key pair.
#[derive(Debug, Args)]
pub struct SigningKey {
    #[command(subcommand)]
    pub action: KeyAction,
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Generate the key pair (password from COSIGN_PASSWORD): cosign.pub at
    /// the root, the private key outside the checkout.
    Init(Init),
}

#[derive(Debug, Args)]
pub struct Init {
    /// Replace an existing key pair (everything published must then be signed again).
    #[arg(long)]
    pub force: bool,
    /// Where the private key goes (default: $XDG_CONFIG_HOME/stagex-base-images,
    /// else ~/.config/stagex-base-images).
    #[arg(long, value_name = "DIR")]
    pub private_dir: Option<PathBuf>,
}

impl SigningKey {
    pub fn run(self, root: &Path) -> Result<()> {
        match self.action {
            KeyAction::Init(init) => init.run(root),
        }
    }
}

/// The default folder for the private key: the user's config folder.
fn default_private_dir() -> Result<PathBuf> {
    default_private_dir_from(&|name| std::env::var_os(name))
}

/// [`default_private_dir`] with the variables `var` reads (a test's own).
fn default_private_dir_from(var: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Result<PathBuf> {
    if let Some(dir) = var("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("stagex-base-images"));
    }
    let home = var("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_CONFIG_HOME nor HOME is set: pass --private-dir")?;
    Ok(PathBuf::from(home).join(".config/stagex-base-images"))
}

impl Init {
    pub fn run(self, root: &Path) -> Result<()> {
        let public = root.join(PUBLIC_KEY);
        let dir = match &self.private_dir {
            Some(dir) => dir.clone(),
            None => default_private_dir()?,
        };
        // Where the folder really is (relative to here, through symlinks):
        // never inside the checkout, where one `git add` commits it.
        let dir =
            std::path::absolute(&dir).with_context(|| format!("{}: not a path", dir.display()))?;
        let real = real_path(&dir)?;
        if real.starts_with(root) {
            bail!(
                "{} is inside the checkout {}: the private key must not live there (it could be committed); choose another --private-dir",
                real.display(),
                root.display()
            );
        }
        let private = dir.join("cosign.key");
        if !self.force {
            for existing in [&public, &private] {
                // A dangling symlink is something there too.
                if existing.symlink_metadata().is_ok() {
                    return fail(format!(
                        "{} exists: the project already has a key pair; `--force` replaces it (then everything published must be signed again with the new key)",
                        existing.display()
                    ));
                }
            }
        }
        let Ok(password) = std::env::var(cosign::PASSWORD_ENV) else {
            bail!(
                "set {} to the new key's password (it is read from there only)",
                cosign::PASSWORD_ENV
            );
        };
        if password.is_empty() {
            anstream::eprintln!(
                "warning: {} is empty: the private key is not encrypted",
                cosign::PASSWORD_ENV
            );
        }
        let env = Env::new();
        tools::require(&[Tool::Cosign], &env, "signing-key init")?;
        create_private_dir(&dir)?;
        // cosign writes both halves into a fresh folder beside the key's
        // final place (same filesystem), then each moves into place.
        let scratch = tempfile::Builder::new()
            .prefix(".signing-key-")
            .tempdir_in(&dir)
            .with_context(|| format!("a scratch folder in {}", dir.display()))?;
        let prefix = scratch.path().join("cosign");
        let mut command = cosign::generate_key_pair(&prefix);
        command.secret_env(cosign::PASSWORD_ENV, password);
        command.output()?;
        let written_public = prefix.with_extension("pub");
        let written_private = prefix.with_extension("key");
        let public_pem = std::fs::read(&written_public)
            .with_context(|| format!("cosign wrote no {}", written_public.display()))?;
        let fingerprint = super::verified::key_fingerprint(&public_pem)?;
        std::fs::rename(&written_private, &private)
            .with_context(|| format!("moving the private key to {}", private.display()))?;
        crate::files::write_atomically(&public, &public_pem)?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            // A public key for everyone to read, whatever the umask said.
            std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644))
                .with_context(|| format!("making {} readable", public.display()))?;
        }
        // The admission policy embeds the key: it changes with it.
        let generated = crate::commands::k8s::ensure(root, crate::files::Mode::Write)?;
        for written in &generated.written {
            crate::ui::say!("wrote {written} (it embeds the new public key)");
        }
        crate::ui::say!(
            "cosign key pair made:\n  public key:  {} (sha256 {fingerprint}): commit it with the regenerated policies/, and put its owner and fingerprint in docs/publishing-and-signing.md's `Signing keys`\n  private key: {} (mode 0600): store it as the Forgejo secret COSIGN_KEY (its contents) and the password as COSIGN_PASSWORD, then delete this copy or keep it offline",
            public.display(),
            private.display()
        );
        Ok(())
    }
}

/// `path` with symlinks resolved (dangling ones too: what a folder would be
/// created through), through its nearest existing ancestor.
fn real_path(path: &Path) -> Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        let Ok(meta) = path.symlink_metadata() else {
            // Nothing here yet: resolve the parent, keep the name.
            return match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) if parent != path => Ok(real_path(parent)?.join(name)),
                _ => Ok(path),
            };
        };
        if !meta.file_type().is_symlink() {
            return std::fs::canonicalize(&path)
                .with_context(|| format!("resolving {}", path.display()));
        }
        let target = std::fs::read_link(&path)
            .with_context(|| format!("reading the link {}", path.display()))?;
        path = match path.parent() {
            Some(parent) => parent.join(target),
            None => target,
        };
    }
    bail!("{}: too many symlinks", path.display())
}

/// The private key's folder, readable by its owner only: made so when it is
/// new; an existing one others can read or write is refused, never changed.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if dir.is_dir() {
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} is open to others (mode {mode:o}): keep the private key in a folder only you can open (`chmod 700`), or choose another --private-dir",
                dir.display()
            );
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    // The umask may have taken bits away, never added: set exactly 0700.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder is judged where it really is: through symlinks, dangling
    /// ones and missing folders included; a loop of links is an error.
    #[test]
    fn real_paths_follow_links_through_what_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("target")).unwrap();
        std::os::unix::fs::symlink("target", base.join("link")).unwrap();
        std::os::unix::fs::symlink("elsewhere/x", base.join("dangling")).unwrap();
        assert_eq!(
            real_path(&base.join("link/new/keys")).unwrap(),
            base.join("target/new/keys")
        );
        assert_eq!(
            real_path(&base.join("dangling")).unwrap(),
            base.join("elsewhere/x")
        );
        assert_eq!(
            real_path(&base.join("target")).unwrap(),
            base.join("target")
        );
        std::os::unix::fs::symlink("b", base.join("a")).unwrap();
        std::os::unix::fs::symlink("a", base.join("b")).unwrap();
        let error = real_path(&base.join("a")).unwrap_err().to_string();
        assert!(error.ends_with("too many symlinks"), "{error}");
    }

    /// A new folder is made 0700; an existing one others may open is
    /// refused, never changed; one only its owner opens is used.
    #[test]
    fn the_private_folder_is_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let new = dir.path().join("a/b");
        create_private_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        create_private_dir(&new).unwrap();
        for open in [0o755, 0o710, 0o701] {
            std::fs::set_permissions(&new, std::fs::Permissions::from_mode(open)).unwrap();
            let error = create_private_dir(&new).unwrap_err().to_string();
            assert!(
                error.contains(&format!("is open to others (mode {open:o})")),
                "{error}"
            );
            assert_eq!(mode(&new), open, "left as it was");
        }
    }

    /// Before cosign is asked: a folder inside the checkout is refused, and
    /// an existing key pair is kept unless `--force`.
    #[test]
    fn init_refuses_the_checkout_and_an_existing_pair() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let init = |dir: &Path| Init {
            force: false,
            private_dir: Some(dir.to_path_buf()),
        };
        let error = init(&root.join("keys")).run(&root).unwrap_err().to_string();
        assert!(error.contains("is inside the checkout"), "{error}");
        std::fs::write(root.join(PUBLIC_KEY), "old").unwrap();
        let error = init(outside.path()).run(&root).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{} exists", root.join(PUBLIC_KEY).display())),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(PUBLIC_KEY)).unwrap(),
            "old"
        );
    }

    /// The private key's folder: under XDG_CONFIG_HOME when it is set and
    /// not empty, else under HOME; with neither, an error naming the option.
    #[test]
    fn the_private_key_goes_to_the_users_config_folder() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| std::ffi::OsString::from(value))
            }
        };
        let xdg = with(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(
            default_private_dir_from(&xdg).unwrap(),
            Path::new("/xdg/stagex-base-images")
        );
        let empty_xdg = with(&[("XDG_CONFIG_HOME", ""), ("HOME", "/home/u")]);
        assert_eq!(
            default_private_dir_from(&empty_xdg).unwrap(),
            Path::new("/home/u/.config/stagex-base-images")
        );
        let error = default_private_dir_from(&with(&[("HOME", "")]))
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("pass --private-dir"), "{error}");
    }
}
