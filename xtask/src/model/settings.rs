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
pub const NEEDS_NETWORK: &[(&str, &str)] = &[
    (
        "forgejo-runner",
        "downloads the runner's Go modules, verified against its go.sum",
    ),
    (
        "forgejo-job",
        "downloads the Go modules of cosign, syft, grype and malcontent (each verified against its go.sum) and YARA-X's crates (verified against its Cargo.lock)",
    ),
];

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

pub const BUILD_CONTEXTS: &[BuildContext] = &[
    BuildContext {
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
    },
    // The job image's tools that StageX does not package (forgejo-job/Containerfile).
    // No source here names a release tag's commit (the stored copies of these
    // repositories carry files, not tags): each is refused until someone with
    // network access confirms it with the `git ls-remote` below and writes it.
    BuildContext {
        name: "cosign-src",
        image: "forgejo-job",
        git: "https://github.com/sigstore/cosign",
        // v2: `publish` writes cosign's legacy storage (`--new-bundle-format=false`),
        // which cosign 3 no longer writes by default. Module
        // github.com/sigstore/cosign/v2, `go 1.24.6` (pallet-go is 1.26.0).
        // Confirm: `git ls-remote https://github.com/sigstore/cosign 'refs/tags/v2.6.1^{}'`.
        tag: "v2.6.1",
        commit: None,
    },
    BuildContext {
        name: "syft-src",
        image: "forgejo-job",
        git: "https://github.com/anchore/syft",
        // Module github.com/anchore/syft, ./cmd/syft.
        // Confirm: `git ls-remote https://github.com/anchore/syft 'refs/tags/v1.33.0^{}'`.
        tag: "v1.33.0",
        commit: None,
    },
    BuildContext {
        name: "grype-src",
        image: "forgejo-job",
        git: "https://github.com/anchore/grype",
        // Module github.com/anchore/grype, ./cmd/grype (database schema v6).
        // Confirm: `git ls-remote https://github.com/anchore/grype 'refs/tags/v0.100.0^{}'`.
        tag: "v0.100.0",
        commit: None,
    },
    BuildContext {
        name: "malcontent-src",
        image: "forgejo-job",
        git: "https://github.com/chainguard-dev/malcontent",
        // v1.23.0 is the version its pkg/release/version.go names (ID) in the
        // stored copy (chainguard-dev/malcontent@00b9cb2f); ./cmd/mal, cgo with YARA-X.
        // Confirm: `git ls-remote https://github.com/chainguard-dev/malcontent 'refs/tags/v1.23.0^{}'`.
        tag: "v1.23.0",
        commit: None,
    },
    BuildContext {
        name: "yara-x-src",
        image: "forgejo-job",
        git: "https://github.com/VirusTotal/yara-x",
        // Must be the version of github.com/VirusTotal/yara-x/go in malcontent's
        // go.mod at its tag (the build checks it): read it with
        // `git show v1.23.0:go.mod | grep yara-x` in a malcontent clone, and
        // confirm with `git ls-remote https://github.com/VirusTotal/yara-x 'refs/tags/v1.19.0^{}'`.
        tag: "v1.19.0",
        commit: None,
    },
];

/// The oldest grype vulnerability database the scan gate accepts, by the
/// time it was built (grype's own age check, `GRYPE_DB_MAX_ALLOWED_BUILT_AGE`):
/// an older one fails the scan rather than pass images against stale
/// advisories. CI downloads a fresh one daily (docs/ci-job-image.md); grype's
/// own default is the same five days.
pub const GRYPE_DB_MAX_AGE_HOURS: u32 = 120;

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

/// Where this repository lives: the provenance's builder id names it, and
/// the release notes link to it. Change it with the repository's home.
pub const SOURCE_REPOSITORY: &str = "https://forgejo.internal/platform/stagex-base-images";

/// The provenance's `buildType`: what its parameters mean and how to rebuild
/// from them, documented at this address (docs/verifying-images.md,
/// "The build type"). Versioned: a change of meaning gets a new URI.
pub const PROVENANCE_BUILD_TYPE: &str =
    "https://forgejo.internal/platform/stagex-base-images/src/branch/main/docs/verifying-images.md#build-type-v1";

