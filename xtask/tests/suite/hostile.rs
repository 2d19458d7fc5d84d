//! Registries and inputs that lie: each test is a stub that misbehaves exactly
//! one way, and the rule that holds against it.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::gpg::Signed;
use crate::common::naive_registry::NaiveRegistry;
use crate::common::proxy::{Answer, Proxy};
use crate::common::*;
use base64::Engine as _;
use xtask::oci::archive::OciArchive;
use xtask::oci::auth::{CredentialSource, Role};
use xtask::oci::reference::ImageRef;
use xtask::oci::registry::{self, Registry};

/// `cargo xtask ARGS` with extra environment.
fn xtask_env(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn mirror_args(source: &str, target: &str, signed: &Signed, reference: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "mirror".into(),
        "--registry".into(),
        source.into(),
        "--to-prefix".into(),
        target.into(),
    ];
    args.extend(signed.args());
    args.push(reference.into());
    args
}

/// The target's credentials go to the target only: not to the source, not
/// to the token server the source sends us to. The target demands them (Basic),
/// the source demands a token from a realm on a third port.
#[test]
fn credentials_go_only_to_the_registry_they_are_for() {
    let registry = require_engine();
    let id = crate::names::unique("hostile");
    let digest = push_archive(
        &standin_archive("core-musl"),
        &format!("{registry}/creds-source-{id}/core-cred:1"),
    );
    let signed = Signed::new();
    signed.sign(
        "core-cred",
        Some("1"),
        digest.trim_start_matches("sha256:"),
        2,
    );

    let (user, secret) = ("mirror-bot", "target-secret-5150");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    );
    let target = Proxy::start(&registry);
    target.challenge("", &basic, "Basic realm=\"target\"");
    let tokens = Proxy::start(&registry);
    tokens.answer(
        "/token",
        Answer {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"token":"source-token","expires_in":300}"#.to_vec(),
        },
    );
    let source = Proxy::start(&registry);
    source.challenge(
        "/v2/",
        "Bearer source-token",
        &format!(
            "Bearer realm=\"http://{}/token\",service=\"source\"",
            tokens.address
        ),
    );
    let reference = format!("stagex/core-cred:1@{digest}");
    let args = mirror_args(
        &format!("{}/creds-source-{id}", source.address),
        &format!("{}/creds-target-{id}", target.address),
        &signed,
        &reference,
    );
    let empty_config = tempfile::tempdir().unwrap();
    let output = xtask_env(
        &args,
        &[
            ("XTASK_REGISTRY_USERNAME", user),
            ("XTASK_REGISTRY_PASSWORD", secret),
            ("DOCKER_CONFIG", empty_config.path().to_str().unwrap()),
        ],
    );
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    let encoded = basic.trim_start_matches("Basic ");
    for (who, proxy) in [("the source", &source), ("the token server", &tokens)] {
        for head in proxy.heads() {
            assert!(
                !head.contains(secret) && !head.contains(encoded),
                "{who} received the target's secret:\n{head}"
            );
        }
    }
    assert!(
        tokens
            .heads()
            .iter()
            .all(|h| !h.to_ascii_lowercase().contains("authorization:")),
        "the realm is on another host and nothing was configured for it: {:?}",
        tokens.heads()
    );
    assert!(
        source
            .heads()
            .iter()
            .any(|h| h.contains("Bearer source-token")),
        "the source was read with its token"
    );
    assert!(
        target.heads().iter().any(|h| h.contains(&basic)),
        "the target got its credentials"
    );
    assert!(!log.contains(secret), "{log}");
}

