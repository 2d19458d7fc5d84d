//! `keys fetch` against a local keyserver speaking VKS, and the trust list in
//! `signatures verify`: a key is accepted only under its own fingerprint,
//! reduced to what it says about itself, with what changed reported.

use std::path::Path;

use crate::common::*;
use openpgp::cert::{Cert, CertBuilder};
use openpgp::packet::Packet;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::SignatureType;
use sequoia_openpgp as openpgp;

fn generate(name: &str, subkeys: usize) -> (Cert, openpgp::packet::Signature) {
    let mut builder = CertBuilder::new().add_userid(format!("{name} <{name}@example.com>"));
    for _ in 0..subkeys {
        builder = builder.add_signing_subkey();
    }
    builder.generate().unwrap()
}

fn fingerprint(cert: &Cert) -> String {
    cert.fingerprint().to_hex()
}

/// `certifier` certifies `cert`'s first user ID: a third party's signature.
fn certified_by(cert: &Cert, certifier: &Cert) -> Cert {
    let mut signer = certifier
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let userid = cert.userids().next().unwrap().userid().clone();
    let certification = userid
        .certify(
            &mut signer,
            cert,
            SignatureType::GenericCertification,
            None,
            None,
        )
        .unwrap();
    let (cert, _) = cert
        .clone()
        .insert_packets(vec![Packet::from(userid), certification.into()])
        .unwrap();
    cert
}

fn serve(keyserver: &Path, under: &str, cert: &Cert) {
    let dir = keyserver.join("vks/v1/by-fingerprint");
    std::fs::create_dir_all(&dir).unwrap();
    let public = cert.clone().strip_secret_key_material();
    std::fs::write(dir.join(under), public.armored().to_vec().unwrap()).unwrap();
}

