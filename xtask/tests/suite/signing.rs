//! `sign`, `attest`, `verify`, `publish` and `signing-key init` with the real
//! cosign 2.5 from test-env and the real local registry. A canary password
//! runs through every test: it must reach cosign's environment and nothing
//! else (no output, no record, no command line, no child's argv).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

const CANARY: &str = "canary-Pa55word-4f1d";

/// A key pair made by cosign with the canary password: `<dir>/<name>.key|.pub`.
fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    require_tool("cosign");
    let prefix = dir.join(name);
    run_ok(
        std::process::Command::new("cosign")
            .arg("generate-key-pair")
            .arg("--output-key-prefix")
            .arg(&prefix)
            .env("COSIGN_PASSWORD", CANARY),
    );
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// A PATH whose `cosign` records the argv the kernel holds for it
/// (`/proc/self/cmdline`) and whether the password is in its environment,
/// then runs the real cosign.
fn recording_cosign(dir: &Path) -> (String, PathBuf) {
    let real = require_tool("cosign");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let argv_log = dir.join("cosign-argv.log");
    let script = format!(
        "#!/bin/sh\ntr '\\0' ' ' < /proc/$$/cmdline >> {log}\nif [ -n \"${{COSIGN_PASSWORD+set}}\" ]; then echo ' [password in env]' >> {log}; else echo ' [no password]' >> {log}; fi\nexec {real} \"$@\"\n",
        log = argv_log.display(),
        real = real.display()
    );
    let stub = bin.join("cosign");
    std::fs::write(&stub, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, argv_log)
}

/// The xtask with the canary password, a command log and the recording cosign.
struct Signer {
    root: PathBuf,
    path: String,
    command_log: PathBuf,
    argv_log: PathBuf,
    outputs: Vec<String>,
}

impl Signer {
    fn new(root: &Path, scratch: &Path) -> Signer {
        let (path, argv_log) = recording_cosign(scratch);
        Signer {
            root: root.to_path_buf(),
            path,
            command_log: scratch.join("commands.log"),
            argv_log,
            outputs: Vec::new(),
        }
    }