/// A target that commits whatever it is sent, and bytes that are not the
/// blob: the upload session is cancelled, never committed, and no manifest
/// follows. Once for `push` (a corrupt archive whose record was forged to
/// match), once for `mirror` (a proxy flips a byte of the source's blob).
#[test]
fn corrupt_bytes_are_never_committed_even_where_the_registry_would() {
    let registry = require_engine();
    let id = crate::names::unique("hostile");

    // push
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build", "base-static"]);
    assert!(output.status.success(), "{}", text(&output));
    let archive_path = root.join("out/base-static/image.tar");
    let archive = OciArchive::open(&archive_path).unwrap();

    // A record whose archive bytes match but whose manifest digest is
    // another: refused before anything is sent (guards push_verified's
    // archive-manifest-versus-record check).
    let built = record(root, "base-static");
    let mut other = built.clone();
    other.manifest_digest = format!("sha256:{}", "1".repeat(64));
    other.save(root).unwrap();
    let naive = NaiveRegistry::start();
    let to = format!("{}/pushed/base-static:1", naive.address);
    let output = xtask_in(
        root,
        &["push", "base-static", "--to", &to, "--allow-ungated"],
    );
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "holds manifest {}, but the build record says {}: rebuild `base-static`",
            archive.manifest_digest(),
            other.manifest_digest
        )),
        "{log}"
    );
    assert!(naive.events().is_empty(), "{:?}", naive.events());
    built.save(root).unwrap();

    let layer = archive.manifest.layers[0].clone();
    let location = archive.blob_location(&layer.digest).unwrap();
    let mut bytes = std::fs::read(&archive_path).unwrap();
    bytes[(location.offset + location.size / 2) as usize] ^= 0xff;
    std::fs::write(&archive_path, &bytes).unwrap();
    let mut forged = record(root, "base-static");
    forged.archive_sha256 = sha256_hex(&bytes);
    forged.save(root).unwrap();
    let naive = NaiveRegistry::start();
    let to = format!("{}/pushed/base-static:1", naive.address);
    let output = xtask_in(
        root,
        &["push", "base-static", "--to", &to, "--allow-ungated"],
    );
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("not uploading it"), "{log}");
    let events = naive.events();
    assert!(!naive.has_blob(&layer.digest), "{events:?}");
    assert!(events.iter().any(|e| e.starts_with("cancel")), "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with(&format!("commit {}", layer.digest))),
        "{events:?}"
    );
    assert_eq!(naive.manifests(), 0, "{events:?}");

    // mirror
    let standin = standin_archive("core-busybox");
    let digest = push_archive(
        &standin,
        &format!("{registry}/corrupt-source-{id}/core-flip:1"),
    );
    let blob = OciArchive::open(&standin).unwrap().manifest.layers[0]
        .digest
        .clone();
    let signed = Signed::new();
    signed.sign(
        "core-flip",
        Some("1"),
        digest.trim_start_matches("sha256:"),
        2,
    );
    let source = Proxy::start(&registry);
    source.corrupt(&format!("/blobs/{blob}"));
    let naive = NaiveRegistry::start();
    let args = mirror_args(
        &format!("{}/corrupt-source-{id}", source.address),
        &format!("{}/mirrored", naive.address),
        &signed,
        &format!("stagex/core-flip:1@{digest}"),
    );
    let output = xtask_env(&args, &[]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("reads as sha256:"), "{log}");
    assert!(
        !log.contains("retrying"),
        "a wrong digest is not retried: {log}"
    );
    let events = naive.events();
    assert!(!naive.has_blob(&blob), "{events:?}");
    assert!(events.iter().any(|e| e.starts_with("cancel")), "{events:?}");
    assert_eq!(naive.manifests(), 0, "{events:?}");
}

