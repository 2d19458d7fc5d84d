//! grype's JSON report, typed, and the gate: findings at or above a severity,
//! minus those an ignore file excuses until its entry expires.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    fn parse(text: &str) -> Severity {
        match text.trim().to_ascii_lowercase().as_str() {
            "negligible" => Severity::Negligible,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => Severity::Unknown,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&name)
    }
}

/// One vulnerability in one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub package: String,
    pub version: String,
    /// Versions that fix it (empty: see `fix_state`).
    pub fixed_in: Vec<String>,
    /// grype's word on a fix: `fixed`, `not-fixed`, `wont-fix`, or `unknown`
    /// (also when the report does not say, as its CycloneDX output does not).
    pub fix_state: String,
}

impl Finding {
    /// What the summary says about a fix.
    pub fn fix(&self) -> String {
        match (self.fixed_in.is_empty(), self.fix_state.as_str()) {
            (false, _) => self.fixed_in.join(", "),
            (true, "not-fixed") => "no fix yet".into(),
            (true, "wont-fix") => "won't be fixed".into(),
            (true, _) => "no fix known".into(),
        }
    }
}

#[derive(Deserialize)]
struct Report {
    matches: Vec<Match>,
}

#[derive(Deserialize)]
struct Match {
    vulnerability: Vulnerability,
    artifact: Artifact,
}

#[derive(Deserialize)]
struct Vulnerability {
    id: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    fix: Option<Fix>,
}

#[derive(Deserialize)]
struct Fix {
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    state: String,
}

#[derive(Deserialize)]
struct Artifact {
    name: String,
    #[serde(default)]
    version: String,
}

/// The findings of a grype report, `-o json` or `-o cyclonedx-json`, sorted
/// and without repeats. Anything else is refused, never read as clean.
pub fn parse_grype(bytes: &[u8]) -> Result<Vec<Finding>> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).context("grype's output is not JSON")?;
    let findings = if value.get("bomFormat").and_then(|f| f.as_str()) == Some("CycloneDX") {
        from_cyclonedx(value)?
    } else {
        let report: Report = serde_json::from_value(value)
            .context("grype's output is neither its JSON report (`matches`) nor CycloneDX")?;
        report
            .matches
            .into_iter()
            .map(|m| {
                let fix = m.vulnerability.fix;
                Finding {
                    id: m.vulnerability.id,
                    severity: Severity::parse(&m.vulnerability.severity),
                    package: m.artifact.name,
                    version: m.artifact.version,
                    fix_state: fix
                        .as_ref()
                        .map(|f| f.state.clone())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "unknown".into()),
                    fixed_in: fix.map(|f| f.versions).unwrap_or_default(),
                }
            })
            .collect()
    };
    Ok(sorted(findings))
}

#[derive(Deserialize)]
struct Bom {
    #[serde(default)]
    components: Vec<BomComponent>,
    /// Required: a CycloneDX document without it is an SBOM, not a scan.
    vulnerabilities: Vec<BomVulnerability>,
}

#[derive(Deserialize)]
struct BomComponent {
    #[serde(rename = "bom-ref", default)]
    reference: String,
    name: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct BomVulnerability {
    id: String,
    #[serde(default)]
    ratings: Vec<BomRating>,
    #[serde(default)]
    affects: Vec<BomAffects>,
}

#[derive(Deserialize)]
struct BomRating {
    #[serde(default)]
    severity: Option<String>,
}

#[derive(Deserialize)]
struct BomAffects {
    #[serde(rename = "ref")]
    reference: String,
}

/// grype's CycloneDX output: each vulnerability at its worst rating, once per
/// component it affects.
fn from_cyclonedx(value: serde_json::Value) -> Result<Vec<Finding>> {
    let bom: Bom = serde_json::from_value(value)
        .context("grype's CycloneDX output has no readable `vulnerabilities`")?;
    let mut findings = Vec::new();
    for vulnerability in bom.vulnerabilities {
        let severity = vulnerability
            .ratings
            .iter()
            .filter_map(|r| r.severity.as_deref().map(Severity::parse))
            .max()
            .unwrap_or(Severity::Unknown);
        for affects in &vulnerability.affects {
            let component = bom
                .components
                .iter()
                .find(|c| c.reference == affects.reference)
                .with_context(|| {
                    format!(
                        "{} affects `{}`, which is not a component of the report",
                        vulnerability.id, affects.reference
                    )
                })?;
            findings.push(Finding {
                id: vulnerability.id.clone(),
                severity,
                package: component.name.clone(),
                version: component.version.clone(),
                fixed_in: Vec::new(),
                fix_state: "unknown".into(),
            });
        }
    }
    Ok(findings)
}

fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| (b.severity, &a.id, &a.package).cmp(&(a.severity, &b.id, &b.package)));
    findings.dedup();
    findings
}

