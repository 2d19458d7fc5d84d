//! The generated workflows run under act (the engine forgejo-runner forks)
//! on a stand-in checkout: the stand-in StageX images signed by two test
//! maintainers, the test registry as mirror and publishing registry, the
//! pinned actions' local copies, grype and mal stubs. Each run is traced
//! (strace) to prove that no connection leaves loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::gpg::Signed;
use crate::common::scanners::{scanners, stubs};
use crate::common::*;

/// A stand-in checkout a workflow can run on, and what its run is given.
struct ActCheckout {
    checkout: tempfile::TempDir,
    signed: Signed,
    keys: tempfile::TempDir,
    stubs: PathBuf,
    registry: String,
}

impl ActCheckout {
    /// The demo checkout with workflows generated for it, `change` applied
    /// first; its stand-ins signed by two keys; cosign.pub a test key's;
    /// committed on `main` (act reads the commit and ref from git).
    fn new(change: impl FnOnce(&Path)) -> ActCheckout {
        let registry = require_engine();
        require_tool("act");
        require_tool("strace");
        let checkout = demo_checkout();
        let root = checkout.path();
        let signed = Signed::new();
        for (package, tag, hex) in standins(root) {
            signed.sign(&package, tag.as_deref(), &hex, 2);
        }
        let keys = tempfile::tempdir().unwrap();
        cosign_key_pair(keys.path(), "act-run-password", root);
        // The stand-in checkout's own test suite, which the `test` job runs.
        std::fs::create_dir_all(root.join(".ci")).unwrap();
        std::fs::write(
            root.join(".ci/run"),
            "#!/bin/sh\n# The stand-in checkout's suite: its images' Containerfiles exist, and\n# no secret reached this job (host-mode jobs inherit act's environment).\nset -e\nls */Containerfile > /dev/null\nif [ -n \"$COSIGN_KEY$COSIGN_PASSWORD\" ]; then echo 'the test job sees a signing secret' >&2; exit 1; fi\necho stand-in suite passed\n",
        )
        .unwrap();
        change(root);
        for generate in [
            &["k8s"][..],
            &["digests"],
            &["sbom", "--cpes"],
            &["workflows"],
        ] {
            let output = xtask_in(root, generate);
            assert!(output.status.success(), "{generate:?}: {}", text(&output));
        }
        for git in [
            &["init", "-q", "-b", "main"][..],
            &["add", "-A"],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@localhost",
                "commit",
                "-qm",
                "stand-in checkout",
            ],
        ] {
            run_ok(Command::new("git").args(git).current_dir(root));
        }
        let stubs = stubs(keys.path());
        ActCheckout {
            checkout,
            signed,
            keys,
            stubs,
            registry,
        }
    }

    fn root(&self) -> &Path {
        self.checkout.path()
    }

    /// `xtask workflows --run-local EVENT`, traced, and checked that no
    /// connection left loopback: (its output, the connections its process
    /// tree made, one line each).
    fn run(&self, event: &str, prefix: &str) -> (Output, String) {
        let trace = self.root().join("target/connections.trace");
        std::fs::create_dir_all(trace.parent().unwrap()).unwrap();
        let path = format!(
            "{}:{}",
            self.stubs.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let key = std::fs::read_to_string(self.keys.path().join("cosign.key")).unwrap();
        let output = Command::new("strace")
            .args(["-f", "--seccomp-bpf", "-yy", "-qq", "-e"])
            .arg("trace=connect,sendto,sendmsg,sendmmsg")
            .arg("-o")
            .arg(&trace)
            .arg(env!("CARGO_BIN_EXE_xtask"))
            .arg("--root")
            .arg(self.root())
            .args(["workflows", "--run-local", event, "--actions"])
            .arg(repo_root().join("../shared/actions"))
            .arg("--publish-to")
            .arg(format!("{}/{prefix}", self.registry))
            .arg("--var")
            .arg(format!("STAGEX_MIRROR={}/{prefix}-mirror", self.registry))
            .env("PATH", path)
            // Where a runner's admin points the mirror job: the stand-ins'
            // registry, the test keys and their signatures.
            .env("XTASK_STAGEX_UPSTREAM", format!("{}/stagex", self.registry))
            .env(
                "XTASK_LOOKASIDE",
                format!("file://{}", self.signed.store.path().display()),
            )
            .env("XTASK_KEYRING", self.signed.gpg.keyring.path())
            .env("COSIGN_KEY", key)
            .env("COSIGN_PASSWORD", "act-run-password")
            .env("STUB_GRYPE", scanners("grype/grype-json-empty.golden.json"))
            .env(
                "STUB_MAL",
                scanners("malcontent/mal-analyze-trino-launcher-clean.json"),
            )
            .output()
            .unwrap();
        let connections = std::fs::read_to_string(&trace).unwrap_or_default();
        // Every run: nothing left loopback.
        let leaving = leaving_loopback(&connections);
        assert!(leaving.is_empty(), "left loopback: {leaving:#?}");
        (output, connections)
    }
}