/// A manifest whose media type carries a control character, from an archive
/// and from a registry: refused with a message, never a panic (exit 101).
#[test]
fn hostile_manifests_are_refused_not_panicked_on() {
    let registry = require_engine();
    let id = crate::names::unique("hostile");
    let bad = "application/vnd.oci.image.manifest.v1+json\\u0007";
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build", "base-static"]);
    assert!(output.status.success(), "{}", text(&output));

    // Through push: the archive's manifest, rewritten, and a record to match.
    let archive_path = root.join("out/base-static/image.tar");
    let archive = OciArchive::open(&archive_path).unwrap();
    let manifest = String::from_utf8(archive.manifest_bytes.clone()).unwrap();
    let hostile = manifest.replacen(
        "\"mediaType\": \"application/vnd.oci.image.manifest.v1+json\"",
        &format!("\"mediaType\": \"{bad}\""),
        1,
    );
    assert_ne!(hostile, manifest, "{manifest}");
    let unpacked = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive_path)
            .arg("-C")
            .arg(unpacked.path()),
    );
    let blobs = unpacked.path().join("blobs/sha256");
    let hostile_hex = sha256_hex(hostile.as_bytes());
    std::fs::write(blobs.join(&hostile_hex), &hostile).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{hostile_hex}"),
            "size": hostile.len(),
        }],
    });
    std::fs::write(unpacked.path().join("index.json"), index.to_string()).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&archive_path)
            .arg("-C")
            .arg(unpacked.path())
            .arg("."),
    );
    let mut forged = record(root, "base-static");
    forged.archive_sha256 = sha256_file(&archive_path);
    forged.manifest_digest = format!("sha256:{hostile_hex}");
    forged.save(root).unwrap();
    let to = format!("{registry}/hostile-{id}/base-static:1");
    let output = xtask_in(
        root,
        &["push", "base-static", "--to", &to, "--allow-ungated"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("is not a media type"),
        "{}",
        text(&output)
    );

    // Through mirror: a source that serves it under the digest that was signed.
    let signed = Signed::new();
    signed.sign("core-bad", Some("1"), &hostile_hex, 2);
    let source = Proxy::start(&registry);
    source.answer(
        "/manifests/",
        Answer {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            body: hostile.clone().into_bytes(),
        },
    );
    let args = mirror_args(
        &format!("{}/whatever", source.address),
        &format!("{registry}/hostile-target-{id}"),
        &signed,
        &format!("stagex/core-bad:1@sha256:{hostile_hex}"),
    );
    let output = xtask_env(&args, &[]);
    assert_ne!(output.status.code(), Some(101), "{}", text(&output));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("is not a media type"),
        "{}",
        text(&output)
    );
}

/// No credentials from the environment, and a docker config that holds
/// `auths` (JSON) only.
fn docker_config(dir: &Path, auths: serde_json::Value) -> CredentialSource {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::json!({ "auths": auths }).to_string()).unwrap();
    CredentialSource {
        target: None,
        source: None,
        docker_config: path,
    }
}