/// Release tags (`<image>:<stagex-release>-<n>`, e.g. `2026.03.0-1`) are
/// immutable: `publish` refuses to move one. `latest` is the only tag that moves.
pub const MOVING_TAG: &str = "latest";

/// The published `forgejo-runner` image's manifest digest, for its Kubernetes
/// Deployment. Copy it from `out/forgejo-runner/publish.json`
/// (`manifest_digest`) after a publish; `cargo xtask k8s` says when the two
/// differ. `None` until the runner is first published (it cannot build before
/// its source commit is pinned, above): the Deployment then names no
/// pullable image and says so.
pub const RUNNER_IMAGE_DIGEST: Option<&str> = None;

/// The Docker-in-Docker sidecar the runner builds with, by digest (the
/// multi-platform index). Not a StageX image (StageX ships no Docker engine).
/// Docker 28.5.2: a maintained engine with the runc of November 2025 (26.1,
/// pinned before, is end of life). The digest was not read from Docker Hub
/// (nothing can be pulled here): it is the one several unrelated public
/// repositories pin as `docker:28.5.2-dind` and `docker:28-dind`; confirm it
/// with `docker buildx imagetools inspect docker.io/library/docker:28.5.2-dind`
/// before the first deploy (docs/kubernetes.md). `mirror` copies StageX only:
/// pull this through your registry's cache, or change the prefix here to your
/// mirror of it (same digest) and the allow-list follows.
pub const DIND_IMAGE: &str = "docker.io/library/docker:28.5.2-dind@sha256:2a232a42256f70d78e3cc5d2b5d6b3276710a0de0596c145f627ecfae90282ac";

/// Which Kyverno API the image policy is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyApi {
    /// `kyverno.io/v1` `ClusterPolicy` with `verifyImages` (Kyverno 1.13 to
    /// 1.18; deprecated from 1.19, which warns on admission of the policy).
    ClusterPolicy,
    /// `policies.kyverno.io/v1` `ImageValidatingPolicy` (Kyverno 1.18 and later).
    ImageValidatingPolicy,
}

/// The image policy's API: `ClusterPolicy` while clusters run Kyverno 1.13 to
/// 1.17; `ImageValidatingPolicy` once every cluster runs 1.18 or later.
pub const POLICY_API: PolicyApi = PolicyApi::ClusterPolicy;

/// Other names pods may use for the publishing registry's host (a second DNS
/// name, a load balancer's name). Each is verified like the canonical name
/// (and with `:443`); a spelling not listed here (upper case, an IP address)
/// is refused by the allow-list, never admitted unverified.
pub const REGISTRY_ALIASES: &[&str] = &[];

/// Images besides ours that pods may run, by exact reference with digest:
/// DinD's (added from `DIND_IMAGE`) and whatever the platform adds here.
pub const ALLOWED_IMAGES: &[&str] = &[];

/// Namespaces no admission policy here judges: Kyverno's own default
/// exemptions (it never verifies them), and the allow-list skips them too, so
/// the platform's own images keep running. docs/kubernetes.md says how to
/// narrow this.
pub const EXEMPT_NAMESPACES: &[&str] =
    &["kube-system", "kube-public", "kube-node-lease", "kyverno"];

/// Where the runners may connect, besides the cluster's DNS: Forgejo, the
/// registry, the StageX mirror. CIDRs and the destination pods' own ports
/// (a Service mapping 443 to 8443 needs 8443: NetworkPolicy sees the
/// translated address). Empty until the platform fills it in: the runners
/// then reach nothing but DNS, and `cargo xtask k8s` says so.
pub const RUNNER_EGRESS: &[Egress] = &[];

/// One egress destination of the runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// What it is, for people (a comment in the manifest's annotations).
    pub purpose: &'static str,
    pub cidrs: &'static [&'static str],
    pub tcp_ports: &'static [u16],
}

