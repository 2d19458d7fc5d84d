//! sha256 as lowercase hex (sha2 0.11 digests no longer format with `{:x}`).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Streams the file: archives can be large.
pub fn file_sha256(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    reader_sha256(file).with_context(|| format!("reading {}", path.display()))
}

/// Hex sha256 of everything `reader` yields, in constant memory.
pub fn reader_sha256(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Plain SHA-1 (no collision hardening, so the values match everyone else's):
/// for formats that require it, never to trust content.
fn sha1() -> sha1collisiondetection::Sha1CD {
    sha1collisiondetection::Sha1CD::configure()
        .safe_hash(false)
        .detect_collisions(false)
        .build()
}

pub fn hex_sha1(bytes: &[u8]) -> String {
    use sha1collisiondetection::Digest as _;
    hex(&sha1().chain_update(bytes).finalize())
}

/// Hex sha256 and sha1 of everything `reader` yields, in one pass.
pub fn reader_sha256_and_sha1(mut reader: impl Read) -> std::io::Result<(String, String)> {
    let mut sha1 = sha1();
    let mut sha256 = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        sha256.update(&buffer[..read]);
        sha1.update(&buffer[..read]);
    }
    let sha1 = sha1
        .finalize_cd()
        .map_err(|_| std::io::Error::other("a SHA-1 collision was detected"))?;
    Ok((hex(&sha256.finalize()), hex(&sha1)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha1_too() {
        let (sha256, sha1) = super::reader_sha256_and_sha1(&b"abc"[..]).unwrap();
        assert_eq!(sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(super::hex_sha1(b"abc"), sha1);
        assert_eq!(sha256, super::hex_sha256(b"abc"));
    }

    #[test]
    fn known_digest() {
        assert_eq!(
            super::hex_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
