//! What people see on stderr: how much (`-q` quiet, `-v` every command run)
//! and in colour or not (`--color auto|always|never`; `auto` follows the
//! terminal and the NO_COLOR / CLICOLOR_FORCE conventions, through anstream).
//! Reports (`--json`) and generated files never carry colour.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet = 0,
    Normal = 1,
    Verbose = 2,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);

/// Set once, from the global flags.
pub fn set(level: Level, color: anstream::ColorChoice) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    color.write_global();
}

pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Quiet,
        2 => Level::Verbose,
        _ => Level::Normal,
    }
}

/// Progress and results for people, on stderr, unless `-q`.
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::ui::level() > $crate::ui::Level::Quiet {
            anstream::eprintln!($($arg)*);
        }
    };
}

/// [`say!`] without the newline.
macro_rules! say_more {
    ($($arg:tt)*) => {
        if $crate::ui::level() > $crate::ui::Level::Quiet {
            anstream::eprint!($($arg)*);
        }
    };
}

pub(crate) use say;
pub(crate) use say_more;

const FAILED: anstyle::Style = anstyle::AnsiColor::Red.on_default().bold();
const SKIPPED: anstyle::Style = anstyle::AnsiColor::Yellow.on_default();
const PASSED: anstyle::Style = anstyle::AnsiColor::Green.on_default();

/// A table's lines coloured by their outcome column (`FAILED`, `skipped`,
/// `passed`); anstream drops the colour where it does not apply.
pub fn coloured_table(table: &str) -> String {
    let mut out = String::with_capacity(table.len() + 64);
    for line in table.lines() {
        let style = if line.contains("  FAILED  ") || line.ends_with("  FAILED") {
            Some(FAILED)
        } else if line.contains("  skipped  ") {
            Some(SKIPPED)
        } else if line.contains("  passed  ") || line.ends_with("  passed") {
            Some(PASSED)
        } else {
            None
        };
        match style {
            Some(style) => out.push_str(&format!("{style}{line}{style:#}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// `error:` in red, for the one line an error ends with.
pub fn error_label() -> String {
    format!("{FAILED}error:{FAILED:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_rows_stand_out_and_others_keep_their_text() {
        let table =
            "step   image  result  time\nbuild  base   FAILED  1.0s\nscan   base   passed  0.1s\n";
        let coloured = coloured_table(table);
        let lines: Vec<&str> = coloured.lines().collect();
        assert_eq!(lines[0], "step   image  result  time");
        assert!(
            lines[1].starts_with("\u{1b}[1m\u{1b}[31m")
                || lines[1].starts_with("\u{1b}[31;1m")
                || lines[1].starts_with('\u{1b}'),
            "{:?}",
            lines[1]
        );
        assert!(lines[1].contains("build  base   FAILED  1.0s"));
        assert!(lines[2].contains("scan   base   passed  0.1s"));
        // Stripped, the text is the table's.
        let stripped: String = anstream::adapter::strip_str(&coloured).to_string();
        assert_eq!(stripped, table);
    }
}