/// The lines of an strace of connect/sendto/sendmsg (with `-yy`) that reach
/// past loopback. A UDP `connect` sends nothing: act makes one to 8.8.8.8:80
/// to learn its outbound address; only a datagram sent, a TCP connection or
/// anything to port 53 (a name lookup) counts.
fn leaving_loopback(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|line| line.contains("AF_INET"))
        .filter(|line| {
            let loopback = line.contains("inet_addr(\"127.")
                || line.contains("inet_pton(AF_INET6, \"::1\"")
                || line.contains("\"::ffff:127.");
            let dns = line.contains("htons(53)");
            let udp_connect = line.contains(" connect(") && line.contains("<UDP");
            dns || !(loopback || udp_connect)
        })
        .map(str::to_string)
        .collect()
}

/// The (job, image, result) rows of `--run-local`'s table.
fn rows(log: &str) -> Vec<(String, String, String)> {
    let table = log
        .rsplit_once("\nstep ")
        .map(|(_, table)| table)
        .unwrap_or_default();
    table
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .filter(|cells| {
            cells.len() == 3 && ["passed", "failed", "skipped"].contains(&cells[2].as_str())
        })
        .map(|cells| (cells[0].clone(), cells[1].clone(), cells[2].clone()))
        .collect()
}

fn row(job: &str, image: &str, result: &str) -> (String, String, String) {
    (job.to_string(), image.to_string(), result.to_string())
}

/// What `publish` must leave for `image` in the registry under `prefix`:
/// `:latest`, and cosign's legacy signature and attestation tags for its
/// digest (where Kyverno looks).
fn assert_published(registry: &str, prefix: &str, image: &str) {
    let (status, manifest) = registry_get(
        registry,
        &format!("/v2/{prefix}/{image}/manifests/latest"),
        MANIFEST_ACCEPT,
    );
    assert_eq!(status, 200, "{prefix}/{image}:latest was not published");
    let hex = sha256_hex(&manifest);
    for suffix in ["sig", "att"] {
        assert_eq!(
            registry_head(
                registry,
                &format!("/v2/{prefix}/{image}/manifests/sha256-{hex}.{suffix}")
            ),
            200,
            "{prefix}/{image}: no .{suffix} tag for sha256:{hex}"
        );
    }
}

/// No `:latest` of `image` under `prefix`.
fn assert_not_published(registry: &str, prefix: &str, image: &str) {
    let path = format!("/v2/{prefix}/{image}/manifests/latest");
    assert_eq!(
        registry_get(registry, &path, MANIFEST_ACCEPT).0,
        404,
        "{path}"
    );
}

fn unique(name: &str) -> String {
    crate::names::unique(&format!("act-{name}"))
}

/// A push to main runs every job of build.yml: the mirror (quorum checked),
/// each image's build-scan leg, each publish leg (pushed, signed, attested,
/// verified in the test registry), the app on its base, and the summary of
/// every leg; nothing leaves loopback.
#[test]
fn a_push_to_main_builds_publishes_and_summarises_every_leg_under_act() {
    // A base and an app built on it (every kind of leg); the schedule run
    // has the other base.
    let run = ActCheckout::new(|root| {
        std::fs::remove_dir_all(root.join("base-static")).unwrap();
    });
    let prefix = unique("push");
    let (output, trace) = run.run("push", &prefix);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    let mut expected = vec![
        row("xtask", "-", "passed"),
        row("lint", "-", "passed"),
        row("test", "-", "passed"),
        row("mirror-deps", "-", "passed"),
    ];
    for job in ["build-scan", "publish"] {
        expected.push(row(job, "base", "passed"));
    }
    expected.push(row("build-apps", "hello", "passed"));
    expected.push(row("summary", "-", "passed"));
    let mut found = rows(&log);
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "{log}");
    assert_published(&run.registry, &prefix, "base");
    // The summary job's table (in its log) names every leg's steps, passed.
    let summary = summary_rows(&log);
    for image in ["base", "hello"] {
        for step in ["build", "verify-reproducible", "sbom", "scan", "malcontent"] {
            assert!(
                summary.contains(&row(step, image, "passed")),
                "{step} {image}: {summary:?}"
            );
        }
    }
    assert!(
        summary.contains(&row("publish", "base", "passed")),
        "{summary:?}"
    );
    assert!(
        trace.contains("connect("),
        "the trace saw no connection at all"
    );
}