/// One excuse: this vulnerability in this package is accepted until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ignore {
    pub id: String,
    pub package: String,
    pub reason: String,
    /// `YYYY-MM-DD`: the last day the excuse holds.
    pub expires: String,
    pub by: String,
}

/// An ignore file: a YAML list of [`Ignore`] entries.
pub fn load_ignores(path: &Path) -> Result<Vec<Ignore>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ignores: Vec<Ignore> = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{}: expected a list of {{id, package, reason, expires: YYYY-MM-DD, by}}",
            path.display()
        )
    })?;
    for ignore in &ignores {
        let valid = crate::time::is_date(&ignore.expires);
        if !valid {
            bail!(
                "{}: `{}` for {} is not a date (YYYY-MM-DD, a real one)",
                path.display(),
                ignore.expires,
                ignore.id
            );
        }
        if ignore.reason.trim().is_empty() || ignore.by.trim().is_empty() {
            bail!(
                "{}: the entry for {} needs a reason and who accepted it",
                path.display(),
                ignore.id
            );
        }
    }
    Ok(ignores)
}

/// What the gate decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    /// Findings at or above the threshold that nothing excuses.
    pub failing: Vec<Finding>,
    /// Findings excused by a current entry.
    pub excused: Vec<Finding>,
    /// Entries that would excuse a finding but expired (the finding fails).
    pub expired: Vec<Ignore>,
    /// The last day the verdict holds: the earliest expiry of the entries
    /// that excused a finding (none: it holds until the findings change).
    pub valid_until: Option<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failing.is_empty()
    }
}

/// Gate `findings` at `threshold`, `today` being `YYYY-MM-DD`.
pub fn gate(findings: &[Finding], threshold: Severity, ignores: &[Ignore], today: &str) -> Verdict {
    let mut verdict = Verdict {
        failing: Vec::new(),
        excused: Vec::new(),
        expired: Vec::new(),
        valid_until: None,
    };
    for finding in findings.iter().filter(|f| f.severity >= threshold) {
        let entry = ignores
            .iter()
            .find(|i| i.id == finding.id && i.package == finding.package);
        match entry {
            // ISO dates compare as text; the entry holds through its last day.
            Some(ignore) if ignore.expires.as_str() >= today => {
                verdict.excused.push(finding.clone());
                if verdict
                    .valid_until
                    .as_ref()
                    .is_none_or(|until| ignore.expires < *until)
                {
                    verdict.valid_until = Some(ignore.expires.clone());
                }
            }
            Some(ignore) => {
                verdict.expired.push(ignore.clone());
                verdict.failing.push(finding.clone());
            }
            None => verdict.failing.push(finding.clone()),
        }
    }
    verdict
}

