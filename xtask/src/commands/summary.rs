//! `cargo xtask summary DIR… [--markdown PATH]`: one table from the JSON step
//! reports every command writes with `--json` (the CI legs collect theirs in
//! one artifact). The table goes to the log, the markdown to a file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::report::{self, Document, Outcome, StepReport};

/// One table (and markdown) from the JSON reports under DIR… (CI's summary job).
#[derive(Debug, Args)]
pub struct Summary {
    /// Folders (or files) of `--json` step reports.
    #[arg(value_name = "DIR", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Also write the table as markdown here.
    #[arg(long, value_name = "PATH")]
    pub markdown: Option<PathBuf>,
    /// Hold the reports against what a complete `build.yml` run leaves (from
    /// the catalog): a missing one is a failure, never a silent gap.
    #[arg(long)]
    pub expect_build_workflow: bool,
}

impl Summary {
    pub fn run(self, root: &Path) -> Result<()> {
        let mut files = Vec::new();
        for input in &self.inputs {
            collect(input, &mut files)?;
        }
        files.sort();
        let mut reports = Vec::new();
        for file in &files {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            // A command's `--json` document; anything else is named and
            // left out, never guessed at.
            match serde_json::from_slice::<Document<serde_json::Value>>(&bytes) {
                Ok(document) if document.schema.starts_with("xtask/") => {
                    reports.extend(document.steps)
                }
                _ => crate::ui::say!(
                    "note: {} is no xtask report document (`--json`): left out",
                    file.display()
                ),
            }
        }
        if self.expect_build_workflow {
            let catalog = crate::model::catalog::Catalog::load(root)?;
            let split = super::workflows::plan::split(&catalog)?;
            reports.extend(missing(&reports, &split));
        }
        if reports.is_empty() {
            return crate::error::fail(format!(
                "no step reports under {}: did every leg fail before writing one?",
                self.inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        anstream::print!("{}", report::coloured_table(&reports));
        if let Some(path) = &self.markdown {
            crate::files::write_atomically(path, markdown(&reports).as_bytes())?;
        }
        report::fail_if_any(&reports, "the run")
    }
}

/// The reports a complete run would have and `reports` lacks, as failures
/// (publish, which runs on main only, as skipped when it did not run at all).
fn missing(reports: &[StepReport], split: &super::workflows::plan::Split) -> Vec<StepReport> {
    use std::time::Duration;
    let has = |step: &str, image: &str| {
        reports
            .iter()
            .any(|r| r.step == step && (image == "*" || r.image == image))
    };
    let absent = |step: &str, image: &str| {
        StepReport::new(
            image,
            step,
            Outcome::Failed(
                "no report: its job stopped before this step wrote one (see that job's log)".into(),
            ),
            Duration::ZERO,
        )
    };
    let mut found = Vec::new();
    if !has("mirror", "*") {
        found.push(absent("mirror", "-"));
    }
    for (step, image) in super::workflows::plan::expected_reports(split) {
        if !has(&step, &image) {
            found.push(absent(&step, &image));
        }
    }
    if has("publish", "*") {
        for image in &split.bases {
            if !has("publish", image) {
                found.push(absent("publish", image));
            }
        }
    } else {
        found.push(StepReport::new(
            "-",
            "publish",
            Outcome::Skipped("did not run (a run off main, or nothing passed its gates)".into()),
            Duration::ZERO,
        ));
    }
    found
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    Ok(())
}

/// One table cell from text a CI job uploaded (anyone's): every control
/// character (CR and the Unicode line separators too, which end a line for
/// CommonMark or browsers) becomes a space, and every character Markdown or
/// HTML gives a meaning is escaped, so a cell stays one cell of plain text.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '!' | '|' | '&' | '#' | '~' | '('
            | ')' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The reports as a markdown table, failures first.
pub fn markdown(reports: &[StepReport]) -> String {
    let failed = reports.iter().filter(|r| r.failed()).count();
    let mut text = format!(
        "# Pipeline summary\n\n{} step(s), {failed} failed\n\n| step | image | result | time | digest | detail |\n|---|---|---|---|---|---|\n",
        reports.len()
    );
    let mut ordered: Vec<&StepReport> = reports.iter().collect();
    ordered.sort_by_key(|r| !r.failed());
    for r in ordered {
        let (result, detail) = match &r.outcome {
            Outcome::Passed => ("passed", r.detail.clone().unwrap_or_default()),
            Outcome::Failed(why) => ("**FAILED**", why.clone()),
            Outcome::Skipped(why) => ("skipped", why.clone()),
        };
        text.push_str(&format!(
            "| {} | {} | {result} | {:.1}s | {} | {} |\n",
            cell(&r.step),
            cell(&r.image),
            r.seconds,
            cell(
                &r.digest
                    .as_deref()
                    .map(report::short_digest)
                    .unwrap_or_default()
            ),
            cell(&detail)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failures_come_first_and_cells_stay_cells() {
        let reports = [
            StepReport::new("base", "build", Outcome::Passed, Duration::from_secs(2)),
            StepReport::new(
                "base-go",
                "scan",
                Outcome::Failed("CVE-1 | in\nx".into()),
                Duration::from_secs(1),
            ),
        ];
        insta::assert_snapshot!(markdown(&reports));
    }

    /// A crafted report cannot end its row, start a heading, show an image
    /// or inject HTML, in any field, the digest included.
    #[test]
    fn every_field_is_plain_text_in_one_cell() {
        let mut report = StepReport::new(
            "base\r# Approved",
            "scan",
            Outcome::Failed(
                "ok\r\n## Passed ![x](https://evil.example/p.png) <img src=x>\u{2028}|".into(),
            ),
            Duration::from_secs(1),
        );
        report.digest = Some("sha256:abc\r\n# injected <b>".into());
        let text = markdown(&[report]);
        let rows: Vec<&str> = text.lines().collect();
        // Title, blank, count, blank, header, rule, and exactly one row.
        assert_eq!(rows.len(), 7, "{text}");
        let row = rows[6];
        assert!(!row.contains('\r') && !row.contains('\u{2028}'), "{row:?}");
        let chars: Vec<char> = row.chars().collect();
        for (at, c) in chars.iter().enumerate() {
            if "<>![]()#&".contains(*c) {
                assert_eq!(chars[at - 1], '\\', "{c} unescaped in {row}");
            }
        }
        let separators = (0..chars.len())
            .filter(|&at| chars[at] == '|' && (at == 0 || chars[at - 1] != '\\'))
            .count();
        assert_eq!(separators, 7, "six cells: {row}");
    }

    /// Guards the per-image branch: once publish ran for one base image, a
    /// base image without its publish report is a failure, by name.
    #[test]
    fn a_base_image_publish_did_not_report_is_a_failure() {
        let split = crate::commands::workflows::plan::Split {
            bases: vec!["base".into(), "base-go".into()],
            apps: vec![],
            left_out: vec![],
        };
        let mut reports: Vec<StepReport> = Vec::new();
        for image in ["base", "base-go"] {
            for (step, image) in crate::commands::workflows::plan::expected_reports(&split)
                .into_iter()
                .filter(|(_, i)| i == image)
            {
                reports.push(StepReport::new(
                    &image,
                    &step,
                    Outcome::Passed,
                    Duration::ZERO,
                ));
            }
        }
        reports.push(StepReport::new(
            "x",
            "mirror",
            Outcome::Passed,
            Duration::ZERO,
        ));
        reports.push(StepReport::new(
            "base",
            "publish",
            Outcome::Passed,
            Duration::ZERO,
        ));
        let found = missing(&reports, &split);
        let rows: Vec<(String, String, bool)> = found
            .iter()
            .map(|r| (r.step.clone(), r.image.clone(), r.failed()))
            .collect();
        assert_eq!(rows, [("publish".to_string(), "base-go".to_string(), true)]);
        assert!(
            matches!(&found[0].outcome, Outcome::Failed(why) if why.starts_with("no report:")),
            "{:?}",
            found[0].outcome
        );
    }

    #[test]
    fn a_missing_report_is_a_failure() {
        let split = crate::commands::workflows::plan::Split {
            bases: vec!["base".into()],
            apps: vec![],
            left_out: vec![],
        };
        let mut reports: Vec<StepReport> = ["build", "verify-reproducible", "sbom", "scan"]
            .iter()
            .map(|step| StepReport::new("base", step, Outcome::Passed, Duration::ZERO))
            .collect();
        reports.push(StepReport::new(
            "x",
            "mirror",
            Outcome::Passed,
            Duration::ZERO,
        ));
        let found = missing(&reports, &split);
        let rows: Vec<(String, String, bool)> = found
            .iter()
            .map(|r| (r.step.clone(), r.image.clone(), r.failed()))
            .collect();
        assert_eq!(
            rows,
            [
                ("malcontent".to_string(), "base".to_string(), true),
                ("publish".to_string(), "-".to_string(), false)
            ]
        );
    }
}
