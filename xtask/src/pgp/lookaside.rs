//! Signature lookaside stores: `<base>/<repo>@sha256=<hex>/signature-N`,
//! N = 1, 2, … until one is missing (there is no listing). Bases may be
//! `https://`, `file://`, or `http://` on loopback (elsewhere only when the
//! user says `--insecure-lookaside`); a redirect is followed only where the
//! base itself would be accepted, and never from https:// to http://.
//!
//! A store may lie or stall: a signature larger than 1 MiB is refused (StageX's
//! are under 2 KiB), `file://` reads regular files only, every request has a
//! deadline and all the signatures of one digest share one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::oci::reference::{is_sha256_hex, ImageRef};
use crate::oci::registry::get_small_file;

/// More signatures than this for one digest is not a lookaside we trust.
const MAX_SIGNATURES: usize = 64;
/// A signature larger than this is not a signature.
pub const MAX_SIGNATURE_BYTES: usize = 1 << 20;
/// How long one request may take.
const REQUEST_DEADLINE: Duration = Duration::from_secs(20);
/// How long all the signatures of one digest may take together.
pub const DIGEST_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFile {
    /// `signature-N`
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The folder of one digest's signatures, relative to the base.
pub fn signature_dir(repository: &str, digest_hex: &str) -> String {
    format!("{repository}@sha256={digest_hex}")
}

pub fn signature_url(base: &str, repository: &str, digest_hex: &str, number: usize) -> String {
    format!(
        "{}/{}/signature-{number}",
        base.trim_end_matches('/'),
        signature_dir(repository, digest_hex)
    )
}

pub struct Lookaside {
    base: String,
    http: &'static reqwest::Client,
    deadline: Duration,
}

impl Lookaside {
    /// A store at `base`; plain `http://` off loopback only when `insecure`.
    pub fn new(base: &str, insecure: bool) -> Result<Lookaside> {
        Lookaside::with_deadline(base, insecure, DIGEST_DEADLINE)
    }

    pub fn with_deadline(base: &str, insecure: bool, deadline: Duration) -> Result<Lookaside> {
        let base = base.trim_end_matches('/').to_string();
        if base.starts_with("file://") {
            // A path, read as it is written (relative ones too).
            return Ok(Lookaside {
                base,
                http: crate::http::client()?,
                deadline,
            });
        }
        let url = reqwest::Url::parse(&base).with_context(|| {
            format!("lookaside `{base}`: not a URL; use an https://, http:// or file:// URL")
        })?;
        // The scheme as parsed, not as spelt: `HTTP://` is plain HTTP too.
        let base = match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .ok()
                    .with_context(|| format!("lookaside `{base}`: not a local path"))?;
                format!("file://{}", path.display())
            }
            "https" | "http" => {
                if !crate::http::url_allowed(&url, false) {
                    if !insecure {
                        bail!("lookaside `{base}`: plain http:// is accepted on loopback only; use https://, or --insecure-lookaside if you must");
                    }
                    anstream::eprintln!(
                        "warning: reading signatures over plain HTTP from {} (--insecure-lookaside)",
                        url.host_str().unwrap_or("")
                    );
                }
                url.as_str().trim_end_matches('/').to_string()
            }
            _ => bail!("lookaside `{base}`: use an https://, http:// or file:// URL"),
        };
        // Redirects are held to the same rule as the base.
        let http = if insecure {
            crate::http::client_allowing_plain_http()?
        } else {
            crate::http::client()?
        };
        Ok(Lookaside {
            base,
            http,
            deadline,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Every `signature-N` for the digest, in order; empty when there is none.
    pub async fn fetch_all(
        &self,
        repository: &str,
        digest_hex: &str,
    ) -> Result<Vec<SignatureFile>> {
        // Both become part of a path or URL: only what the grammar allows.
        ImageRef::parse(repository)?;
        if !is_sha256_hex(digest_hex) {
            bail!("`{digest_hex}` is not a sha256 digest");
        }
        let first = signature_url(&self.base, repository, digest_hex, 1);
        tokio::time::timeout(self.deadline, self.fetch_each(repository, digest_hex))
            .await
            .unwrap_or_else(|_| {
                bail!(
                    "{first}: the signatures of one digest took longer than {:?}, the limit",
                    self.deadline
                )
            })
    }

    async fn fetch_each(&self, repository: &str, digest_hex: &str) -> Result<Vec<SignatureFile>> {
        let mut files = Vec::new();
        // One past the limit is asked for: only its presence is refused.
        for number in 1..=MAX_SIGNATURES + 1 {
            let url = signature_url(&self.base, repository, digest_hex, number);
            let Some(bytes) = self.fetch_one(&url).await? else {
                break;
            };
            if number > MAX_SIGNATURES {
                bail!(
                    "{}: more than {MAX_SIGNATURES} signatures for one digest",
                    signature_url(&self.base, repository, digest_hex, 1)
                );
            }
            files.push(SignatureFile {
                name: format!("signature-{number}"),
                bytes,
            });
        }
        Ok(files)
    }

    async fn fetch_one(&self, url: &str) -> Result<Option<Vec<u8>>> {
        if let Some(path) = url.strip_prefix("file://") {
            return read_signature_file(Path::new(path));
        }
        get_small_file(self.http, url, REQUEST_DEADLINE, MAX_SIGNATURE_BYTES)
            .await
            .context("fetching a signature (at most 1 MiB)")
    }
}

/// A signature file: a regular file (a link is followed to one), at most
/// [`MAX_SIGNATURE_BYTES`]; `None` when there is none.
fn read_signature_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    if !metadata.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SIGNATURE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > MAX_SIGNATURE_BYTES {
        bail!("{}: larger than 1 MiB: not a signature", path.display());
    }
    Ok(Some(bytes))
}

/// Save signatures in lookaside layout under `dir`, each file whole or not at all.
pub fn save(
    dir: &Path,
    repository: &str,
    digest_hex: &str,
    files: &[SignatureFile],
) -> Result<PathBuf> {
    let folder = dir.join(signature_dir(repository, digest_hex));
    for file in files {
        crate::files::write_atomically(&folder.join(&file.name), &file.bytes)?;
    }
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_lookaside_layout() {
        assert_eq!(
            signature_url("https://example.com/sigs/", "stagex/core-musl", "ab12", 2),
            "https://example.com/sigs/stagex/core-musl@sha256=ab12/signature-2"
        );
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        crate::oci::registry::block_on(future).unwrap()
    }

    #[test]
    fn file_bases_read_until_the_first_gap() {
        let hex = "f".repeat(64);
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(format!("stagex/x@sha256={hex}"));
        std::fs::create_dir_all(&folder).unwrap();
        for name in ["signature-1", "signature-2", "signature-4"] {
            std::fs::write(folder.join(name), name).unwrap();
        }
        let lookaside = Lookaside::new(&format!("file://{}", dir.path().display()), false).unwrap();
        let files = block_on(lookaside.fetch_all("stagex/x", &hex)).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["signature-1", "signature-2"]);
        assert!(block_on(lookaside.fetch_all("stagex/y", &hex))
            .unwrap()
            .is_empty());
        assert!(Lookaside::new("ftp://x", false).is_err());
        // The scheme as parsed: `FILE://` is a file store too, read alike.
        let spelt = format!("FILE://{}", dir.path().display());
        let upper = Lookaside::new(&spelt, false).unwrap();
        assert_eq!(upper.base(), format!("file://{}", dir.path().display()));
        assert_eq!(
            block_on(upper.fetch_all("stagex/x", &hex)).unwrap().len(),
            2
        );
    }

    /// Up to [`MAX_SIGNATURES`] signatures of one digest are read, every
    /// one; a store holding one more is refused, saying so.
    #[test]
    fn a_digest_has_at_most_64_signatures() {
        let hex = "e".repeat(64);
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(format!("stagex/x@sha256={hex}"));
        std::fs::create_dir_all(&folder).unwrap();
        for number in 1..=MAX_SIGNATURES {
            std::fs::write(folder.join(format!("signature-{number}")), "sig").unwrap();
        }
        let lookaside = Lookaside::new(&format!("file://{}", dir.path().display()), false).unwrap();
        let files = block_on(lookaside.fetch_all("stagex/x", &hex)).unwrap();
        assert_eq!(files.len(), 64);
        assert_eq!(files[63].name, "signature-64");
        std::fs::write(folder.join("signature-65"), "sig").unwrap();
        let error = block_on(lookaside.fetch_all("stagex/x", &hex)).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with(": more than 64 signatures for one digest"),
            "{error}"
        );
    }

    /// A signature file of exactly 1 MiB is read; one byte more is not.
    /// Saving writes each file under the digest's folder, which it returns.
    #[test]
    fn signature_files_up_to_the_limit_are_read_and_saved_in_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signature-1");
        std::fs::write(&path, vec![b's'; MAX_SIGNATURE_BYTES]).unwrap();
        let bytes = read_signature_file(&path).unwrap().unwrap();
        assert_eq!(bytes.len(), MAX_SIGNATURE_BYTES);
        std::fs::write(&path, vec![b's'; MAX_SIGNATURE_BYTES + 1]).unwrap();
        assert!(read_signature_file(&path).is_err());

        let hex = "d".repeat(64);
        let files = [SignatureFile {
            name: "signature-1".into(),
            bytes: b"sig".to_vec(),
        }];
        let folder = save(dir.path(), "stagex/core-musl", &hex, &files).unwrap();
        assert_eq!(
            folder,
            dir.path().join(format!("stagex/core-musl@sha256={hex}"))
        );
        assert_eq!(std::fs::read(folder.join("signature-1")).unwrap(), b"sig");
    }

    /// Only a missing signature file ends the list: one that cannot be
    /// looked at is an error, not "no signatures".
    #[test]
    fn an_unreadable_signature_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_folder = dir.path().join("x@sha256=00");
        std::fs::write(&not_a_folder, "a file where a folder should be").unwrap();
        assert!(read_signature_file(&not_a_folder.join("signature-1")).is_err());
        assert!(read_signature_file(&dir.path().join("signature-1"))
            .unwrap()
            .is_none());
    }

    /// A link to /dev/zero, a file past the limit, a name that climbs out:
    /// each refused, saying why.
    #[test]
    fn hostile_files_are_refused() {
        let hex = "a".repeat(64);
        let dir = tempfile::tempdir().unwrap();
        let lookaside = Lookaside::new(&format!("file://{}", dir.path().display()), false).unwrap();
        let folder = dir.path().join(format!("stagex/zero@sha256={hex}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::os::unix::fs::symlink("/dev/zero", folder.join("signature-1")).unwrap();
        let error = block_on(lookaside.fetch_all("stagex/zero", &hex)).unwrap_err();
        assert!(
            format!("{error:#}").contains("not a regular file"),
            "{error:#}"
        );

        let folder = dir.path().join(format!("stagex/big@sha256={hex}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("signature-1"),
            vec![0u8; MAX_SIGNATURE_BYTES + 1],
        )
        .unwrap();
        let error = block_on(lookaside.fetch_all("stagex/big", &hex)).unwrap_err();
        assert!(
            format!("{error:#}").contains("larger than 1 MiB"),
            "{error:#}"
        );

        for bad in ["stagex/../../../outside/x", "Stagex/x"] {
            assert!(block_on(lookaside.fetch_all(bad, &hex)).is_err(), "{bad}");
        }
        assert!(block_on(lookaside.fetch_all("stagex/x", "../../x")).is_err());
    }

    /// A loopback server that reads each request, then lets `answer` write
    /// to the connection (an answer before the request is a protocol error
    /// of its own, not the one a test is after).
    fn answering(
        answer: impl Fn(&mut std::net::TcpStream) + Send + 'static,
    ) -> std::net::SocketAddr {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = server.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut stream in server.incoming().flatten() {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                answer(&mut stream);
            }
        });
        address
    }

    /// A server that sends too much, and one that never answers.
    #[test]
    fn hostile_servers_hit_a_limit_that_is_named() {
        use std::io::Write;
        let hex = "b".repeat(64);
        let big_address = answering(|stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..64 {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let lookaside = Lookaside::new(&format!("http://{big_address}"), false).unwrap();
        // Guards the limit fetch_one passes to get_small_file: the 4 MiB
        // answer is cut off at 1 MiB, which the error names (the "at most
        // 1 MiB" label alone is on every fetch error).
        let error = block_on(lookaside.fetch_all("stagex/x", &hex)).unwrap_err();
        assert!(
            format!("{error:#}").contains(&format!(
                "{big_address}/stagex/x@sha256={hex}/signature-1: the answer is larger than 1048576 bytes"
            )),
            "{error:#}"
        );

        // Accepts, reads, never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_address = silent.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in silent.incoming().flatten() {
                held.push(stream);
            }
        });
        let lookaside = Lookaside::with_deadline(
            &format!("http://{silent_address}"),
            false,
            Duration::from_millis(300),
        )
        .unwrap();
        let error = block_on(lookaside.fetch_all("stagex/x", &hex)).unwrap_err();
        assert!(
            format!("{error:#}").contains("took longer than 300ms, the limit"),
            "{error:#}"
        );
    }

    /// With --insecure-lookaside, redirects still go through our rule (the
    /// client of `client_allowing_plain_http`, not a default one): a store
    /// that sends us to another scheme is refused in our words.
    #[test]
    fn an_insecure_store_redirecting_elsewhere_is_refused_by_our_rule() {
        use std::io::Write;
        let address = answering(|stream| {
            let _ = stream.write_all(
                b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1:9/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        });
        let lookaside = Lookaside::new(&format!("http://{address}"), true).unwrap();
        let error = block_on(lookaside.fetch_all("stagex/x", &"d".repeat(64))).unwrap_err();
        assert!(
            format!("{error:#}").contains(
                "redirected to ftp://127.0.0.1:9/x: refused, plain http:// (and any other scheme than https://) is followed to loopback only"
            ),
            "{error:#}"
        );
    }

    #[test]
    fn plain_http_only_on_loopback_unless_insisted() {
        assert!(Lookaside::new("http://127.0.0.1:8080/sigs", false).is_ok());
        for base in ["http://sigs.example.com", "HTTP://sigs.example.com/x"] {
            let error = Lookaside::new(base, false).err().unwrap();
            assert!(
                error.to_string().contains("--insecure-lookaside"),
                "{base}: {error}"
            );
        }
        assert!(Lookaside::new("http://sigs.example.com", true).is_ok());
        assert_eq!(
            Lookaside::new("HTTPS://Sigs.Example.com/a/", false)
                .unwrap()
                .base(),
            "https://sigs.example.com/a"
        );
        assert_eq!(
            Lookaside::new("file:///tmp/sigs/", false).unwrap().base(),
            "file:///tmp/sigs"
        );
    }

    /// A loopback store that redirects off loopback over plain HTTP: the
    /// redirect is refused, and named (192.0.2.2 is TEST-NET: never reached).
    #[test]
    fn a_redirect_off_loopback_is_refused() {
        use std::io::{Read, Write};
        let hex = "c".repeat(64);
        let redirecting = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = redirecting.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut stream in redirecting.incoming().flatten() {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(
                    b"HTTP/1.1 302 Found\r\nLocation: http://192.0.2.2:9/sigs/signature-1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        let lookaside = Lookaside::new(&format!("http://{address}"), false).unwrap();
        let error = block_on(lookaside.fetch_all("stagex/x", &hex)).unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("redirected to http://192.0.2.2:9/sigs/signature-1: refused"),
            "{text}"
        );
    }
}