/// The cluster DNS the runners resolve with: pods labelled `k8s-app=kube-dns`
/// in `kube-system` (CoreDNS and kube-dns both carry it).
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_POD_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// The Secret (type kubernetes.io/dockerconfigjson, in the runners'
/// namespace) the runner pods pull our registry's images with.
pub const IMAGE_PULL_SECRET: Option<&str> = Some("stagex-registry-pull");

/// The RuntimeClass the pull-request runners run in (`gvisor`, `kata`,
/// `sysbox-runc`): pull-request code runs as root in a privileged engine, and
/// only a sandboxing runtime keeps it off the node. `None` until the cluster
/// offers one; `cargo xtask k8s` says so.
pub const CHECK_RUNTIME_CLASS: Option<&str> = None;

/// How long a stopping runner lets its running job finish before cancelling
/// it (`runner.shutdown_timeout`), per pool; the pod's grace period is this
/// plus [`SHUTDOWN_MARGIN_SECONDS`].
pub const BUILD_SHUTDOWN_SECONDS: u32 = 3 * 3600;
pub const CHECK_SHUTDOWN_SECONDS: u32 = 1800;
/// The engine's own stop and the runner's cleanup after the job's end.
pub const SHUTDOWN_MARGIN_SECONDS: u32 = 60;

/// The facts that generated files share, as one value, so a test can vary
/// one of them and see every file that depends on it change together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub publish_prefix: String,
    pub runner_label: String,
    pub check_runner_label: String,
    pub runner_image_digest: Option<String>,
    /// The image a runner's jobs run in (`<label>:docker://<image>`), by
    /// digest: `forgejo-job` as published (its pin, `forgejo-job/PUBLISHED`,
    /// read by [`Site::of`]). `None` until it is published: the runner's label
    /// then names an image that cannot resolve, so jobs fail (never run on the
    /// runner itself), and `cargo xtask k8s` says so.
    pub job_image: Option<String>,
    pub dind_image: String,
    pub transparency_log: bool,
    pub policy_api: PolicyApi,
    pub registry_aliases: Vec<String>,
    pub allowed_images: Vec<String>,
    pub exempt_namespaces: Vec<String>,
    pub egress: Vec<Egress>,
    pub image_pull_secret: Option<String>,
    pub check_runtime_class: Option<String>,
    pub shutdown_seconds: (u32, u32),
}

impl Site {
    /// This checkout's settings: the constants above and the job image's
    /// committed pin (`forgejo-job/PUBLISHED`). What `k8s` and `workflows`
    /// generate from.
    pub fn of(root: &std::path::Path) -> anyhow::Result<Site> {
        let ours = Site::ours();
        Ok(Site {
            job_image: super::job_image::reference(root, &ours.publish_prefix)?,
            ..ours
        })
    }

    /// The constants above alone (no job image: it is read from the
    /// checkout by [`Site::of`]); tests vary one field of it.
    pub fn ours() -> Site {
        Site {
            publish_prefix: PUBLISH_REGISTRY_PREFIX.to_string(),
            runner_label: RUNNER_LABEL.to_string(),
            check_runner_label: CHECK_RUNNER_LABEL.to_string(),
            runner_image_digest: RUNNER_IMAGE_DIGEST.map(str::to_string),
            job_image: None,
            dind_image: DIND_IMAGE.to_string(),
            transparency_log: SIGN_WITH_TRANSPARENCY_LOG,
            policy_api: POLICY_API,
            registry_aliases: REGISTRY_ALIASES.iter().map(|s| s.to_string()).collect(),
            allowed_images: ALLOWED_IMAGES.iter().map(|s| s.to_string()).collect(),
            exempt_namespaces: EXEMPT_NAMESPACES.iter().map(|s| s.to_string()).collect(),
            egress: RUNNER_EGRESS.to_vec(),
            image_pull_secret: IMAGE_PULL_SECRET.map(str::to_string),
            check_runtime_class: CHECK_RUNTIME_CLASS.map(str::to_string),
            shutdown_seconds: (BUILD_SHUTDOWN_SECONDS, CHECK_SHUTDOWN_SECONDS),
        }
    }
}