/// A token answer with this body.
fn token_answer(body: &str) -> Answer {
    Answer {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}

/// Registry A (a proxy on one port) sends us for tokens to a realm on
/// another port, and the docker config holds credentials for that realm's
/// host:port (as it would for ghcr.io when A names ghcr.io's realm). The
/// realm is asked anonymously, so A never gets a token minted with them.
#[test]
fn a_realm_elsewhere_never_gets_the_credentials_of_its_own_host() {
    let registry = require_engine();
    let realm = Proxy::start(&registry);
    let (user, secret) = ("realm-user", "realm-secret-8086");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    // Anonymous requests get an anonymous token; any other request a token
    // minted with whatever it carried.
    realm.answer_unless(
        "/token",
        "Basic",
        token_answer(r#"{"token":"anonymous-token","expires_in":300}"#),
    );
    realm.answer(
        "/token",
        token_answer(r#"{"token":"minted-with-credentials","expires_in":300}"#),
    );
    let a = Proxy::start(&registry);
    a.challenge(
        "",
        "Bearer ",
        &format!(
            "Bearer realm=\"http://{}/token\",service=\"{}\"",
            realm.address, realm.address
        ),
    );
    let config = tempfile::tempdir().unwrap();
    let source = docker_config(
        config.path(),
        serde_json::json!({ realm.address.clone(): { "auth": basic } }),
    );
    let reference = ImageRef::parse(&format!(
        "{}/{}/x:1",
        a.address,
        crate::names::unique("realm-test")
    ))
    .unwrap();
    let found = registry::block_on(async {
        let client = Registry::connect(&a.address, Role::Source, &source).await?;
        client.manifest_digest(&reference).await
    })
    .unwrap();
    assert_eq!(found.unwrap(), None, "asked, and there is no such image");
    let realm_heads = realm.heads();
    assert!(!realm_heads.is_empty(), "a token was asked for");
    for head in &realm_heads {
        assert!(
            !head.to_ascii_lowercase().contains("authorization:"),
            "the realm received credentials:\n{head}"
        );
    }
    let a_heads = a.heads();
    assert!(
        a_heads.iter().any(|h| h.contains("Bearer anonymous-token")),
        "{a_heads:?}"
    );
    assert!(
        a_heads
            .iter()
            .all(|h| !h.contains("minted-with-credentials")),
        "registry A got a token minted with the realm host's credentials: {a_heads:?}"
    );
}

/// A realm that says its token lives u64::MAX seconds, or 0: no overflow,
/// no panic; the token is used, and asked again when it may have expired.
#[test]
fn token_lifetimes_a_realm_makes_up_are_clamped() {
    let registry = require_engine();
    for expires_in in ["18446744073709551615", "0"] {
        let realm = Proxy::start(&registry);
        realm.answer(
            "/token",
            token_answer(&format!(r#"{{"token":"t","expires_in":{expires_in}}}"#)),
        );
        let a = Proxy::start(&registry);
        a.challenge(
            "",
            "Bearer t",
            &format!("Bearer realm=\"http://{}/token\"", realm.address),
        );
        let config = tempfile::tempdir().unwrap();
        let source = docker_config(config.path(), serde_json::json!({}));
        let reference = ImageRef::parse(&format!(
            "{}/{}/x:1",
            a.address,
            crate::names::unique("lifetime")
        ))
        .unwrap();
        let found = registry::block_on(async {
            let client = Registry::connect(&a.address, Role::Source, &source).await?;
            // Twice: the second from the cache the lifetime went into.
            client.manifest_digest(&reference).await?;
            client.manifest_digest(&reference).await
        })
        .unwrap();
        assert_eq!(found.unwrap(), None, "expires_in {expires_in}");
        assert_eq!(
            realm.heads().len(),
            1,
            "expires_in {expires_in}: one token, used twice"
        );
    }
}

/// Stubs that hold forever get a tiny idle limit: the outcome does not
/// depend on how fast anything is.
const TINY_IDLE: (&str, &str) = ("XTASK_HTTP_IDLE_TIMEOUT", "0.3");

/// A source that answers a blob's GET with its head and one byte, then
/// nothing, ever; and a target that never answers the upload's PATCH. Each
/// time the mirror says the transfer stalled, tries again within its budget,
/// fails (exit 2) and commits nothing.
#[test]
fn stalled_transfers_end_and_commit_nothing() {
    let registry = require_engine();
    let id = crate::names::unique("hostile");
    let standin = standin_archive("core-busybox");
    let digest = push_archive(
        &standin,
        &format!("{registry}/stall-source-{id}/core-stall:1"),
    );
    let blobs: Vec<String> = OciArchive::open(&standin)
        .unwrap()
        .manifest
        .blobs()
        .map(|b| b.digest.clone())
        .collect();
    let signed = Signed::new();
    signed.sign(
        "core-stall",
        Some("1"),
        digest.trim_start_matches("sha256:"),
        2,
    );
    let reference = format!("stagex/core-stall:1@{digest}");
    let check = |output: &Output, naive: &NaiveRegistry, expected: &str| {
        let log = text(output);
        assert_eq!(output.status.code(), Some(2), "{log}");
        assert!(log.contains(expected), "{log}");
        assert!(log.contains("retrying"), "{log}");
        let events = naive.events();
        for blob in &blobs {
            assert!(!naive.has_blob(blob), "{blob} committed: {events:?}");
        }
        assert!(
            !events.iter().any(|e| e.starts_with("commit")),
            "{events:?}"
        );
        assert_eq!(naive.manifests(), 0, "{events:?}");
    };

    // The source stalls in the middle of every blob.
    let source = Proxy::start(&registry);
    source.stall("/blobs/");
    let naive = NaiveRegistry::start();
    let args = mirror_args(
        &format!("{}/stall-source-{id}", source.address),
        &format!("{}/mirrored", naive.address),
        &signed,
        &reference,
    );
    let output = xtask_env(&args, &[TINY_IDLE]);
    check(&output, &naive, "stalled: no byte for 300ms");

    // The target takes the PATCH's head and then neither reads nor answers.
    let naive = NaiveRegistry::start();
    let target = Proxy::start(&naive.address);
    target.hold("PATCH ");
    let args = mirror_args(
        &format!("{registry}/stall-source-{id}"),
        &format!("{}/mirrored", target.address),
        &signed,
        &reference,
    );
    let output = xtask_env(&args, &[TINY_IDLE]);
    check(
        &output,
        &naive,
        "stalled: the registry took no byte and gave no answer for 300ms",
    );
}

/// A registry that loses an upload session (404 on the commit: what
/// distribution answers a retried PUT whose first try did commit) costs a new
/// session, or nothing when the blob is there already; never a failed push.
#[test]
fn a_lost_upload_session_starts_over_or_finds_its_blob() {
    let registry = require_engine();
    let id = crate::names::unique("hostile");
    let standin = standin_archive("core-busybox");
    let blobs = OciArchive::open(&standin).unwrap().manifest.layers.len() + 1;

    // Lost before it committed: the blob is not there, a new session is made.
    let proxy = Proxy::start(&registry);
    let repository = format!("lost-session-{id}/busybox");
    proxy.fail(&format!("PUT /v2/{repository}/blobs/uploads/"), 404, 1);
    push_archive(&standin, &format!("{}/{repository}:1", proxy.address));
    let sessions = |proxy: &Proxy, repository: &str| {
        proxy
            .seen()
            .iter()
            .filter(|head| head.starts_with(&format!("POST /v2/{repository}/blobs/uploads/")))
            .count()
    };
    assert_eq!(
        sessions(&proxy, &repository),
        blobs + 1,
        "{:?}",
        proxy.seen()
    );

    // Lost after it committed (the blob is there): no new session.
    let proxy = Proxy::start(&registry);
    let again = format!("lost-answer-{id}/busybox");
    push_archive(&standin, &format!("{registry}/{again}:1"));
    proxy.fail(&format!("PUT /v2/{again}/blobs/uploads/"), 404, 1);
    // The blobs exist: push would HEAD and skip them, so one is uploaded
    // through the library, which must take the 404 for done.
    let archive = OciArchive::open(&standin).unwrap();
    let layer = archive.manifest.layers[0].clone();
    let target = ImageRef::parse(&format!("{}/{again}:1", proxy.address)).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut archive.blob_reader(&layer.digest).unwrap(), &mut bytes)
        .unwrap();
    registry::block_on(async {
        let client = Registry::connect_to(&target, Role::Target).await?;
        let stream = futures_util::stream::iter([Ok::<_, xtask::oci::transfer::BlobError>(
            bytes::Bytes::from(bytes),
        )]);
        client
            .upload_blob(&again, &layer.digest, layer.size, stream)
            .await
    })
    .unwrap()
    .unwrap();
    assert_eq!(sessions(&proxy, &again), 1, "{:?}", proxy.seen());
}

/// A source that serves other manifest bytes than the signed digest's (a
/// valid manifest, one space added) is refused, and the target never gets a
/// manifest (guards the served-bytes check in commands/mirror/copy.rs).
#[test]
fn a_manifest_unlike_the_signed_digest_is_never_mirrored() {
    let registry = require_engine();
    let id = crate::names::unique("hostile");
    let archive = OciArchive::open(&standin_archive("core-busybox")).unwrap();
    let manifest = String::from_utf8(archive.manifest_bytes.clone()).unwrap();
    let signed_hex = archive
        .manifest_digest()
        .trim_start_matches("sha256:")
        .to_string();
    let signed = Signed::new();
    signed.sign("core-swapped", Some("1"), &signed_hex, 2);
    let source = Proxy::start(&registry);
    let served = format!("{manifest} ");
    source.answer(
        "/manifests/",
        Answer {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            body: served.into_bytes(),
        },
    );
    let target = format!("{registry}/swapped-target-{id}");
    let args = mirror_args(
        &format!("{}/whatever", source.address),
        &target,
        &signed,
        &format!("stagex/core-swapped:1@sha256:{signed_hex}"),
    );
    let output = xtask_env(&args, &[]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("not the signed sha256:{signed_hex}")),
        "{log}"
    );
    let (status, _) = registry_get(
        &registry,
        &format!("/v2/swapped-target-{id}/core-swapped/manifests/sha256:{signed_hex}"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(status, 404, "the target has the manifest");
}

/// A registry that sends the upload to another host (its `Location`) is not
/// followed: the push fails naming it, and the other host gets nothing
/// (guards `Registry::location`).
#[test]
fn an_upload_sent_elsewhere_is_not_followed() {
    let registry = require_engine();
    let id = crate::names::unique("hostile");
    let standin = standin_archive("core-busybox");
    // Another loopback address: another host, which counts and drops every
    // connection.
    let elsewhere = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let address = elsewhere.local_addr().unwrap();
    let contacted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = contacted.clone();
    std::thread::spawn(move || {
        for stream in elsewhere.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let proxy = Proxy::start(&registry);
    let repository = format!("sent-elsewhere-{id}/busybox");
    proxy.answer(
        &format!("POST /v2/{repository}/blobs/uploads/"),
        Answer {
            status: 202,
            headers: vec![(
                "Location".into(),
                format!("http://{address}/v2/{repository}/blobs/uploads/stolen"),
            )],
            body: Vec::new(),
        },
    );
    let archive = OciArchive::open(&standin).unwrap();
    let target = ImageRef::parse(&format!("{}/{repository}:1", proxy.address)).unwrap();
    let pushed = registry::block_on(async {
        let client = Registry::connect_to(&target, Role::Target).await?;
        xtask::oci::transfer::push_archive(&client, &archive, &target).await
    })
    .unwrap();
    let error = format!("{:#}", pushed.unwrap_err());
    assert!(error.contains("not following it elsewhere"), "{error}");
    assert_eq!(
        contacted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the other host was contacted"
    );
}

/// `push --to` names a tag: a digest there is refused before anything runs.
#[test]
fn push_refuses_a_digest_as_its_destination() {
    let output = xtask(&[
        "push",
        "base",
        "--to",
        &format!("127.0.0.1:9/x/base@sha256:{}", "a".repeat(64)),
    ]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(log.contains("name a tag, not a digest"), "{log}");
}

/// A registry that takes the push but then resolves the tag to another
/// digest (it rewrote the manifest): the push fails saying so (guards the
/// post-push check of `transfer::push_archive`; the manifest pulled back by
/// the archive's digest is still the archive's, so nothing later catches it).
#[test]
fn a_registry_that_rewrote_the_manifest_fails_the_push() {
    let registry = require_engine();
    let standin = standin_archive("core-busybox");
    let repository = format!("{}/busybox", crate::names::unique("rewrote"));
    let proxy = Proxy::start(&registry);
    let other = format!("sha256:{}", "0".repeat(64));
    proxy.answer(
        &format!("HEAD /v2/{repository}/manifests/1 "),
        Answer {
            status: 200,
            headers: vec![("Docker-Content-Digest".into(), other.clone())],
            body: Vec::new(),
        },
    );
    let archive = OciArchive::open(&standin).unwrap();
    let target = ImageRef::parse(&format!("{}/{repository}:1", proxy.address)).unwrap();
    let pushed = registry::block_on(async {
        let client = Registry::connect_to(&target, Role::Target).await?;
        xtask::oci::transfer::push_archive(&client, &archive, &target).await
    })
    .unwrap();
    let error = pushed.unwrap_err();
    assert!(error.is::<xtask::error::Failure>(), "{error:#}");
    assert_eq!(
        error.to_string(),
        format!(
            "{target} resolves to Some(\"{other}\") after the push, not {}: the registry rewrote the manifest",
            archive.manifest_digest()
        )
    );
}

/// A body of `size` bytes whose first line is `first`.
fn padded(first: &str, size: usize) -> Vec<u8> {
    let mut body = format!("{first}\n").into_bytes();
    body.resize(size, b'x');
    body
}

/// Each call site of `read_bounded` passes its own limit, and a stub serving
/// one byte more than it is refused there: a token answer (64 KiB), a
/// manifest (4 MiB), an error body (64 KiB: the error then quotes none of
/// it, where an unbounded read would quote its first line). Guards the
/// limits at each call site.
#[test]
fn every_body_read_from_a_registry_is_bounded_where_it_is_read() {
    let registry = require_engine();
    let small = 64 << 10;
    let config = tempfile::tempdir().unwrap();
    let source = docker_config(config.path(), serde_json::json!({}));

    // A token answer one byte over 64 KiB (valid JSON holding a token).
    let realm = Proxy::start(&registry);
    let mut token = String::from("{\"token\":\"t\",\"pad\":\"");
    token.push_str(&"x".repeat(small + 1 - token.len() - 2));
    token.push_str("\"}");
    assert_eq!(token.len(), small + 1);
    serde_json::from_str::<serde_json::Value>(&token).unwrap();
    realm.answer("/token", token_answer(&token));
    let a = Proxy::start(&registry);
    a.challenge(
        "",
        "Bearer t",
        &format!("Bearer realm=\"http://{}/token\"", realm.address),
    );
    let reference = ImageRef::parse(&format!(
        "{}/{}/x:1",
        a.address,
        crate::names::unique("bounded-token")
    ))
    .unwrap();
    let found = registry::block_on(async {
        let client = Registry::connect(&a.address, Role::Source, &source).await?;
        client.manifest_digest(&reference).await
    })
    .unwrap();
    let error = format!("{:#}", found.unwrap_err());
    assert!(
        error.contains("the answer is larger than 65536 bytes"),
        "{error}"
    );

    // A manifest one byte over 4 MiB.
    let proxy = Proxy::start(&registry);
    let repository = crate::names::unique("bounded-manifest");
    proxy.answer(
        &format!("GET /v2/{repository}/manifests/1 "),
        Answer {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            body: padded("{}", (4 << 20) + 1),
        },
    );
    // An error body one byte over 64 KiB, for a 403 and for a 500.
    let marker = "error-body-first-line";
    for (tag, status) in [("forbidden", 403), ("broken", 500)] {
        proxy.answer(
            &format!("GET /v2/{repository}/manifests/{tag} "),
            Answer {
                status,
                headers: vec![],
                body: padded(marker, small + 1),
            },
        );
    }
    let pulled = |tag: &str| {
        let reference = ImageRef::parse(&format!("{}/{repository}:{tag}", proxy.address)).unwrap();
        let source = source.clone();
        registry::block_on(async move {
            let client = Registry::connect(reference.api_host(), Role::Source, &source).await?;
            client.pull_manifest(&reference).await
        })
        .unwrap()
    };
    let error = format!("{:#}", pulled("1").unwrap_err());
    assert!(
        error.contains("the answer is larger than 4194304 bytes"),
        "{error}"
    );
    for tag in ["forbidden", "broken"] {
        let error = format!("{:#}", pulled(tag).unwrap_err());
        assert!(error.contains(&format!("/manifests/{tag}")), "{error}");
        assert!(!error.contains(marker), "{tag}: {error}");
    }
    // Within the limit, the first line is quoted: the stub is read.
    proxy.answer(
        &format!("GET /v2/{repository}/manifests/small "),
        Answer {
            status: 403,
            headers: vec![],
            body: padded(marker, small),
        },
    );
    let error = format!("{:#}", pulled("small").unwrap_err());
    assert!(error.contains(marker), "{error}");
}