fn read_key(path: &Path) -> Cert {
    Cert::from_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn keys_are_accepted_only_under_their_fingerprint_and_changes_are_named() {
    let (alice, _) = generate("alice", 2);
    let (bob, bob_revocation) = generate("bob", 1);
    let (mallory, _) = generate("mallory", 1);
    let (dave, _) = generate("dave", 1);
    let keys = tempfile::tempdir().unwrap();
    let mut list = String::from("# maintainer\tfingerprint\twhere\n");
    for (name, cert) in [("Alice", &alice), ("Bob", &bob), ("Dave", &dave)] {
        list.push_str(&format!("{name}\t{}\ttest\n", fingerprint(cert)));
    }
    std::fs::write(keys.path().join("fingerprints.tsv"), list).unwrap();
    // Alice's key as we hold it: one subkey less than she has now.
    let first_subkey = alice.keys().subkeys().next().unwrap().key().fingerprint();
    let held = alice
        .clone()
        .strip_secret_key_material()
        .retain_subkeys(|k| k.key().fingerprint() == first_subkey);
    std::fs::write(
        keys.path().join(format!("{}.asc", fingerprint(&alice))),
        held.armored().to_vec().unwrap(),
    )
    .unwrap();

    let keyserver = tempfile::tempdir().unwrap();
    serve(
        keyserver.path(),
        &fingerprint(&alice),
        &certified_by(&alice, &mallory),
    );
    let (revoked, _) = bob.clone().insert_packets(bob_revocation).unwrap();
    serve(keyserver.path(), &fingerprint(&bob), &revoked);
    // Under Dave's fingerprint the server sends Mallory's key.
    serve(keyserver.path(), &fingerprint(&dave), &mallory);
    let url = serve_files(keyserver.path());
    let json = keys.path().join("fetch.json");
    let output = xtask(&[
        "keys",
        "fetch",
        "--keyserver",
        &url,
        "--dir",
        keys.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let log = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "Dave's key is refused:\n{log}"
    );
    let results = read_document(&json, "keys-fetch");
    let row = |name: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["maintainer"] == name)
            .unwrap()
            .clone()
    };
    let details = |name: &str| row(name)["details"].to_string();

    assert_eq!(row("Alice")["outcome"], "updated", "{log}");
    let second = alice.keys().subkeys().nth(1).unwrap().key().fingerprint();
    assert!(
        details("Alice").contains(&format!("new subkey {}", second.to_hex())),
        "{log}"
    );
    let written = read_key(&keys.path().join(format!("{}.asc", fingerprint(&alice))));
    assert!(!written.is_tsk());
    assert_eq!(written.keys().subkeys().count(), 2);
    let userid = written.userids().next().unwrap();
    assert_eq!(
        userid.certifications().count(),
        0,
        "Mallory's certification is gone"
    );
    assert_eq!(userid.self_signatures().count(), 1);

    assert_eq!(row("Bob")["outcome"], "new", "{log}");
    assert!(details("Bob").contains("REVOKED"), "{log}");
    let policy = StandardPolicy::new();
    let bob_written = read_key(&keys.path().join(format!("{}.asc", fingerprint(&bob))));
    assert!(matches!(
        bob_written.revocation_status(&policy, None),
        openpgp::types::RevocationStatus::Revoked(_)
    ));

    assert_eq!(row("Dave")["outcome"], "refused", "{log}");
    assert!(
        details("Dave").contains(&format!("offered: {}", fingerprint(&mallory))),
        "{log}"
    );
    assert!(!keys
        .path()
        .join(format!("{}.asc", fingerprint(&dave)))
        .exists());
    assert!(!keys
        .path()
        .join(format!("{}.asc", fingerprint(&mallory)))
        .exists());

    // A second run changes nothing Alice's file says.
    let before = std::fs::read(keys.path().join(format!("{}.asc", fingerprint(&alice)))).unwrap();
    let again = xtask(&[
        "keys",
        "fetch",
        "--keyserver",
        &url,
        "--dir",
        keys.path().to_str().unwrap(),
    ]);
    assert!(text(&again).contains("unchanged"), "{}", text(&again));
    assert_eq!(
        std::fs::read(keys.path().join(format!("{}.asc", fingerprint(&alice)))).unwrap(),
        before
    );

    // A key file not on the trust list is ignored by `signatures verify`, which says so.
    std::fs::write(
        keys.path().join("mallory.asc"),
        mallory
            .clone()
            .strip_secret_key_material()
            .armored()
            .to_vec()
            .unwrap(),
    )
    .unwrap();
    let empty = tempfile::tempdir().unwrap();
    let output = xtask(&[
        "signatures",
        "verify",
        &format!("stagex/core-musl@sha256:{}", "e".repeat(64)),
        "--lookaside",
        &format!("file://{}", empty.path().display()),
        "--keyring",
        keys.path().to_str().unwrap(),
        "--threshold",
        "1",
    ]);
    let log = text(&output);
    assert!(
        log.contains(&format!(
            "ignored {}: key {} is not in fingerprints.tsv",
            keys.path().join("mallory.asc").display(),
            fingerprint(&mallory)
        )),
        "{log}"
    );
}

/// A trust list naming `cert`, in a fresh keyring folder.
/// `keys fetch --dir KEYS` from a keyserver (VKS) serving `bytes` under
/// `cert`'s fingerprint, with `extra` arguments.
fn fetch_served(keys: &Path, cert: &Cert, bytes: &[u8], extra: &[&str]) -> std::process::Output {
    let keyserver = tempfile::tempdir().unwrap();
    let dir = keyserver.path().join("vks/v1/by-fingerprint");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(fingerprint(cert)), bytes).unwrap();
    let url = serve_files(keyserver.path());
    let mut args = vec!["keys", "fetch", "--keyserver", &url, "--dir"];
    args.push(keys.to_str().unwrap());
    args.extend(extra);
    xtask(&args)
}

fn trusting(cert: &Cert) -> tempfile::TempDir {
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(
        keys.path().join("fingerprints.tsv"),
        format!("Alice\t{}\ttest\n", fingerprint(cert)),
    )
    .unwrap();
    keys
}

