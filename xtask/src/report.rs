//! The one report type every step produces, its renderings, and the one
//! JSON document every `--json PATH|-` writes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The JSON document every command's `--json PATH|-` writes: one contract,
/// versioned by `schema`; each command's JSON Schema is generated from these
/// types into `docs/schemas/<command>.v1.json` (`cargo xtask docs`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Document<T> {
    /// `xtask/<command>/v1`: the command, and the version of this shape.
    pub schema: String,
    pub tool: ToolInfo,
    /// The command's table: one row per image (or reference) and step, what
    /// `summary` reads.
    pub steps: Vec<StepReport>,
    /// What the command found, in the command's own shape.
    pub result: T,
}

/// Which xtask wrote a document.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolInfo {
    pub version: String,
    /// The checkout's commit, when it is a git checkout.
    pub commit: Option<String>,
}

/// The version of the document shape (`xtask/<command>/v1`).
pub const DOCUMENT_VERSION: &str = "v1";

/// The schema id of `command`'s document.
pub fn schema_id(command: &str) -> String {
    format!("xtask/{command}/{DOCUMENT_VERSION}")
}

static CHECKOUT: OnceLock<PathBuf> = OnceLock::new();

/// The checkout documents describe (set once at start-up).
pub fn set_checkout(root: &Path) {
    let _ = CHECKOUT.set(root.to_path_buf());
}

impl<T> Document<T> {
    pub fn new(command: &str, steps: Vec<StepReport>, result: T) -> Document<T> {
        static COMMIT: OnceLock<Option<String>> = OnceLock::new();
        let commit = COMMIT.get_or_init(|| {
            let root = CHECKOUT.get()?;
            crate::tools::git::head_commit(root)
        });
        Document {
            schema: schema_id(command),
            tool: ToolInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                commit: commit.clone(),
            },
            steps,
            result,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "reason")]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepReport {
    /// The image this is about, or `-` for repository-wide steps.
    pub image: String,
    pub step: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
    /// The image manifest digest the step produced or checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Bytes of the artefact (the OCI archive for builds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A failure of the tool, not of the check (exit 2 rather than 1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub could_not_run: bool,
    /// What a passed step found worth a line (build: the runtime check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl StepReport {
    pub fn new(image: &str, step: &str, outcome: Outcome, elapsed: Duration) -> StepReport {
        StepReport {
            image: image.to_string(),
            step: step.to_string(),
            outcome,
            seconds: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            digest: None,
            size: None,
            could_not_run: false,
            detail: None,
        }
    }

    /// A failed step: a failed check when the error is a [`crate::error::Failure`],
    /// otherwise the tool could not run.
    pub fn from_error(
        image: &str,
        step: &str,
        error: &anyhow::Error,
        elapsed: Duration,
    ) -> StepReport {
        StepReport {
            could_not_run: !crate::error::is_failure(error),
            ..StepReport::new(image, step, Outcome::Failed(format!("{error:#}")), elapsed)
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }
}

/// Passed when no step failed; exit 2 when a step could not run, else exit 1
/// (a failed check), naming what failed.
pub fn fail_if_any(reports: &[StepReport], what: &str) -> anyhow::Result<()> {
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.failed())
        .map(|r| match r.image.as_str() {
            "-" => r.step.clone(),
            image if r.step == what => image.to_string(),
            image => format!("{} ({image})", r.step),
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else if reports.iter().any(|r| r.failed() && r.could_not_run) {
        anyhow::bail!("{what}: could not run for: {}", failed.join(", "))
    } else {
        crate::error::fail(format!("{what} failed for: {}", failed.join(", ")))
    }
}

/// A plain aligned table for the terminal.
pub fn table(reports: &[StepReport]) -> String {
    render(reports, false)
}

/// [`table`] with each row coloured by its outcome, for stderr and stdout
/// through anstream (which drops the colour where it does not apply).
pub fn coloured_table(reports: &[StepReport]) -> String {
    render(reports, true)
}

fn render(reports: &[StepReport], colour: bool) -> String {
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            let (outcome, detail) = match &r.outcome {
                Outcome::Passed => ("passed", r.detail.clone().unwrap_or_default()),
                Outcome::Failed(why) => ("FAILED", why.clone()),
                Outcome::Skipped(why) => ("skipped", why.clone()),
            };
            [
                r.step.clone(),
                r.image.clone(),
                outcome.to_string(),
                format!("{:.1}s", r.seconds),
                r.digest.as_deref().map(short_digest).unwrap_or_default(),
                r.size.map(human_size).unwrap_or_default(),
                first_line_clipped(&detail, 100),
            ]
        })
        .collect();
    let header = [
        "step", "image", "result", "time", "digest", "size", "detail",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let outcomes = std::iter::once(None).chain(reports.iter().map(|r| Some(&r.outcome)));
    let mut out = String::new();
    for (row, outcome) in std::iter::once(&header).chain(rows.iter()).zip(outcomes) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let line = line.join("  ");
        let line = line.trim_end();
        let style = match outcome {
            Some(Outcome::Failed(_)) if colour => Some(crate::ui::FAILED),
            Some(Outcome::Skipped(_)) if colour => Some(crate::ui::SKIPPED),
            Some(Outcome::Passed) if colour => Some(crate::ui::PASSED),
            _ => None,
        };
        match style {
            Some(style) => out.push_str(&format!("{style}{line}{style:#}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The first line, cut to `width` characters: the table stays readable and
/// the full text is in the step's own output and --json.
fn first_line_clipped(text: &str, width: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > width {
        format!("{}…", line.chars().take(width).collect::<String>())
    } else {
        line.to_string()
    }
}

/// `sha256:0123456789ab…`: enough to tell images apart in a table.
pub fn short_digest(digest: &str) -> String {
    match digest.get(..19) {
        Some(head) if digest.len() > 19 => format!("{head}…"),
        _ => digest.to_string(),
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_shows_reasons() {
        let reports = [
            StepReport::new("-", "lint", Outcome::Passed, Duration::from_millis(120)),
            StepReport::new(
                "base",
                "build",
                Outcome::Failed("exit 1\nmore".into()),
                Duration::from_secs(3),
            ),
            StepReport {
                digest: Some(format!("sha256:{}", "ab".repeat(32))),
                size: Some(3_500_000),
                ..StepReport::new("app", "build", Outcome::Passed, Duration::from_millis(2500))
            },
            StepReport::new(
                "-",
                "scan",
                Outcome::Skipped("--skip scan".into()),
                Duration::ZERO,
            ),
        ];
        insta::assert_snapshot!(table(&reports));
        // Coloured, each row carries its outcome's style; stripped, the text
        // is the plain table's.
        let coloured = coloured_table(&reports);
        assert!(
            coloured.contains(&format!("{}", crate::ui::FAILED)),
            "{coloured:?}"
        );
        assert_eq!(
            anstream::adapter::strip_str(&coloured).to_string(),
            table(&reports)
        );
        let json = serde_json::to_string(&reports[1]).unwrap();
        assert_eq!(
            json,
            r#"{"image":"base","step":"build","outcome":"failed","reason":"exit 1\nmore","seconds":3.0}"#
        );
    }
}
