//! Signature lookaside stores: `<base>/<repo>@sha256=<hex>/signature-N`,
//! N = 1, 2, … until one is missing (there is no listing). Bases may be
//! `https://`, `http://` (loopback tests) or `file://`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// More signatures than this for one digest is not a lookaside we trust.
const MAX_SIGNATURES: usize = 64;

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
}

impl Lookaside {
    pub fn new(base: &str) -> Result<Lookaside> {
        if !(base.starts_with("https://")
            || base.starts_with("http://")
            || base.starts_with("file://"))
        {
            bail!("lookaside `{base}`: use an https://, http:// or file:// URL");
        }
        Ok(Lookaside {
            base: base.trim_end_matches('/').to_string(),
            http: crate::http::client()?,
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
        let mut files = Vec::new();
        for number in 1..=MAX_SIGNATURES + 1 {
            if number > MAX_SIGNATURES {
                bail!(
                    "{}: more than {MAX_SIGNATURES} signatures for one digest",
                    signature_url(&self.base, repository, digest_hex, 1)
                );
            }
            let url = signature_url(&self.base, repository, digest_hex, number);
            match self.fetch_one(&url).await? {
                Some(bytes) => files.push(SignatureFile {
                    name: format!("signature-{number}"),
                    bytes,
                }),
                None => break,
            }
        }
        Ok(files)
    }

    async fn fetch_one(&self, url: &str) -> Result<Option<Vec<u8>>> {
        if let Some(path) = url.strip_prefix("file://") {
            return match std::fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error).with_context(|| format!("reading {path}")),
            };
        }
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            let response = self
                .http
                .get(url)
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            match response {
                Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                    return Ok(None)
                }
                Ok(response) if response.status().is_success() => {
                    return Ok(Some(response.bytes().await?.to_vec()));
                }
                Ok(response)
                    if attempt < 5
                        && (response.status().is_server_error()
                            || response.status().as_u16() == 429) => {}
                Ok(response) => bail!("GET {url}: HTTP {}", response.status()),
                Err(error)
                    if attempt < 5
                        && (error.is_connect() || error.is_timeout() || error.is_request()) => {}
                Err(error) => return Err(error).with_context(|| format!("GET {url}")),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        unreachable!("the loop returns")
    }
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

    #[test]
    fn file_bases_read_until_the_first_gap() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("stagex/x@sha256=ff");
        std::fs::create_dir_all(&folder).unwrap();
        for name in ["signature-1", "signature-2", "signature-4"] {
            std::fs::write(folder.join(name), name).unwrap();
        }
        let lookaside = Lookaside::new(&format!("file://{}", dir.path().display())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let files = runtime
            .block_on(lookaside.fetch_all("stagex/x", "ff"))
            .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["signature-1", "signature-2"]);
        assert!(runtime
            .block_on(lookaside.fetch_all("stagex/y", "ff"))
            .unwrap()
            .is_empty());
        assert!(Lookaside::new("ftp://x").is_err());
    }
}