/// The (step, image, result) rows of the summary job's table, from its log.
fn summary_rows(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .filter_map(|line| line.strip_prefix("[build/One table of every leg's reports] "))
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.len() == 3)
        .map(|cells| (cells[0].clone(), cells[1].clone(), cells[2].to_lowercase()))
        .collect()
}

/// A scheduled run (Forgejo gives it the bare branch name as its ref)
/// publishes too; a broken Containerfile fails its own legs only: every
/// other image is built, scanned and published, the summary names the
/// broken one, and the run exits non-zero.
#[test]
fn a_scheduled_run_publishes_and_a_broken_image_fails_alone() {
    // The base the push run leaves out, and a broken one beside it.
    let run = ActCheckout::new(|root| {
        add_image(
            root,
            "broken",
            &busybox_image(root, &[r#"["/usr/bin/busybox", "false"]"#]),
        );
        std::fs::remove_dir_all(root.join("base")).unwrap();
        std::fs::remove_dir_all(root.join("examples/hello")).unwrap();
    });
    let prefix = unique("schedule");
    let (output, _) = run.run("schedule", &prefix);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let failed: Vec<(String, String, String)> = rows(&log)
        .into_iter()
        .filter(|(_, _, result)| result == "failed")
        .collect();
    assert_eq!(
        failed,
        [
            row("build-scan", "broken", "failed"),
            row("publish", "broken", "failed"),
            row("summary", "-", "failed"),
        ],
        "{log}"
    );
    assert!(
        rows(&log).contains(&row("publish", "base-static", "passed")),
        "{log}"
    );
    assert_published(&run.registry, &prefix, "base-static");
    assert_not_published(&run.registry, &prefix, "broken");
    let summary = summary_rows(&log);
    assert!(
        summary.contains(&row("build", "broken", "failed")),
        "{summary:?}"
    );
    assert!(
        summary.contains(&row("publish", "base-static", "passed")),
        "{summary:?}"
    );
}

/// A pull request runs check.yml: lint and the checkout's own suite, with
/// no secret given (COSIGN_KEY is in the caller's environment, and the
/// stand-in suite fails if it sees it) and nothing published.
#[test]
fn a_pull_request_runs_the_checks_with_no_secrets_and_publishes_nothing() {
    let run = ActCheckout::new(|_| {});
    let prefix = unique("pr");
    let (output, _) = run.run("pull_request", &prefix);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    let mut found = rows(&log);
    found.sort();
    assert_eq!(
        found,
        [
            row("lint", "-", "passed"),
            row("test", "-", "passed"),
            row("xtask", "-", "passed"),
        ],
        "{log}"
    );
    assert!(log.contains("stand-in suite passed"), "{log}");
    for image in ["base", "base-static"] {
        assert_not_published(&run.registry, &prefix, image);
    }
}

/// The loopback rule itself: a TCP connection or a datagram off loopback
/// and any name lookup count; loopback and act's UDP route probe do not.
#[test]
fn the_loopback_rule_tells_leaving_from_staying() {
    let trace = r#"1 connect(5<TCP:[1]>, {sa_family=AF_INET, sin_port=htons(5000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
2 connect(5<UDP:[2]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("8.8.8.8")}, 16) = 0
3 connect(6<TCP:[3]>, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("140.82.112.3")}, 16) = -1 EINPROGRESS
4 connect(7<UDP:[4]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0
5 sendto(8<UDP:[5]>, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("10.0.0.1")}, 16) = 1
6 connect(9<UNIX:[6]>, {sa_family=AF_UNIX, sun_path="/run/docker.sock"}, 110) = 0
7 connect(10<TCPv6:[7]>, {sa_family=AF_INET6, sin6_port=htons(5000), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0"#;
    let leaving: Vec<String> = leaving_loopback(trace)
        .iter()
        .map(|line| line[..1].to_string())
        .collect();
    assert_eq!(leaving, ["3", "4", "5"]);
}
