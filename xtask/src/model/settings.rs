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
    // v6.4.0 was built before; its own RELEASE-NOTES.md says "Do not use,
    // contains a regression" (a job whose `if:` is false is failed), and
    // multi-line secrets are masked only from 8.0.0, timeout-minutes
    // enforced only from 11.1. v12.6.2: module code.forgejo.org/forgejo/runner/v12,
    // `go 1.25.0` in its go.mod (pallet-go is 1.26.0, GOTOOLCHAIN=local).
    tag: "v12.6.2",
    // Not readable from this offline workplace: the stored mirror
    // (project-mirrors/forgejo-runner) has the history but no tags, and no
    // package or module-proxy record names v12.6.2's commit. Confirm with
    // `git ls-remote https://code.forgejo.org/forgejo/runner 'refs/tags/v12.6.2^{}'`
    // and write the full commit here; until then the build refuses the source.
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

/// Where our images are published (`<prefix>/<image>`): the workflows push
/// there, the runner's Deployment pulls from there, and the admission policy
/// guards exactly that path. One value, so a registry move changes all three
/// (`cargo xtask workflows` and `cargo xtask k8s` regenerate them).
pub const PUBLISH_REGISTRY_PREFIX: &str = "registry.internal/stagex-images";

/// The published `forgejo-runner` image's manifest digest, for its Kubernetes
/// Deployment. Copy it from `out/forgejo-runner/publish.json`
/// (`manifest_digest`) after a publish; `cargo xtask k8s` says when the two
/// differ. `None` until the runner is first published (it cannot build before
/// its source commit is pinned, above): the Deployment then names no
/// pullable image and says so.
pub const RUNNER_IMAGE_DIGEST: Option<&str> = None;

/// The Docker-in-Docker sidecar the runner builds with, by digest. Not a
/// StageX image (StageX ships no Docker engine). The digest is docker:26.1-dind
/// as go-vela/vela-docker pins it (Dockerfile at bafa8a71989dc818c7d63e16855bf9c81c56a152),
/// and the digest other projects pin as `docker@sha256:dd43…`. `mirror`
/// copies StageX only: pull this through your registry's cache.
pub const DIND_IMAGE: &str = "docker.io/library/docker:26.1-dind@sha256:dd43b430341a40d88f4f30edb03865daa9d6fa39c9b1da70f27e2a89cec3eae1";

/// The image a runner's jobs run in (`<label>:docker://<image>`): Rust, a
/// Docker client, cosign, grype and mal. `None` until one is published; the
/// runner's label then names an image that cannot resolve, so jobs fail
/// (never run on the runner itself), and `cargo xtask k8s` says so.
pub const RUNNER_JOB_IMAGE: Option<&str> = None;

/// The facts that generated files share, as one value, so a test can vary
/// one of them and see every file that depends on it change together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub publish_prefix: String,
    pub runner_label: String,
    pub check_runner_label: String,
    pub runner_image_digest: Option<String>,
    pub job_image: Option<String>,
    pub dind_image: String,
    pub transparency_log: bool,
}

impl Site {
    /// This repository's settings, as above.
    pub fn ours() -> Site {
        Site {
            publish_prefix: PUBLISH_REGISTRY_PREFIX.to_string(),
            runner_label: RUNNER_LABEL.to_string(),
            check_runner_label: CHECK_RUNNER_LABEL.to_string(),
            runner_image_digest: RUNNER_IMAGE_DIGEST.map(str::to_string),
            job_image: RUNNER_JOB_IMAGE.map(str::to_string),
            dind_image: DIND_IMAGE.to_string(),
            transparency_log: SIGN_WITH_TRANSPARENCY_LOG,
        }
    }
}
