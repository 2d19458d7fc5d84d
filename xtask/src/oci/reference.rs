//! Image references as the distribution spec defines them:
//! `[registry[:port]/]path/name[:tag][@sha256:<hex>]`, checked against its
//! grammar when parsed, so that a name can never smuggle `..`, uppercase or
//! other characters into a URL or a file path built from it.

use std::fmt;

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host (with port) when the reference names one.
    pub registry: Option<String>,
    /// Repository path without the registry: `stagex/core-musl`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

/// Docker Hub's spellings of its own registry.
const DOCKER_HUB: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef> {
        const FORM: &str = "write [REGISTRY/]REPOSITORY[:TAG][@sha256:HEX], e.g. registry.example/stagex/base:latest";
        if text.is_empty() {
            bail!("an empty image reference: {FORM}");
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!(
                "`{}` is not an image reference: it holds a space or a control character; {FORM}",
                text.escape_debug()
            );
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((head, digest)) => {
                let Some(hex) = digest.strip_prefix("sha256:") else {
                    bail!("`{text}`: only sha256 digests are supported, found `@{digest}`");
                };
                if !is_sha256_hex(hex) {
                    bail!("`{text}`: a sha256 digest is 64 lowercase hex characters");
                }
                (head, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A tag is the part after the last ':' of the last path component.
        let last_slash = name_and_tag.rfind('/').map(|p| p + 1).unwrap_or(0);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => (
                &name_and_tag[..last_slash + colon],
                Some(name_and_tag[last_slash + colon + 1..].to_string()),
            ),
            None => (name_and_tag, None),
        };
        if let Some(tag) = &tag {
            if !is_tag(tag) {
                bail!("`{text}`: tag `{tag}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128, not starting with `.` or `-`)");
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !is_domain(first) {
                    bail!("`{text}`: `{first}` is not a registry host[:port]");
                }
                (Some(first.to_string()), rest.to_string())
            }
            _ => (None, name.to_string()),
        };
        if repository.is_empty() {
            bail!("`{text}`: no repository name");
        }
        if let Some(bad) = repository.split('/').find(|c| !is_path_component(c)) {
            bail!("`{text}`: `{bad}` is not a valid repository path component (lowercase letters and digits, separated by `.`, `_`, `__` or dashes)");
        }
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Last path component: the StageX package name for `stagex/core-musl`.
    pub fn name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// Path components before the name: `stagex` for `stagex/core-musl`.
    pub fn namespace(&self) -> Option<&str> {
        self.repository
            .rsplit_once('/')
            .map(|(namespace, _)| namespace)
    }

    /// The digest's hex part.
    pub fn digest_hex(&self) -> Option<&str> {
        self.digest
            .as_deref()
            .and_then(|d| d.strip_prefix("sha256:"))
    }

    /// `registry/repository`, Docker Hub spelled `docker.io`: where the image
    /// lives, as purls' `repository_url` writes it.
    pub fn repository_url(&self) -> String {
        let registry = match self.registry.as_deref() {
            Some(registry) if !DOCKER_HUB.contains(&registry) => registry,
            _ => "docker.io",
        };
        format!("{registry}/{}", self.repository)
    }

    /// The repository as signatures name it: Docker Hub's spellings are one
    /// registry and left out (`docker.io/stagex/x` → `stagex/x`), any other
    /// registry stays (`quay.io/stagex/x`).
    pub fn signed_repository(&self) -> String {
        match self.registry.as_deref().filter(|r| !DOCKER_HUB.contains(r)) {
            Some(registry) => format!("{registry}/{}", self.repository),
            None => self.repository.clone(),
        }
    }
}

/// Where Docker Hub's API answers.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

impl ImageRef {
    /// The host whose `/v2/` API serves this reference (Docker Hub's names
    /// resolve to its API host).
    pub fn api_host(&self) -> &str {
        match self.registry.as_deref() {
            None => DOCKER_HUB_API,
            Some(registry) if DOCKER_HUB.contains(&registry) => DOCKER_HUB_API,
            Some(registry) => registry,
        }
    }

    /// The repository as the API names it: Docker Hub's one-component names
    /// live in `library/`.
    pub fn api_repository(&self) -> String {
        if self.api_host() == DOCKER_HUB_API && !self.repository.contains('/') {
            format!("library/{}", self.repository)
        } else {
            self.repository.clone()
        }
    }

    /// What follows `/manifests/`: the digest when there is one, else the tag
    /// (`latest` when neither is written).
    pub fn api_pin(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository, addressed by `digest` (a checked `sha256:<hex>`).
    pub fn with_digest(&self, digest: &str) -> Result<ImageRef> {
        match digest.strip_prefix("sha256:") {
            Some(hex) if is_sha256_hex(hex) => Ok(ImageRef {
                tag: None,
                digest: Some(digest.to_string()),
                ..self.clone()
            }),
            _ => bail!("`{}` is not a sha256 digest", digest.escape_debug()),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = &self.registry {
            write!(f, "{registry}/")?;
        }
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// 64 lowercase hex characters.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut index = 0;
    while index < bytes.len() {
        if alnum(bytes[index]) {
            index += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or a run of `-`, between alphanumerics.
        let start = index;
        match bytes[index] {
            b'.' => index += 1,
            b'_' => {
                index += 1;
                if bytes.get(index) == Some(&b'_') {
                    index += 1;
                }
            }
            b'-' => {
                while bytes.get(index) == Some(&b'-') {
                    index += 1;
                }
            }
            _ => return false,
        }
        if index == start || !bytes.get(index).copied().is_some_and(alnum) {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `host[:port]`: dot-separated labels of letters, digits and inner dashes, or
/// `[ipv6]`; the port is digits.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.rfind(']') {
        // `[ipv6]` or `[ipv6]:port`: only a colon after the bracket starts a port.
        Some(close) => match &domain[close + 1..] {
            "" => (domain, None),
            rest => match rest.strip_prefix(':') {
                Some(port) => (&domain[..=close], Some(port)),
                None => return false,
            },
        },
        None => match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        },
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUSL: &str =
        "stagex/core-musl:1.2.5@sha256:816a6e097544c23386c95c8614e358ace7c5026c3f53b7b9353b84cbb4ed0096";

    #[test]
    fn parts() {
        let r = ImageRef::parse("127.0.0.1:5000/stagex/core-musl:1.2.5").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!((r.namespace(), r.name()), (Some("stagex"), "core-musl"));
        assert_eq!(r.tag.as_deref(), Some("1.2.5"));
        let r = ImageRef::parse("localhost:5000/base").unwrap();
        assert_eq!(
            (r.registry.as_deref(), r.repository.as_str()),
            (Some("localhost:5000"), "base")
        );
        let r = ImageRef::parse(MUSL).unwrap();
        assert_eq!(r.to_string(), MUSL);
        assert_eq!(
            ImageRef::parse("[::1]:5000/a/b")
                .unwrap()
                .registry
                .as_deref(),
            Some("[::1]:5000")
        );
    }

    #[test]
    fn the_grammar_is_enforced() {
        for bad in [
            "stagex/core-musl@sha256:abc",
            "stagex/core-musl@md5:abc",
            &format!("stagex/x@sha256:{}", "A".repeat(64)),
            "stagex/../../../outside/x",
            "stagex/Core-musl",
            "stagex//x",
            "stagex/x-",
            "stagex/_x",
            "stagex/x:",
            "stagex/x:-tag",
            &format!("stagex/x:{}", "t".repeat(129)),
            "bad_host.io:port/x",
            "host.io:50a0/x",
            "-host.io/x",
            "stagex/x\u{7}",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} was accepted");
        }
        for good in [
            "a/b__c/d.e/f---g:v1.2_3-rc",
            "registry-1.docker.io/library/busybox",
            "ghcr.io/siderolabs/stagex/core-busybox:1.36.1",
        ] {
            assert!(ImageRef::parse(good).is_ok(), "{good} was refused");
        }
    }

    /// Each refusal says what is wrong, so each check is seen to be the
    /// one that refused.
    #[test]
    fn refusals_name_the_rule_broken() {
        let error = |text: &str| ImageRef::parse(text).unwrap_err().to_string();
        for spaced in ["stagex/x y", "stagex/x\u{7}", "stagex/x\t"] {
            assert!(
                error(spaced).contains("holds a space or a control character"),
                "{}",
                error(spaced)
            );
        }
        assert_eq!(
            error("localhost:/x"),
            "`localhost:/x`: `localhost:` is not a registry host[:port]"
        );
        assert_eq!(
            error("registry.example/"),
            "`registry.example/`: no repository name"
        );
        assert!(error("stagex/x:-t").contains("tag `-t` is not a valid tag"));
        assert!(error("").starts_with("an empty image reference"));
    }

    #[test]
    fn api_names_follow_docker() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(
            (r.api_host(), r.api_repository().as_str(), r.api_pin()),
            (DOCKER_HUB_API, "library/busybox", "latest")
        );
        let r = ImageRef::parse("docker.io/stagex/core-musl:1.2.5").unwrap();
        assert_eq!(
            (r.api_host(), r.api_repository().as_str(), r.api_pin()),
            (DOCKER_HUB_API, "stagex/core-musl", "1.2.5")
        );
        let r = ImageRef::parse(MUSL).unwrap();
        assert_eq!(r.api_pin(), r.digest.as_deref().unwrap());
        let r = ImageRef::parse("127.0.0.1:5000/a:1").unwrap();
        assert_eq!(
            (r.api_host(), r.api_repository().as_str()),
            ("127.0.0.1:5000", "a")
        );
        let pinned = r
            .with_digest(
                r.digest
                    .as_deref()
                    .unwrap_or(&format!("sha256:{}", "a".repeat(64))),
            )
            .unwrap();
        assert_eq!(pinned.tag, None);
        assert!(r.with_digest("sha256:../x").is_err());
    }

    #[test]
    fn docker_hub_spellings_are_one_repository() {
        let signed = |text: &str| ImageRef::parse(text).unwrap().signed_repository();
        assert_eq!(signed("docker.io/stagex/core-musl:1"), "stagex/core-musl");
        assert_eq!(signed("stagex/core-musl"), "stagex/core-musl");
        assert_eq!(
            signed("quay.io/stagex/core-musl"),
            "quay.io/stagex/core-musl"
        );
        let url = |text: &str| ImageRef::parse(text).unwrap().repository_url();
        assert_eq!(url("stagex/core-musl:1"), "docker.io/stagex/core-musl");
        assert_eq!(
            url("index.docker.io/stagex/core-musl"),
            "docker.io/stagex/core-musl"
        );
        assert_eq!(
            url("127.0.0.1:5000/stagex/core-musl@sha256:"
                .to_string()
                .as_str()
                .trim_end_matches("@sha256:")),
            "127.0.0.1:5000/stagex/core-musl"
        );
    }
}