/// The keyserver sends Alice's certificate with Mallory's subkey and
/// Mallory's own binding signature appended: the subkey is not Alice's, so it
/// is neither stored nor reported as new.
#[test]
fn a_foreign_subkey_appended_to_a_key_is_dropped() {
    let (alice, _) = generate("alice", 1);
    let (mallory, _) = generate("mallory", 1);
    let mallory = mallory.strip_secret_key_material();
    let foreign = mallory.keys().subkeys().next().unwrap();
    let foreign_fingerprint = foreign.key().fingerprint().to_hex();
    let mut bytes = alice.clone().strip_secret_key_material().to_vec().unwrap();
    bytes.extend(Packet::from(foreign.key().clone()).to_vec().unwrap());
    for binding in foreign.bundle().self_signatures() {
        bytes.extend(Packet::from(binding.clone()).to_vec().unwrap());
    }
    // As served, the subkey is part of Alice's certificate.
    let offered = Cert::from_bytes(&bytes).unwrap();
    assert!(offered
        .keys()
        .subkeys()
        .any(|k| k.key().fingerprint().to_hex() == foreign_fingerprint));

    let keys = trusting(&alice);
    let json = keys.path().join("fetch.json");
    let output = fetch_served(
        keys.path(),
        &alice,
        &bytes,
        &["--json", json.to_str().unwrap()],
    );
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    let row = &read_document(&json, "keys-fetch")[0];
    assert_eq!(row["outcome"], "new", "{log}");
    assert!(
        row["details"].to_string().contains("new key, 1 subkey(s)"),
        "{log}"
    );
    assert!(!log.contains(&foreign_fingerprint), "{log}");
    let written = read_key(&keys.path().join(format!("{}.asc", fingerprint(&alice))));
    let subkeys: Vec<String> = written
        .keys()
        .subkeys()
        .map(|k| k.key().fingerprint().to_hex())
        .collect();
    assert_eq!(subkeys.len(), 1, "{subkeys:?}");
    assert!(!subkeys.contains(&foreign_fingerprint), "{subkeys:?}");
}

/// Plain HTTP off loopback, however the scheme is spelt, from the command
/// line or through a redirect, for the keyserver and for WKD: refused,
/// naming the URL (192.0.2.2 is TEST-NET: never reached).
#[test]
fn keys_never_come_over_plain_http_off_loopback() {
    let (alice, _) = generate("alice", 1);
    let keys = trusting(&alice);
    let dir = keys.path().to_str().unwrap();
    let fetch = |extra: &[&str]| {
        let mut args = vec!["keys", "fetch", "--dir", dir];
        args.extend(extra);
        xtask(&args)
    };

    for keyserver in [
        "HTTP://192.0.2.2:9",
        "Http://192.0.2.2:9/",
        "http://192.0.2.2",
    ] {
        let output = fetch(&["--keyserver", keyserver]);
        let log = text(&output);
        assert_eq!(output.status.code(), Some(2), "{keyserver}: {log}");
        assert!(
            log.contains("--keyserver") && log.contains("keys are fetched over https://"),
            "{keyserver}: {log}"
        );
    }

    let empty = tempfile::tempdir().unwrap();
    let local = serve_files(empty.path());
    let output = fetch(&[
        "--keyserver",
        &local,
        "--wkd",
        "--wkd-base",
        "HTTP://192.0.2.2:9/{domain}",
    ]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains("--wkd-base") && log.contains("keys are fetched over https://"),
        "{log}"
    );

    let redirecting = serve_redirect("http://192.0.2.2:9");
    let json = keys.path().join("fetch.json");
    let output = fetch(&[
        "--keyserver",
        &redirecting,
        "--json",
        json.to_str().unwrap(),
    ]);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    let row = &read_document(&json, "keys-fetch")[0];
    assert_eq!(row["outcome"], "unavailable", "{log}");
    let expected = format!(
        "redirected to http://192.0.2.2:9/vks/v1/by-fingerprint/{}: refused",
        fingerprint(&alice)
    );
    assert!(row["details"].to_string().contains(&expected), "{log}");
    assert!(!keys
        .path()
        .join(format!("{}.asc", fingerprint(&alice)))
        .exists());
}

/// A keyserver that sends more than a key could be (1 MiB: a key with
/// padding after it) is refused at the limit, named, and nothing is
/// written. Guards the limit `keys fetch` passes to `get_small_file`.
#[test]
fn a_keyserver_sending_more_than_a_key_is_refused_at_the_limit() {
    let (alice, _) = generate("alice", 1);
    let keys = trusting(&alice);
    let mut bytes = alice.clone().strip_secret_key_material().to_vec().unwrap();
    bytes.resize((1 << 20) + 1, 0);
    let output = fetch_served(keys.path(), &alice, &bytes, &[]);
    let log = text(&output);
    assert_ne!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("the answer is larger than 1048576 bytes"),
        "{log}"
    );
    assert!(
        !keys
            .path()
            .join(format!("{}.asc", fingerprint(&alice)))
            .exists(),
        "{log}"
    );
}