/// The markdown summary: counts per severity, what failed the gate and why.
pub fn markdown(
    image: &str,
    findings: &[Finding],
    verdict: &Verdict,
    threshold: Severity,
    advisory: &[Finding],
) -> String {
    let mut out = format!("### `{image}`: vulnerabilities\n\n");
    out.push_str("| severity | findings |\n|---|---|\n");
    for severity in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Negligible,
        Severity::Unknown,
    ] {
        let count = findings.iter().filter(|f| f.severity == severity).count();
        out.push_str(&format!("| {severity} | {count} |\n"));
    }
    if verdict.passed() {
        out.push_str(&format!("\nGate (`{threshold}` and above): passed"));
        if !verdict.excused.is_empty() {
            out.push_str(&format!(
                ", {} excused by the ignore file",
                verdict.excused.len()
            ));
        }
        out.push_str(".\n");
    } else {
        out.push_str(&format!(
            "\nGate (`{threshold}` and above): **failed** by {} finding(s):\n\n| id | severity | package | version | fixed in |\n|---|---|---|---|---|\n",
            verdict.failing.len()
        ));
        for f in &verdict.failing {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                f.id,
                f.severity,
                f.package,
                f.version,
                f.fix()
            ));
        }
    }
    for ignore in &verdict.expired {
        out.push_str(&format!(
            "\nThe ignore entry for {} in {} expired on {} ({}, by {}).\n",
            ignore.id, ignore.package, ignore.expires, ignore.reason, ignore.by
        ));
    }
    if !advisory.is_empty() {
        out.push_str(&format!(
            "\nAdvisory (by CPE, never failing): {} finding(s), e.g. {}.\n",
            advisory.len(),
            advisory
                .iter()
                .take(5)
                .map(|f| format!("{} in {} {}", f.id, f.package, f.version))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = crate::files::project_root()
            .join("xtask/tests/testdata/scanners/grype")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn real_grype_reports_parse() {
        let image = parse_grype(&fixture("grype-json-image.golden.json")).unwrap();
        let ids: Vec<(&str, Severity, &str)> = image
            .iter()
            .map(|f| (f.id.as_str(), f.severity, f.package.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("CVE-1999-0002", Severity::Critical, "package-2"),
                ("CVE-1999-0001", Severity::Low, "package-1"),
            ]
        );
        assert_eq!(image[1].fixed_in, ["1.2.1", "2.1.3", "3.4.0"]);
        assert!(image[0].fixed_in.is_empty());
        assert_eq!(
            parse_grype(&fixture("grype-json-dir.golden.json"))
                .unwrap()
                .len(),
            2
        );
        assert!(parse_grype(&fixture("grype-json-empty.golden.json"))
            .unwrap()
            .is_empty());
        // The same scan as CycloneDX: the same findings (without fix versions,
        // which that format does not carry).
        let cyclonedx = parse_grype(&fixture("grype-cyclonedx-vex-image.golden.json")).unwrap();
        let strip = |findings: &[Finding]| -> Vec<(String, Severity, String, String)> {
            findings
                .iter()
                .map(|f| {
                    (
                        f.id.clone(),
                        f.severity,
                        f.package.clone(),
                        f.version.clone(),
                    )
                })
                .collect()
        };
        assert_eq!(strip(&cyclonedx), strip(&image));
        assert!(!gate(&cyclonedx, Severity::High, &[], "2026-11-25").passed());
        // Neither report: refused, never read as clean.
        let syft_sbom = std::fs::read(
            crate::files::project_root()
                .join("xtask/tests/testdata/scanners/syft/syft-cyclonedx-1.7-image.golden.json"),
        )
        .unwrap();
        assert!(
            parse_grype(&syft_sbom).is_err(),
            "an SBOM without vulnerabilities"
        );
        assert!(parse_grype(b"{}").is_err());
        assert!(parse_grype(b"[]").is_err());
    }

    fn ignore(id: &str, package: &str, expires: &str) -> Ignore {
        Ignore {
            id: id.into(),
            package: package.into(),
            reason: "not reachable".into(),
            expires: expires.into(),
            by: "alice".into(),
        }
    }

    #[test]
    fn the_gate_excuses_until_the_entry_expires() {
        let findings = parse_grype(&fixture("grype-json-image.golden.json")).unwrap();
        let high = gate(&findings, Severity::High, &[], "2026-11-25");
        assert_eq!(high.failing.len(), 1, "the critical one");
        let excused = gate(
            &findings,
            Severity::Low,
            &[
                ignore("CVE-1999-0002", "package-2", "2026-11-25"),
                ignore("CVE-1999-0001", "package-1", "2027-01-01"),
            ],
            "2026-11-25",
        );
        assert!(excused.passed());
        assert_eq!(
            excused.valid_until.as_deref(),
            Some("2026-11-25"),
            "the earliest entry used"
        );
        let other_package = gate(
            &findings,
            Severity::High,
            &[ignore("CVE-1999-0002", "package-9", "2030-01-01")],
            "2026-11-25",
        );
        assert!(!other_package.passed(), "an entry is for one package");
        let expired = gate(
            &findings,
            Severity::High,
            &[ignore("CVE-1999-0002", "package-2", "2026-11-24")],
            "2026-11-25",
        );
        assert!(!expired.passed());
        assert_eq!(expired.expired.len(), 1);
        let text = markdown("base", &findings, &expired, Severity::High, &[]);
        assert!(text.contains("expired on 2026-11-24"), "{text}");
        assert!(
            text.contains("| CVE-1999-0002 | critical | package-2 | 2.2.2 | no fix known |"),
            "{text}"
        );
        let low = gate(&findings, Severity::Low, &[], "2026-11-25");
        assert_eq!(low.failing.len(), 2);
        let text = markdown("base", &findings, &low, Severity::Low, &[]);
        assert!(
            text.contains("| CVE-1999-0001 | low | package-1 | 1.1.1 | 1.2.1, 2.1.3, 3.4.0 |"),
            "{text}"
        );
    }

    #[test]
    fn ignore_files_are_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ignore.yml");
        std::fs::write(&path, "- id: CVE-1\n  package: core-musl\n  reason: fixed upstream\n  expires: 2027-01-31\n  by: alice\n").unwrap();
        assert_eq!(load_ignores(&path).unwrap().len(), 1);
        // Each bad case for its own reason (guards the date check, the
        // reason and `by` checks each, and deny_unknown_fields).
        let not_a_date = "is not a date (YYYY-MM-DD, a real one)";
        let unsigned = "needs a reason and who accepted it";
        let shape = "expected a list of {id, package, reason, expires: YYYY-MM-DD, by}";
        for (bad, why) in [
            ("expires: soon", not_a_date),
            ("expires: 2026-13-45", not_a_date),
            ("expires: 2026-02-30", not_a_date),
            ("expires: 2026-1-05", not_a_date),
            ("reason: \"\"", unsigned),
            ("reason: \"  \"", unsigned),
            ("by: \"\"", unsigned),
            ("extra: 1", shape),
        ] {
            let (field, _) = bad.split_once(':').unwrap();
            let mut entry: Vec<String> = [
                "id: CVE-1",
                "package: x",
                "reason: r",
                "expires: 2027-01-01",
                "by: a",
            ]
            .iter()
            .filter(|line| !line.starts_with(&format!("{field}:")))
            .map(|line| line.to_string())
            .collect();
            entry.push(bad.to_string());
            let text = format!("- {}\n", entry.join("\n  "));
            std::fs::write(&path, &text).unwrap();
            let error = format!("{:#}", load_ignores(&path).unwrap_err());
            assert!(error.contains(why), "{text}: {error}");
        }
        for missing in ["by", "expires"] {
            let text = format!(
                "- id: CVE-1\n  package: x\n  reason: r\n  {}\n",
                if missing == "by" {
                    "expires: 2027-01-01"
                } else {
                    "by: a"
                }
            );
            std::fs::write(&path, &text).unwrap();
            let error = format!("{:#}", load_ignores(&path).unwrap_err());
            assert!(error.contains(shape), "{text}: {error}");
        }
    }
}