    fn run(&mut self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn run_with(&mut self, args: &[&str], extra: &[(&str, String)]) -> Output {
        let mut env = vec![
            ("COSIGN_PASSWORD", CANARY.to_string()),
            ("PATH", self.path.clone()),
            ("XTASK_COMMAND_LOG", self.command_log.display().to_string()),
        ];
        env.extend(extra.iter().cloned());
        let output = xtask_in_env(&self.root, args, &env);
        self.outputs.push(text(&output));
        output
    }

    /// The canary never showed anywhere but in cosign's environment.
    fn assert_no_leak(&self) {
        for output in &self.outputs {
            assert!(!output.contains(CANARY), "the password leaked: {output}");
        }
        let commands = std::fs::read_to_string(&self.command_log).unwrap_or_default();
        assert!(!commands.contains(CANARY), "{commands}");
        let argv = std::fs::read_to_string(&self.argv_log).unwrap_or_default();
        assert!(!argv.is_empty(), "cosign never ran");
        assert!(!argv.contains(CANARY), "in a child's argv: {argv}");
        for record in walk(&self.root.join("out")) {
            let bytes = std::fs::read(&record).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(CANARY),
                "in {}",
                record.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else if path
                .extension()
                .is_some_and(|e| e == "json" || e == "md" || e == "log")
            {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn sign_attest_and_verify_by_digest() {
    let registry = require_engine();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    make_checkout(&root);
    let (key, public) = key_pair(scratch.path(), "ours");
    let (_, other_public) = key_pair(scratch.path(), "theirs");
    let repository = format!("{registry}/{}", crate::names::unique("signing"));
    let digest = push_archive(&standin_archive("core-busybox"), &format!("{repository}:1"));
    let pinned = format!("{repository}@{digest}");
    let mut signer = Signer::new(&root, scratch.path());
    let key = key.to_str().unwrap();
    let public = public.to_str().unwrap();

    // A tag is refused before cosign runs.
    let output = signer.run(&[
        "sign",
        &format!("{repository}:1"),
        "--key",
        key,
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("names a tag"), "{}", text(&output));
    assert!(!std::fs::read_to_string(&signer.argv_log)
        .unwrap_or_default()
        .contains(" sign "));

    let output = signer.run(&["sign", &pinned, "--key", key, "--no-tlog"]);
    assert!(output.status.success(), "{}", text(&output));
    let json = scratch.path().join("verified.json");
    let output = signer.run(&[
        "verify",
        &pinned,
        "--key",
        public,
        "--no-tlog",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let verified = read_document(&json, "verify");
    assert_eq!(verified["digest"], digest.as_str());
    assert_eq!(verified["signatures"], 1);

    // Another key pair's public key does not verify it.
    let output = signer.run(&[
        "verify",
        &pinned,
        "--key",
        other_public.to_str().unwrap(),
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("no signature verifies against"),
        "{}",
        text(&output)
    );

    // The SBOM attestation verifies and its predicate is the SBOM.
    let sbom = scratch.path().join("sbom.spdx.json");
    std::fs::write(
        &sbom,
        r#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"busybox","packages":[{"name":"core-busybox","versionInfo":"1.37.0"}]}"#,
    )
    .unwrap();
    let output = signer.run(&[
        "attest",
        &pinned,
        "--sbom",
        sbom.to_str().unwrap(),
        "--key",
        key,
        "--no-tlog",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let output = signer.run(&[
        "verify",
        &pinned,
        "--attestations",
        "--sbom",
        sbom.to_str().unwrap(),
        "--key",
        public,
        "--no-tlog",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let verified = read_document(&json, "verify");
    assert_eq!(
        verified["attestations"][0]["predicate_type"],
        "https://spdx.dev/Document"
    );
    assert_eq!(
        verified["attestations"][0]["equals"],
        sbom.to_str().unwrap()
    );
    let other_sbom = scratch.path().join("other.spdx.json");
    std::fs::write(&other_sbom, r#"{"spdxVersion":"SPDX-2.3","name":"other"}"#).unwrap();
    let output = signer.run(&[
        "verify",
        &pinned,
        "--attestations",
        "--sbom",
        other_sbom.to_str().unwrap(),
        "--key",
        public,
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("is not"), "{}", text(&output));

    // The tag moves to another image: its digest carries no signature.
    let moved = push_archive(&standin_archive("core-musl"), &format!("{repository}:1"));
    assert_ne!(moved, digest);
    let output = signer.run(&[
        "verify",
        &format!("{repository}@{moved}"),
        "--key",
        public,
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    // The old digest named with the tag that moved away from it: refused
    // before cosign runs (guards the moved-tag check of `reach`; without it
    // the old digest's signature verifies).
    let output = signer.run(&[
        "verify",
        &format!("{repository}:1@{digest}"),
        "--key",
        public,
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(&format!(
            "{repository}:1 points at {moved}, not {digest}: the tag moved"
        )),
        "{}",
        text(&output)
    );

    signer.assert_no_leak();
    let argv = std::fs::read_to_string(&signer.argv_log).unwrap();
    assert!(argv.contains("[password in env]"), "{argv}");
    assert!(
        argv.contains(&format!(
            "sign --key {key} --tlog-upload=false --yes {pinned}"
        )),
        "{argv}"
    );
}

#[test]
fn publish_ships_only_cleared_bytes_then_signs_and_verifies() {
    let registry = require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let scratch = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(scratch.path(), "project");
    std::fs::copy(&public, root.join("cosign.pub")).unwrap();
    let key = key.to_str().unwrap();
    let mut signer = Signer::new(root, scratch.path());
    let output = signer.run(&["build", "base"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = signer.run(&["sbom", "base"]);
    assert!(output.status.success(), "{}", text(&output));
    let build = record(root, "base");
    let gate = |step: &str, outcome: xtask::report::Outcome| {
        xtask::records::steps::StepRecord::new(&build, step, outcome, "set by the test".into())
            .save(root)
            .unwrap();
    };
    let repository = format!("{registry}/{}", crate::names::unique("publish"));
    let to = format!("{repository}:1.0");
    let tag_exists = || {
        let path = format!(
            "/v2/{}/manifests/1.0",
            repository.split_once('/').unwrap().1
        );
        registry_head(&registry, &path) == 200
    };
    // Publish pushes by digest before the tag: "nothing pushed" is both.
    let digest_exists = || {
        let path = format!(
            "/v2/{}/manifests/{}",
            repository.split_once('/').unwrap().1,
            build.manifest_digest
        );
        registry_head(&registry, &path) == 200
    };

    // A failed scan: refused, nothing pushed.
    gate("scan", xtask::report::Outcome::Failed("1 critical".into()));
    gate("malcontent", xtask::report::Outcome::Passed);
    let output = signer.run(&["publish", "base", "--to", &to, "--key", key, "--no-tlog"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("scan failed: 1 critical"),
        "{}",
        text(&output)
    );
    assert!(!tag_exists());
    assert!(!digest_exists());

    // Every gate passed, but the archive changed after them: refused.
    gate("scan", xtask::report::Outcome::Passed);
    let archive = root.join("out/base/image.tar");
    let original = std::fs::read(&archive).unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(&[0u8; 512]);
    std::fs::write(&archive, &changed).unwrap();
    let output = signer.run(&["publish", "base", "--to", &to, "--key", key, "--no-tlog"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("the archive changed"),
        "{}",
        text(&output)
    );
    assert!(!tag_exists());
    assert!(!digest_exists());
    std::fs::write(&archive, &original).unwrap();

    // A key that is not cosign.pub's pair: refused before pushing.
    let (stranger, _) = key_pair(scratch.path(), "stranger");
    let output = signer.run(&[
        "publish",
        "base",
        "--to",
        &to,
        "--key",
        stranger.to_str().unwrap(),
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("is not the pair of"),
        "{}",
        text(&output)
    );
    assert!(!tag_exists());
    assert!(!digest_exists());

    // Signatures stored where Kyverno does not look (cosign told to keep
    // them in another repository): cosign's own verify finds them there,
    // but publish refuses, and the tag does not move.
    let elsewhere = format!("{registry}/{}", crate::names::unique("publish-elsewhere"));
    let output = signer.run_with(
        &["publish", "base", "--to", &to, "--key", key, "--no-tlog"],
        &[("COSIGN_REPOSITORY", elsewhere)],
    );
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("verified "),
        "cosign's verify passed first: {log}"
    );
    let hex = build.manifest_digest.trim_start_matches("sha256:");
    assert!(
        log.contains(&format!("no signature at {repository}:sha256-{hex}.sig")),
        "{log}"
    );
    assert!(
        log.contains("Kyverno's `type: Cosign` verifier reads only these tags"),
        "{log}"
    );
    assert!(!tag_exists());

    // Cleared: pushed, signed, both SBOMs attested and verified, recorded.
    let output = signer.run(&["publish", "base", "--to", &to, "--key", key, "--no-tlog"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(tag_exists());
    assert!(
        text(&output).contains(&format!("where Kyverno reads them: {repository}:sha256-")),
        "{}",
        text(&output)
    );
    let published = read_json(&root.join("out/base/publish.json"));
    assert_eq!(published["manifest_digest"], build.manifest_digest.as_str());
    assert_eq!(
        published["pinned"],
        format!("{repository}@{}", build.manifest_digest)
    );
    assert_eq!(
        published["predicate_types"],
        serde_json::json!([
            "https://spdx.dev/Document",
            "https://cyclonedx.org/bom",
            "https://slsa.dev/provenance/v1"
        ])
    );
    // The provenance it attested is the one of this build.
    let provenance = read_json(&root.join("out/base/provenance.json"));
    assert_eq!(
        provenance["subject"][0]["digest"]["sha256"],
        build.manifest_digest.trim_start_matches("sha256:")
    );
    assert!(
        published["signature"].as_str().unwrap().ends_with(".sig"),
        "{published}"
    );
    // Anyone with cosign.pub can check it, attestations included.
    let pinned = published["pinned"].as_str().unwrap().to_string();
    let sbom = root.join("out/base/sbom.spdx.json");
    let output = signer.run(&[
        "verify",
        &pinned,
        "--attestations",
        "--sbom",
        sbom.to_str().unwrap(),
        "--no-tlog",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let output = signer.run(&[
        "verify",
        &pinned,
        "--attestations",
        "--type",
        "slsaprovenance1",
        "--provenance",
        root.join("out/base/provenance.json").to_str().unwrap(),
        "--no-tlog",
    ]);
    assert!(output.status.success(), "{}", text(&output));

    // A release tag is taken once (the same digest again is no move) and
    // never moved: publish refuses before pushing, and the tag stays.
    let prefix = format!("{registry}/{}", crate::names::unique("release"));
    let release = |n: u32| format!("{prefix}/base:2026.03.0-{n}");
    for _ in 0..2 {
        let output = signer.run(&[
            "publish",
            "base",
            "--to",
            &release(1),
            "--key",
            key,
            "--no-tlog",
        ]);
        assert!(output.status.success(), "{}", text(&output));
    }
    let other = push_archive(&standin_archive("core-musl"), &release(2));
    let output = signer.run(&[
        "publish",
        "base",
        "--to",
        &release(2),
        "--key",
        key,
        "--no-tlog",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(&format!(
            "{} is a release tag and already names {other}: release tags never move",
            release(2)
        )),
        "{}",
        text(&output)
    );
    let path = format!(
        "/v2/{}/base/manifests/2026.03.0-2",
        prefix.split_once('/').unwrap().1
    );
    let (_, manifest) = registry_get(&registry, &path, MANIFEST_ACCEPT);
    assert_eq!(format!("sha256:{}", sha256_hex(&manifest)), other);

    // The next release, and its notes from the records and from the
    // previous release's verified provenance.
    let output = signer.run(&[
        "publish",
        "base",
        "--to",
        &release(3),
        "--key",
        key,
        "--no-tlog",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let json = scratch.path().join("notes.json");
    let output = signer.run(&[
        "release-notes",
        "--tag",
        "2026.03.0-3",
        "--previous",
        "2026.03.0-1",
        "--prefix",
        &prefix,
        "--no-tlog",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let notes = std::fs::read_to_string(root.join("out/release-notes.md")).unwrap();
    assert!(
        notes.contains(&format!("| base | `{}` |", build.manifest_digest)),
        "{notes}"
    );
    assert!(notes.contains("unchanged (same digest)"), "{notes}");
    assert!(notes.contains("core-busybox 1.37.0"), "{notes}");
    let result = read_document(&json, "release-notes");
    assert_eq!(
        result["images"][0]["previous"]["digest"],
        build.manifest_digest.as_str()
    );
    // A tag of another StageX release is refused.
    let output = signer.run(&["release-notes", "--tag", "2026.06.0-1", "--prefix", &prefix]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    signer.assert_no_leak();
}

#[test]
fn signing_key_init_writes_the_public_key_and_keeps_the_private_one_out() {
    require_tool("cosign");
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("checkout");
    make_checkout(&root);
    let config = scratch.path().join("config");
    let init = |force: bool| {
        let mut args = vec!["signing-key", "init"];
        if force {
            args.push("--force");
        }
        xtask_in_env(
            &root,
            &args,
            &[
                ("COSIGN_PASSWORD", CANARY.to_string()),
                ("XDG_CONFIG_HOME", config.display().to_string()),
            ],
        )
    };
    let output = init(false);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(CANARY));
    let public = std::fs::read_to_string(root.join("cosign.pub")).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    // The admission policy embeds the new key, regenerated in the same run.
    let policy =
        std::fs::read_to_string(root.join("policies/kyverno/stagex-images-signed.yaml")).unwrap();
    let body = public.lines().nth(1).unwrap();
    assert!(policy.contains(body), "{policy}");
    assert!(!policy.contains("MISSING"), "{policy}");
    let private = config.join("stagex-base-images/cosign.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(text(&output).contains("COSIGN_KEY"), "{}", text(&output));
    // The pair works: cosign derives the committed public key from the private one.
    let derived = run_ok(
        std::process::Command::new("cosign")
            .args(["public-key", "--key"])
            .arg(&private)
            .env("COSIGN_PASSWORD", CANARY),
    );
    assert_eq!(String::from_utf8_lossy(&derived.stdout), public);

    let output = init(false);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("--force"), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(root.join("cosign.pub")).unwrap(),
        public
    );
    let output = init(true);
    assert!(output.status.success(), "{}", text(&output));
    assert_ne!(
        std::fs::read_to_string(root.join("cosign.pub")).unwrap(),
        public
    );

    // Never inside the checkout.
    let output = xtask_in_env(
        &root,
        &[
            "signing-key",
            "init",
            "--force",
            "--private-dir",
            root.join("keys").to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", CANARY.to_string())],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("inside the checkout"),
        "{}",
        text(&output)
    );
}

/// A registry that sends clients for tokens to a realm on another port, as a
/// hostile one would: cosign gets a token we asked for anonymously (the realm
/// is not the registry's own), never a password to hand the realm itself,
/// whatever the environment and the docker config hold.
/// What the realm tests sign: a checkout, a key pair, and a stand-in pushed
/// to a repository of its own.
struct Signable {
    scratch: tempfile::TempDir,
    root: PathBuf,
    key: PathBuf,
    public: PathBuf,
    repository: String,
    digest: String,
}

fn signable(registry: &str, name: &str) -> Signable {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    make_checkout(&root);
    let (key, public) = key_pair(scratch.path(), "ours");
    let repository = crate::names::unique(name);
    let digest = push_archive(
        &standin_archive("core-busybox"),
        &format!("{registry}/{repository}:1"),
    );
    Signable {
        scratch,
        root,
        key,
        public,
        repository,
        digest,
    }
}

/// A DOCKER_CONFIG folder under `dir` whose entry for `host` is `auth`
/// (base64 of `user:password`).
fn docker_config(dir: &Path, host: &str, auth: &str) -> PathBuf {
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    docker
}

/// `sign` or `verify` of `pinned` with `key` (the private or public half),
/// no transparency log.
fn cosign_step(
    root: &Path,
    step: &str,
    pinned: &str,
    key: &Path,
    env: &[(&str, String)],
) -> Output {
    xtask_in_env(
        root,
        &[step, pinned, "--key", key.to_str().unwrap(), "--no-tlog"],
        env,
    )
}

#[test]
fn cosign_never_holds_a_password_a_realm_could_receive() {
    use crate::common::proxy::{Answer, Proxy};
    let registry = require_engine();
    let Signable {
        scratch,
        root,
        key,
        public,
        repository,
        digest,
    } = signable(&registry, "realm");
    let token = |body: &str| Answer {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    };
    let realm = Proxy::start(&registry);
    realm.answer_unless("/token", "Basic", token(r#"{"token":"anonymous-token"}"#));
    realm.answer("/token", token(r#"{"token":"minted-with-credentials"}"#));
    let a = Proxy::start(&registry);
    a.challenge(
        "",
        "Bearer ",
        &format!(
            "Bearer realm=\"http://{}/token\",service=\"a\"",
            realm.address
        ),
    );
    // Credentials for A everywhere a careless client would look.
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("ci:registry-canary-77")
    };
    let docker = docker_config(scratch.path(), &a.address, &basic);
    let pinned = format!("{}/{repository}@{digest}", a.address);
    let env = [
        ("COSIGN_PASSWORD", CANARY.to_string()),
        ("XTASK_REGISTRY_USERNAME", "ci".to_string()),
        ("XTASK_REGISTRY_PASSWORD", "registry-canary-77".to_string()),
        ("DOCKER_CONFIG", docker.display().to_string()),
    ];
    let output = cosign_step(&root, "sign", &pinned, &key, &env);
    assert!(output.status.success(), "{}", text(&output));
    let output = cosign_step(&root, "verify", &pinned, &public, &env);
    assert!(output.status.success(), "{}", text(&output));
    for head in realm.heads() {
        assert!(
            !head.to_ascii_lowercase().contains("authorization:"),
            "the realm received credentials:\n{head}"
        );
    }
    let heads = a.heads();
    assert!(
        heads.iter().any(|h| h.contains("Bearer anonymous-token")),
        "{heads:?}"
    );
    assert!(
        heads.iter().all(|h| !h.contains("Basic ")),
        "A was sent a password: {heads:?}"
    );
}

#[test]
fn the_private_key_never_lands_in_the_checkout() {
    require_tool("cosign");
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("checkout");
    make_checkout(&root);
    std::fs::create_dir_all(root.join("keys")).unwrap();
    let outside = scratch.path().join("outside");
    std::os::unix::fs::symlink(root.join("secret"), &outside).unwrap();
    for dir in ["keys", outside.to_str().unwrap()] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(&root)
            .args([
                "--root",
                root.to_str().unwrap(),
                "signing-key",
                "init",
                "--private-dir",
                dir,
            ])
            .env("COSIGN_PASSWORD", CANARY)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{dir}: {}", text(&output));
        assert!(
            text(&output).contains("inside the checkout"),
            "{}",
            text(&output)
        );
    }
    assert!(!root.join("keys/cosign.key").exists());
    assert!(!root.join("secret").exists());
    assert!(!root.join("cosign.pub").exists());
}

/// The token requests `proxy` saw: each one's `scope` parameters and its
/// Authorization header (empty when none).
fn token_requests(heads: &[String]) -> Vec<(Vec<String>, String)> {
    heads
        .iter()
        .filter(|head| head.starts_with("GET /token"))
        .map(|head| {
            let path = head.split_whitespace().nth(1).unwrap();
            let url = reqwest::Url::parse(&format!("http://x{path}")).unwrap();
            let scopes = url
                .query_pairs()
                .filter(|(name, _)| name == "scope")
                .map(|(_, value)| value.into_owned())
                .collect();
            let authorization = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("authorization")
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_default();
            (scopes, authorization)
        })
        .collect()
}

/// A registry whose token realm is its own (so the realm gets the
/// registry's credentials): `sign` asks for the push scope with the
/// environment's push credentials; `verify` asks only for the pull scope,
/// with the docker config's entry and never the push credentials. Guards
/// the `push` flag `reach` passes to `child_auth` and the docker-config-only
/// source of a read.
#[test]
fn cosign_gets_a_push_token_only_to_write_and_reads_with_the_docker_config() {
    use crate::common::proxy::{Answer, Proxy};
    let registry = require_engine();
    let Signable {
        scratch,
        root,
        key,
        public,
        repository,
        digest,
    } = signable(&registry, "scoped");
    let a = Proxy::start(&registry);
    a.answer(
        "GET /token",
        Answer {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"token":"scoped-token"}"#.to_vec(),
        },
    );
    a.challenge(
        "",
        "Bearer ",
        &format!("Bearer realm=\"http://{}/token\",service=\"a\"", a.address),
    );
    let basic = |pair: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let (pusher, reader) = ("pusher:push-canary-31", "reader:read-canary-32");
    let docker = docker_config(scratch.path(), &a.address, &basic(reader)[6..]);
    let env = [
        ("COSIGN_PASSWORD", CANARY.to_string()),
        ("XTASK_REGISTRY_USERNAME", "pusher".to_string()),
        ("XTASK_REGISTRY_PASSWORD", "push-canary-31".to_string()),
        ("DOCKER_CONFIG", docker.display().to_string()),
    ];
    let pinned = format!("{}/{repository}@{digest}", a.address);
    let output = cosign_step(&root, "sign", &pinned, &key, &env);
    assert!(output.status.success(), "{}", text(&output));
    let push_scope = format!("repository:{repository}:pull,push");
    let pull_scope = format!("repository:{repository}:pull");
    let signed = token_requests(&a.heads());
    assert!(
        signed
            .iter()
            .any(|(scopes, auth)| scopes == std::slice::from_ref(&push_scope)
                && *auth == basic(pusher)),
        "sign asked for no push token with the push credentials: {signed:?}"
    );
    let seen = a.heads().len();
    let output = cosign_step(&root, "verify", &pinned, &public, &env);
    assert!(output.status.success(), "{}", text(&output));
    let verified = token_requests(&a.heads()[seen..]);
    assert!(!verified.is_empty(), "verify asked for no token");
    for (scopes, auth) in &verified {
        assert_eq!(scopes, std::slice::from_ref(&pull_scope), "{verified:?}");
        assert_eq!(*auth, basic(reader), "{verified:?}");
    }
}
