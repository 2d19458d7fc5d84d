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

/// A failed row or error.
pub const FAILED: anstyle::Style = anstyle::AnsiColor::Red.on_default().bold();
/// A skipped row.
pub const SKIPPED: anstyle::Style = anstyle::AnsiColor::Yellow.on_default();
/// A passed row.
pub const PASSED: anstyle::Style = anstyle::AnsiColor::Green.on_default();

/// `error:` in red, for the one line an error ends with.
pub fn error_label() -> String {
    format!("{FAILED}error:{FAILED:#}")
}
