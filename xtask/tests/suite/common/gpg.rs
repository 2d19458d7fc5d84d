//! Maintainer keys and StageX-style signatures made with real gpg, as StageX
//! signers make them: `gpg --sign` (inline, binary by default) with a signing
//! subkey.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{require_tool, run_ok};

pub struct Gpg {
    pub home: tempfile::TempDir,
    /// Public keys of the trusted maintainers (what goes in `keys/`).
    pub keyring: tempfile::TempDir,
}

/// A key pair in the gpg home: its primary fingerprint.
#[derive(Clone)]
pub struct Key {
    pub primary: String,
}

impl Gpg {
    pub fn new() -> Gpg {
        require_tool("gpg");
        let home = tempfile::tempdir().unwrap();
        let keyring = tempfile::tempdir().unwrap();
        Gpg { home, keyring }
    }

    fn gpg(&self) -> Command {
        let mut command = Command::new("gpg");
        command.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--yes",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        command
    }

    /// A certify-only primary key with a signing subkey (`rsa3072`, `ed25519`, …).
    pub fn key(&self, name: &str, algorithm: &str) -> Key {
        let uid = format!("{name} <{name}@example.com>");
        run_ok(
            self.gpg()
                .args(["--quick-gen-key", &uid, algorithm, "cert", "never"]),
        );
        let listing = run_ok(self.gpg().args(["--with-colons", "--list-keys", &uid]));
        let text = String::from_utf8(listing.stdout).unwrap();
        let primary = text
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string();
        run_ok(
            self.gpg()
                .args(["--quick-add-key", &primary, algorithm, "sign", "never"]),
        );
        Key { primary }
    }

    /// Put the key's public part in the trusted keyring folder.
    pub fn trust(&self, key: &Key) {
        let output = run_ok(self.gpg().args(["--armor", "--export", &key.primary]));
        std::fs::write(
            self.keyring.path().join(format!("{}.asc", key.primary)),
            output.stdout,
        )
        .unwrap();
    }

    /// An inline signed message over `payload`; `options` e.g. `["--compress-algo", "zlib"]`.
    pub fn sign(&self, key: &Key, payload: &str, options: &[&str]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("payload.json");
        let output = dir.path().join("signature");
        std::fs::write(&input, payload).unwrap();
        // `--clearsign` in `options` replaces the inline `--sign`.
        let command = if options.contains(&"--clearsign") {
            None
        } else {
            Some("--sign")
        };
        run_ok(
            self.gpg()
                .args(["--local-user", &key.primary])
                .args(command)
                .args(options)
                .arg("--output")
                .arg(&output)
                .arg(&input),
        );
        std::fs::read(output).unwrap()
    }
}

impl Gpg {
    /// An inline signed message over what `input` reads, piped to gpg's
    /// standard input (for payloads too large to want in memory).
    pub fn sign_stream(
        &self,
        key: &Key,
        mut input: impl std::io::Read + Send + 'static,
        options: &[&str],
    ) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("signature");
        let mut child = self
            .gpg()
            .args(["--local-user", &key.primary, "--sign"])
            .args(options)
            .arg("--output")
            .arg(&output)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || std::io::copy(&mut input, &mut stdin).unwrap());
        let finished = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(
            finished.status.success(),
            "gpg --sign from a pipe failed:\n{}",
            super::text(&finished)
        );
        std::fs::read(output).unwrap()
    }
}

/// The containers "simple signing" payload.
pub fn simple_signing(reference: &str, digest_hex: &str) -> String {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"sha256:{digest_hex}"}},"type":"atomic container signature"}},"optional":{{}}}}"#
    )
}

/// StageX's legacy payload (releases up to 2025.06).
pub fn stagex_legacy(repository: &str, digest_hex: &str) -> String {
    format!(
        r#"[{{"critical":{{"identity":{{"docker-reference":"{repository}"}},"image":{{"docker-manifest-digest":"{digest_hex}"}},"type":"pgp container image signature"}},"optional":null}}]"#
    )
}

/// Write `signature-1…N` for one digest in lookaside layout; returns the base URL.
pub fn write_lookaside(
    base: &Path,
    repository: &str,
    digest_hex: &str,
    signatures: &[Vec<u8>],
) -> String {
    let dir: PathBuf = base.join(format!("{repository}@sha256={digest_hex}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (index, bytes) in signatures.iter().enumerate() {
        std::fs::write(dir.join(format!("signature-{}", index + 1)), bytes).unwrap();
    }
    format!("file://{}", base.display())
}

/// Two trusted maintainers and a signature store for some digests.
pub struct Signed {
    pub gpg: Gpg,
    pub keys: Vec<Key>,
    pub store: tempfile::TempDir,
}

impl Signed {
    pub fn new() -> Signed {
        let gpg = Gpg::new();
        let keys = vec![gpg.key("alice", "ed25519"), gpg.key("bob", "rsa3072")];
        for key in &keys {
            gpg.trust(key);
        }
        Signed {
            gpg,
            keys,
            store: tempfile::tempdir().unwrap(),
        }
    }

    /// `signers` of the two keys sign `stagex/<package>@sha256:<hex>`.
    pub fn sign(&self, package: &str, tag: Option<&str>, hex: &str, signers: usize) {
        let reference = match tag {
            Some(tag) => format!("stagex/{package}:{tag}"),
            None => format!("stagex/{package}"),
        };
        let signatures: Vec<Vec<u8>> = self.keys[..signers]
            .iter()
            .map(|key| self.gpg.sign(key, &simple_signing(&reference, hex), &[]))
            .collect();
        write_lookaside(
            self.store.path(),
            &format!("stagex/{package}"),
            hex,
            &signatures,
        );
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--lookaside".into(),
            format!("file://{}", self.store.path().display()),
            "--keyring".into(),
            self.gpg.keyring.path().display().to_string(),
            "--threshold".into(),
            "2".into(),
        ]
    }
}
