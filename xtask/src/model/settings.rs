//! The few facts that are ours to choose. Everything else is derived from the
//! Containerfiles.

/// The build argument that holds the StageX registry prefix in every
/// Containerfile, so a build can pull from an internal mirror instead.
pub const REGISTRY_ARG: &str = "STAGEX_REGISTRY";

/// Its default: StageX on Docker Hub.
pub const UPSTREAM_PREFIX: &str = "stagex";

/// The StageX namespace: an external reference is StageX when its repository
/// path ends in `stagex/<package>`.
pub const STAGEX_NAMESPACE: &str = "stagex";

/// Images live in top-level directories and in `examples/*`: any such
/// directory with a `Containerfile` is an image named after the directory.
pub const EXAMPLES_DIR: &str = "examples";

/// Directories never searched for images.
pub const NOT_IMAGE_DIRS: &[&str] = &["target", "out", ".git", "stagex-release", "keys", "xtask"];

/// Images that must reach the network while building; every other image builds
/// with `--network=none`. Keep this list short and say why.
pub const NEEDS_NETWORK: &[(&str, &str)] = &[(
    "forgejo-runner",
    "downloads the runner's Go modules, verified against its go.sum",
)];

/// Named build contexts that are neither a stage, a StageX image nor one of our
/// images: source trees fetched by the build at a tag, and accepted only when
/// that tag is the pinned commit (a tag can be moved; a commit cannot).
#[derive(Debug, PartialEq, Eq)]
pub struct BuildContext {
    pub name: &'static str,
    pub image: &'static str,
    pub git: &'static str,
    pub tag: &'static str,
    /// The full commit the tag must point to. `None` until someone with network
    /// access has read it (`git ls-remote <git> 'refs/tags/<tag>^{}'`): the
    /// build refuses an unpinned source rather than trust the tag.
    pub commit: Option<&'static str>,
}

pub const BUILD_CONTEXTS: &[BuildContext] = &[BuildContext {
    name: "forgejo-runner-src",
    image: "forgejo-runner",
    git: "https://code.forgejo.org/forgejo/runner",
    tag: "v6.4.0",
    // Not readable from this offline workplace: no mirror, package or module
    // proxy record of v6.4.0's commit was found. See the README.
    commit: None,
}];

/// Oldest Docker Engine that builds StageX images (OCI layouts with the containerd store).
pub const MIN_DOCKER_MAJOR: u64 = 25;

/// Where StageX publishes its signatures (lookaside layout:
/// `<base>/stagex/<package>@sha256=<hex>/signature-N`).
pub const UPSTREAM_LOOKASIDE: &str = "https://codeberg.org/stagex/signatures/raw/branch/main";

/// StageX's own release rule: at least two maintainers sign every digest.
pub const SIGNATURE_THRESHOLD: usize = 2;

/// The maintainer public keys we trust, relative to the checkout.
pub const KEYS_DIR: &str = "keys";

/// Where upstream StageX images are pulled from when mirroring.
pub const UPSTREAM_REGISTRY_PREFIX: &str = "docker.io/stagex";

/// The Forgejo runner label of the trusted runners that build and publish:
/// a Docker engine, Rust, cosign, grype and mal, and the release secrets.
/// Not Forgejo's usual `docker` label, which stock runners carry without any
/// of that.
pub const RUNNER_LABEL: &str = "stagex-build";

/// The label of the runners for pull requests (the same tools, no secrets,
/// never the hosts that sign): code from a pull request runs there.
pub const CHECK_RUNNER_LABEL: &str = "stagex-check";

/// Whether published images are also recorded in the public transparency
/// log. Off: our registries are internal, and Rekor would publish their names.
pub const SIGN_WITH_TRANSPARENCY_LOG: bool = false;
