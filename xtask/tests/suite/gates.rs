//! scan and malcontent as gates of what ships, end to end on an engine-built
//! image. grype and malcontent cannot be installed here: stub programs on
//! PATH stand in for them, answering with the real reports of
//! `tests/testdata/scanners/` (or failing), so what is tested is our side:
//! the invocation, the parsing, the gate, the records, and push obeying them.

use crate::common::scanners::{scanners, stubs};
use crate::common::*;

#[test]
fn scan_and_malcontent_gate_what_push_ships() {
    let registry = require_engine();
    let checkout = demo_checkout();
    let root = checkout.path();
    let bin = stubs(root);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |args: &[&str], grype: &str, mal: &str| {
        xtask_in_env(
            root,
            args,
            &[
                ("PATH", path.clone()),
                ("STUB_GRYPE", grype.to_string()),
                ("STUB_MAL", mal.to_string()),
            ],
        )
    };
    let clean_scan = scanners("grype/grype-json-empty.golden.json");
    let clean_scan = clean_scan.to_str().unwrap();
    let critical_scan = scanners("grype/grype-json-image.golden.json");
    let critical_scan = critical_scan.to_str().unwrap();
    let low_mal = scanners("malcontent/mal-analyze-ls-low.json");
    let low_mal = low_mal.to_str().unwrap();
    let critical_mal = scanners("malcontent/mal-analyze-kubo-injector-critical.json");
    let critical_mal = critical_mal.to_str().unwrap();
    let repository = format!("{registry}/{}", crate::names::unique("gates"));

    let output = run(&["build", "base"], "", "");
    assert!(output.status.success(), "{}", text(&output));
    let output = run(&["sbom", "base", "--no-syft"], "", "");
    assert!(output.status.success(), "{}", text(&output));

    // Clean reports: both gates pass and push ships without a warning.
    let output = run(&["scan", "base"], clean_scan, "");
    assert!(output.status.success(), "{}", text(&output));
    let output = run(&["malcontent", "base"], "", low_mal);
    assert!(output.status.success(), "{}", text(&output));
    let output = run(
        &["push", "base", "--to", &format!("{repository}/base:clean")],
        "",
        "",
    );
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(!log.contains("ungated"), "{log}");

    // A scanner that fails leaves a failed record: the earlier pass for the
    // same bytes no longer clears the image.
    let output = run(&["scan", "base"], "fail", "");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("grype: database is corrupt"),
        "{}",
        text(&output)
    );
    let output = run(
        &[
            "push",
            "base",
            "--to",
            &format!("{repository}/base:after-crash"),
        ],
        "",
        "",
    );
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("scan failed: "), "{log}");

    // A critical finding fails the gate and the summary names it, with what
    // would fix it; an ignore entry excuses it until it expires.
    let output = run(&["scan", "base"], critical_scan, "");
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("| CVE-1999-0002 | critical | package-2 | 2.2.2 | no fix known |"),
        "{log}"
    );
    let summary = std::fs::read_to_string(root.join("out/base/scan.md")).unwrap();
    assert!(summary.contains("**failed** by 1 finding(s)"), "{summary}");
    let ignore = root.join("ignore.yml");
    let entry = |expires: &str| {
        format!("- id: CVE-1999-0002\n  package: package-2\n  reason: not reachable from our entrypoint\n  expires: {expires}\n  by: alice@example.org\n")
    };
    std::fs::write(&ignore, entry("2999-12-31")).unwrap();
    let ignored = ["scan", "base", "--ignore", ignore.to_str().unwrap()];
    let output = run(&ignored, critical_scan, "");
    assert!(output.status.success(), "{}", text(&output));
    let record = read_json(&root.join("out/base/scan.json"));
    assert_eq!(record["valid_until"], "2999-12-31", "{record}");
    std::fs::write(&ignore, entry("2020-01-01")).unwrap();
    let output = run(&ignored, critical_scan, "");
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("expired on 2020-01-01"), "{log}");
    std::fs::write(&ignore, entry("2026-02-30")).unwrap();
    let output = run(&ignored, critical_scan, "");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("is not a date"), "{}", text(&output));

    // malcontent: a critical file fails the gate, named with its behaviours.
    let output = run(&["scan", "base"], clean_scan, "");
    assert!(output.status.success(), "{}", text(&output));
    let output = run(&["malcontent", "base"], "", critical_mal);
    let log = text(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("1 file(s) at risk High or above: linux/2024.kubo_injector/injector Critical"),
        "{log}"
    );

    // In `all`, a gate that failed in the run keeps its image from shipping.
    let json = root.join("all.json");
    let output = run(
        &[
            "all",
            "--skip",
            "build",
            "--skip",
            "verify-reproducible",
            "--push-prefix",
            &repository,
            "--skip",
            "sign",
            "--json",
            json.to_str().unwrap(),
        ],
        clean_scan,
        critical_mal,
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let reports = reports(&json);
    let outcome = |step: &str, image: &str| {
        reports
            .iter()
            .find(|r| r.step == step && r.image == image)
            .unwrap_or_else(|| panic!("no {step} row for {image}: {reports:?}"))
            .outcome
            .clone()
    };
    use xtask::report::Outcome;
    assert_eq!(outcome("scan", "base"), Outcome::Passed);
    assert!(matches!(outcome("malcontent", "base"), Outcome::Failed(_)));
    assert!(
        matches!(outcome("push", "base"), Outcome::Failed(why) if why.contains("malcontent failed")),
        "{reports:?}"
    );
    let (status, _) = registry_get(
        &registry,
        &format!(
            "/v2/{}/base/manifests/latest",
            repository.split_once('/').unwrap().1
        ),
        MANIFEST_ACCEPT,
    );
    assert_eq!(status, 404, "nothing shipped past a failed gate");
}
