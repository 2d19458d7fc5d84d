//! The one way this xtask runs a program (duct underneath).
//!
//! - The command line it shows, logs and puts in errors has secret values
//!   masked: values given with [`Cmd::secret_env`], the argument after a
//!   `--password`-like flag, and any of those values in captured output.
//! - Secrets reach a child only through its environment, and only when given
//!   explicitly: known secret variables are removed from what it inherits.
//! - A failure says what ran, its exit status, the line that gives the cause and
//!   the last lines of its output, never only "exit status 1".
//! - With `XTASK_COMMAND_LOG=<file>` every command line (masked) is appended to
//!   that file, for audits and tests.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result};

/// Folders of tools provisioned under `target/` (`cargo xtask test-env up`),
/// searched after `PATH`: a fresh clone finds them with nothing exported.
static PROVISIONED: std::sync::RwLock<Vec<PathBuf>> = std::sync::RwLock::new(Vec::new());

/// Variables of provisioned services (the test engine's `DOCKER_HOST` and
/// `DOCKER_CONFIG`) a child gets when this process has none of its own.
static PROVISIONED_ENV: std::sync::RwLock<Env> = std::sync::RwLock::new(BTreeMap::new());

/// Set at start-up from the checkout, and again once a command (the demo)
/// has brought the services up itself: a fresh clone has none at start-up.
pub fn use_provisioned(dirs: Vec<PathBuf>, env: Env) {
    if let Ok(mut provisioned) = PROVISIONED.write() {
        *provisioned = dirs.into_iter().filter(|dir| dir.is_dir()).collect();
    }
    if let Ok(mut provisioned) = PROVISIONED_ENV.write() {
        *provisioned = env
            .into_iter()
            .filter(|(name, _)| std::env::var_os(name).is_none())
            .collect();
    }
}

/// `PATH` with the provisioned folders after it, when there are any.
fn search_path() -> Option<OsString> {
    let provisioned = PROVISIONED.read().ok()?.clone();
    if provisioned.is_empty() {
        return None;
    }
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&inherited).collect();
    dirs.extend(
        provisioned
            .iter()
            .filter(|dir| !dirs.contains(dir))
            .cloned()
            .collect::<Vec<_>>(),
    );
    std::env::join_paths(dirs).ok()
}

/// Environment for child processes, on top of what they inherit.
pub type Env = BTreeMap<String, String>;

/// Variables that hold secrets: never inherited, only passed on purpose.
pub const SECRET_VARIABLES: &[&str] = &[
    "XTASK_REGISTRY_PASSWORD",
    "XTASK_SOURCE_REGISTRY_PASSWORD",
    "COSIGN_PASSWORD",
    "COSIGN_KEY",
    "REGISTRY_PASSWORD",
];

pub const COMMAND_LOG_ENV: &str = "XTASK_COMMAND_LOG";

/// What replaces a secret wherever it would be shown.
const MASK: &str = "***";

/// Secret values shorter than this are not searched for in output.
const MIN_MASKED: usize = 8;

/// Lines of output kept for an error message.
const TAIL_LINES: usize = 12;

#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
    /// Inherited variables the child must not see.
    removed: Vec<String>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
}

/// A program that ran and failed, or could not start.
#[derive(Debug)]
pub struct CommandFailed {
    pub command: String,
    /// `exit status: 1`, or why it did not start.
    pub status: String,
    /// The line of output that says what went wrong, when one does.
    pub cause: Option<String>,
    /// The last lines of its output (stderr, or stdout when stderr is empty).
    pub tail: Vec<String>,
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed ({})", self.command, self.status)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        let shown: Vec<&String> = self
            .tail
            .iter()
            .filter(|line| Some(*line) != self.cause.as_ref())
            .collect();
        if !shown.is_empty() {
            write!(f, "\n  last lines of its output:")?;
            for line in shown {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for CommandFailed {}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            secrets: Vec::new(),
            removed: Vec::new(),
            dir: None,
            stdin: None,
        }
    }

    /// `argv[0]` and the rest.
    pub fn from_argv(argv: &[String]) -> Cmd {
        let mut command = Cmd::new(argv.first().cloned().unwrap_or_default());
        command.args(argv.iter().skip(1));
        command
    }

    pub fn arg(&mut self, arg: impl Into<OsString>) -> &mut Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// A plain environment variable (set again: the last value wins). A known
    /// secret name is treated as a secret.
    /// Do not pass the inherited `name` on.
    pub fn env_remove(&mut self, name: impl Into<String>) -> &mut Cmd {
        self.removed.push(name.into());
        self
    }

    pub fn env(&mut self, name: &str, value: impl Into<String>) -> &mut Cmd {
        let value = value.into();
        if SECRET_VARIABLES.contains(&name) {
            return self.secret_env(name, value);
        }
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value));
        self
    }

    pub fn envs(&mut self, env: &Env) -> &mut Cmd {
        for (name, value) in env {
            self.env(name, value.clone());
        }
        self
    }

    /// A secret for the child's environment: never on its command line, masked
    /// wherever this command is shown.
    pub fn secret_env(&mut self, name: &str, value: impl Into<String>) -> &mut Cmd {
        self.secrets.retain(|(n, _)| n != name);
        self.secrets.push((name.to_string(), value.into()));
        self
    }

    pub fn dir(&mut self, dir: impl Into<PathBuf>) -> &mut Cmd {
        self.dir = Some(dir.into());
        self
    }

    pub fn stdin_bytes(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as it may be shown: quoted, secrets masked.
    pub fn display(&self) -> String {
        let mut words = vec![quote(&self.program.to_string_lossy())];
        let mut mask_next = false;
        for arg in &self.args {
            let arg = arg.to_string_lossy();
            if mask_next {
                words.push(MASK.to_string());
                mask_next = false;
                continue;
            }
            match arg.split_once('=') {
                Some((flag, _)) if is_secret_flag(flag) => {
                    words.push(format!("{}={MASK}", quote(flag)))
                }
                _ => {
                    mask_next = is_secret_flag(&arg);
                    words.push(quote(&arg));
                }
            }
        }
        self.mask(&words.join(" "))
    }

    /// The command line with the environment it sets (secrets masked): a
    /// plan as a person would type it.
    pub fn plan(&self) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(name, value)| format!("{name}={}", quote(value)))
            .chain(
                self.secrets
                    .iter()
                    .map(|(name, _)| format!("{name}={MASK}")),
            )
            .collect();
        words.push(self.display());
        words.join(" ")
    }

    /// Replace every secret value in `text`, as written and as quoted. A
    /// short value is left alone: `***` in place of every `base` would tell
    /// the password to anyone reading (secrets never reach a command line,
    /// so masking there is only a second line of defence).
    fn mask(&self, text: &str) -> String {
        let mut masked = text.to_string();
        for (_, value) in &self.secrets {
            if value.chars().count() >= MIN_MASKED {
                masked = masked
                    .replace(value.as_str(), MASK)
                    .replace(&value.replace('\'', "'\\''"), MASK);
            }
        }
        masked
    }

    fn expression(&self) -> duct::Expression {
        let mut expression = duct::cmd(&self.program, &self.args).unchecked();
        // The child's PATH is where its program is looked up too.
        if !self.env.iter().any(|(name, _)| name == "PATH") {
            if let Some(path) = search_path() {
                expression = expression.env("PATH", path);
            }
        }
        let provisioned = PROVISIONED_ENV
            .read()
            .map(|env| env.clone())
            .unwrap_or_default();
        for (name, value) in &provisioned {
            if !self.env.iter().any(|(given, _)| given == name) {
                expression = expression.env(name, value);
            }
        }
        let given = |name: &str| self.secrets.iter().any(|(n, _)| n == name);
        for name in SECRET_VARIABLES.iter().filter(|name| !given(name)) {
            expression = expression.env_remove(name);
        }
        for name in &self.removed {
            expression = expression.env_remove(name);
        }
        for (name, value) in self.env.iter().chain(&self.secrets) {
            expression = expression.env(name, value);
        }
        if let Some(dir) = &self.dir {
            expression = expression.dir(dir);
        }
        match &self.stdin {
            Some(bytes) => expression.stdin_bytes(bytes.clone()),
            None => expression.stdin_null(),
        }
    }

    fn record(&self) {
        if crate::ui::level() == crate::ui::Level::Verbose {
            anstream::eprintln!("+ {}", self.display());
        }
        if let Some(log) = std::env::var_os(COMMAND_LOG_ENV) {
            let line = format!("{}\n", self.display());
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .and_then(|mut file| file.write_all(line.as_bytes()));
            if let Err(error) = appended {
                anstream::eprintln!(
                    "warning: cannot append to {COMMAND_LOG_ENV}={}: {error}",
                    Path::new(&log).display()
                );
            }
        }
    }

    fn not_started(&self, error: std::io::Error) -> anyhow::Error {
        let status = if error.kind() == std::io::ErrorKind::NotFound {
            format!(
                "`{}` is not installed or not on PATH",
                self.program.to_string_lossy()
            )
        } else {
            format!("did not start: {error}")
        };
        CommandFailed {
            command: self.display(),
            status,
            cause: None,
            tail: Vec::new(),
        }
        .into()
    }

    fn failed(&self, status: std::process::ExitStatus, output: &[u8]) -> anyhow::Error {
        let text = self.mask(&String::from_utf8_lossy(output));
        let lines: Vec<String> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec();
        CommandFailed {
            command: self.display(),
            status: status.to_string(),
            cause: cause_line(&lines),
            tail,
        }
        .into()
    }

    /// Run to completion, output captured; an error unless it exits 0.
    pub fn output(&self) -> Result<Output> {
        self.succeeded(self.try_output()?)
    }

    /// `output`, or the error naming the command and its last lines when it
    /// did not exit 0.
    fn succeeded(&self, output: Output) -> Result<Output> {
        if !output.status.success() {
            let shown = if output.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
                &output.stderr
            } else {
                &output.stdout
            };
            return Err(self.failed(output.status, shown));
        }
        Ok(output)
    }

    /// Run to completion, output captured, whatever its exit status (probes).
    pub fn try_output(&self) -> Result<Output> {
        self.record();
        self.expression()
            .stdout_capture()
            .stderr_capture()
            .run()
            .map_err(|error| self.not_started(error))
    }

    /// [`Cmd::output`], killed when it has not finished within `limit`
    /// (installers that can wait on a network forever).
    pub fn output_within(&self, limit: std::time::Duration) -> Result<Output> {
        self.record();
        let handle = self
            .expression()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .start()
            .map_err(|error| self.not_started(error))?;
        let deadline = std::time::Instant::now() + limit;
        let output = loop {
            if let Some(output) = handle.try_wait()? {
                break output.clone();
            }
            if std::time::Instant::now() > deadline {
                let _ = handle.kill();
                return Err(CommandFailed {
                    command: self.display(),
                    status: format!("did not finish within {limit:?}: stopped"),
                    cause: None,
                    tail: Vec::new(),
                }
                .into());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        self.succeeded(output)
    }

    /// Its standard output, trimmed, when it exits 0.
    pub fn read(&self) -> Result<String> {
        let output = self.output()?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Run with this terminal's stdout and stderr (long jobs people watch).
    pub fn run_attached(&self) -> Result<()> {
        self.record();
        let output = self
            .expression()
            .run()
            .map_err(|error| self.not_started(error))?;
        if !output.status.success() {
            return Err(self.failed(output.status, &[]));
        }
        Ok(())
    }

    /// Run with stdout and stderr merged, each line written to `log` and
    /// handed to `on_line`; the failure names the cause from those lines.
    pub fn stream(&self, log: &mut impl Write, mut on_line: impl FnMut(&str)) -> Result<()> {
        self.record();
        writeln!(log, "$ {}", self.display())?;
        let reader = self
            .expression()
            .stderr_to_stdout()
            .reader()
            .map_err(|error| self.not_started(error))?;
        let mut kept: Vec<u8> = Vec::new();
        let mut lines = BufReader::new(&reader);
        let mut line = Vec::new();
        let mut copy = || -> std::io::Result<()> {
            while lines.read_until(b'\n', &mut line)? > 0 {
                let text = self.mask(&String::from_utf8_lossy(&line));
                log.write_all(text.as_bytes())?;
                on_line(&text);
                kept.extend_from_slice(text.as_bytes());
                // Keep only a window of recent output for the error message.
                if kept.len() > 64 << 10 {
                    kept.drain(..kept.len() - (32 << 10));
                }
                line.clear();
            }
            Ok(())
        };
        if let Err(error) = copy() {
            // Nobody reads its output any more: do not leave it running.
            let _ = reader.kill();
            return Err(anyhow::Error::new(error)
                .context(format!("following the output of `{}`", self.display())));
        }
        let output = reader
            .try_wait()?
            .context("the process closed its output but did not exit")?;
        if !output.status.success() {
            return Err(self.failed(output.status, &kept));
        }
        Ok(())
    }

    /// Start it in its own process group (it outlives us and ignores the
    /// terminal's Ctrl-C), output appended to `log`: its pid.
    pub fn spawn_daemon(&self, log: &Path) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        self.record();
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let handle = self
            .expression()
            .stdout_file(file.try_clone()?)
            .stderr_file(file)
            .before_spawn(|command| {
                command.process_group(0);
                Ok(())
            })
            .start()
            .map_err(|error| self.not_started(error))?;
        let pid = handle
            .pids()
            .first()
            .copied()
            .context("no pid for the started process")?;
        // Dropping the handle neither waits for nor kills the daemon.
        drop(handle);
        Ok(pid)
    }

    /// Start it with output discarded and return the handle (benchmarks that
    /// watch a running process).
    pub fn start_quiet(&self) -> Result<duct::Handle> {
        self.record();
        self.expression()
            .stdout_null()
            .stderr_null()
            .start()
            .map_err(|error| self.not_started(error))
    }
}

/// `--password`, `--registry-token`, …: the next argument (or `=value`) is a
/// secret. `--password-stdin`, `--secret-file` and the like name where a
/// secret is, not the secret.
fn is_secret_flag(flag: &str) -> bool {
    let flag = flag.trim_start_matches('-').to_ascii_lowercase();
    let names_a_place = ["-stdin", "-file", "-env", "-path"]
        .iter()
        .any(|suffix| flag.ends_with(suffix));
    !names_a_place
        && (flag.contains("password") || flag.contains("token") || flag.contains("secret"))
}

/// The line that says what went wrong: the last one that reads like an error,
/// skipping the generic hints programs add after it.
fn cause_line(lines: &[String]) -> Option<String> {
    let generic = |l: &str| {
        let l = l.to_ascii_lowercase();
        l.starts_with("run '") || l.starts_with("see '") || l.contains("--help' for more")
    };
    let markers = [
        "error",
        "unknown",
        "not found",
        "no such",
        "denied",
        "failed",
        "invalid",
        "cannot",
        "refused",
    ];
    lines
        .iter()
        .rev()
        .filter(|l| !generic(l))
        .find(|l| {
            let lower = l.to_ascii_lowercase();
            markers.iter().any(|m| lower.contains(m))
        })
        .or_else(|| lines.iter().rev().find(|l| !generic(l)))
        .map(|l| l.trim().to_string())
}

/// Single-quote a word for display when it needs it.
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/:._-=,@+%".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An installer that never ends is stopped at its limit, named; one
    /// that ends is read as `output` reads it, failures included.
    #[test]
    fn a_command_past_its_limit_is_stopped_and_named() {
        let started = std::time::Instant::now();
        let error = Cmd::new("sleep")
            .arg("600")
            .output_within(std::time::Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`sleep 600` failed (did not finish within 300ms: stopped)"),
            "{error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(300));
        let output = Cmd::new("sh")
            .args(["-c", "echo done"])
            .output_within(std::time::Duration::from_secs(600))
            .unwrap();
        assert_eq!(output.stdout, b"done\n");
        let error = Cmd::new("sh")
            .args(["-c", "echo broken >&2; exit 3"])
            .output_within(std::time::Duration::from_secs(600))
            .unwrap_err()
            .to_string();
        assert!(error.contains("broken"), "{error}");
    }

    #[test]
    fn secrets_are_masked_in_the_command_line() {
        let mut command = Cmd::new("cosign");
        command
            .args(["sign", "--password", "hunter2", "--token=abc123", "x y"])
            .args(["--password-stdin", "file.txt"])
            .secret_env("COSIGN_PASSWORD", "s3cret-long")
            .secret_env("OTHER", "it's hidden away")
            .secret_env("SHORT", "base");
        command.args(["--note=s3cret-long-inside", "it's hidden away here", "base"]);
        assert_eq!(
            command.display(),
            "cosign sign --password *** --token=*** 'x y' --password-stdin file.txt --note=***-inside '*** here' base",
            "a short value is not masked: masks would spell it out"
        );
    }

    #[test]
    fn a_failure_names_the_cause_not_the_help_hint() {
        let mut command = Cmd::new("sh");
        command.args([
            "-c",
            "echo building; echo 'unknown flag: --progress' >&2; echo \"See 'docker --help'.\" >&2; exit 125",
        ]);
        let error = command.output().unwrap_err();
        let failed = error.downcast_ref::<CommandFailed>().unwrap();
        assert_eq!(failed.cause.as_deref(), Some("unknown flag: --progress"));
        let text = error.to_string();
        assert!(text.contains("exit status: 125"), "{text}");
        assert!(text.starts_with("`sh -c "), "{text}");
    }

    #[test]
    fn secrets_never_reach_output_or_inheritance() {
        let mut command = Cmd::new("sh");
        command
            .args(["-c", "echo \"got $COSIGN_PASSWORD\" >&2; exit 3"])
            .secret_env("COSIGN_PASSWORD", "canary-5150");
        let text = command.output().unwrap_err().to_string();
        assert!(text.contains("got ***"), "{text}");
        assert!(!text.contains("canary-5150"), "{text}");
    }

    /// The five secret variables, named here rather than read from
    /// SECRET_VARIABLES: dropping one from that list fails this test.
    const SECRETS: [&str; 5] = [
        "XTASK_REGISTRY_PASSWORD",
        "XTASK_SOURCE_REGISTRY_PASSWORD",
        "COSIGN_PASSWORD",
        "COSIGN_KEY",
        "REGISTRY_PASSWORD",
    ];

    /// Set in the copy of this test binary that holds the secrets.
    const INHERITANCE_CHILD: &str = "XTASK_TEST_INHERITANCE_CHILD";

    /// Guards the `env_remove` of every secret variable in `expression`: a
    /// process holding all five (a copy of this test binary, given them in
    /// its environment: no `set_var` in this multi-threaded one) runs a
    /// program without passing them on, and the program sees none of them.
    #[test]
    fn secret_variables_are_never_inherited() {
        let probe_script: String = SECRETS
            .iter()
            .map(|name| format!("echo \"{name}=[${{{name}:-unset}}]\"; "))
            .collect();
        if std::env::var_os(INHERITANCE_CHILD).is_some() {
            // The child: this process has every secret; its program must not.
            for name in SECRETS {
                assert!(std::env::var_os(name).is_some(), "{name} was not given");
            }
            let mut probe = Cmd::new("sh");
            probe.args(["-c", probe_script.as_str()]);
            println!("probe:{}:end", probe.read().unwrap().replace('\n', ","));
            return;
        }
        let mut child = Cmd::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "tools::process::tests::secret_variables_are_never_inherited",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INHERITANCE_CHILD, "1");
        for name in SECRETS {
            child.secret_env(name, format!("inherited-canary-{name}"));
        }
        let stdout = child.read().unwrap();
        let expected: Vec<String> = SECRETS
            .iter()
            .map(|name| format!("{name}=[unset]"))
            .collect();
        assert!(
            stdout.contains(&format!("probe:{}:end", expected.join(","))),
            "{stdout}"
        );
    }

    #[test]
    fn a_missing_program_says_so() {
        let error = Cmd::new("/nonexistent/tool").output().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("is not installed or not on PATH"),
            "{error}"
        );
    }

    #[test]
    fn streaming_hands_over_every_line_and_keeps_the_cause() {
        let mut log = Vec::new();
        let mut seen = Vec::new();
        let mut command = Cmd::new("sh");
        command.args([
            "-c",
            "echo one; echo two >&2; echo 'ERROR: it broke'; exit 1",
        ]);
        let error = command
            .stream(&mut log, |line| seen.push(line.trim_end().to_string()))
            .unwrap_err();
        assert_eq!(seen, ["one", "two", "ERROR: it broke"]);
        assert!(error.to_string().contains(": ERROR: it broke"), "{error}");
        let log = String::from_utf8(log).unwrap();
        assert!(log.starts_with("$ sh -c "), "{log}");
        assert!(log.ends_with("ERROR: it broke\n"), "{log}");
    }

    /// A secret a streamed program prints is masked in what the caller sees,
    /// in the log and in the error (guards `mask` in `stream`).
    #[test]
    fn streamed_output_is_masked_everywhere() {
        let secret = "canary-s3cret-value";
        let mut log = Vec::new();
        let mut seen = Vec::new();
        let mut command = Cmd::new("sh");
        command
            .args([
                "-c",
                "echo \"token=$TOKEN\"; echo \"ERROR: $TOKEN rejected\"; exit 1",
            ])
            .secret_env("TOKEN", secret);
        let error = command
            .stream(&mut log, |line| seen.push(line.to_string()))
            .unwrap_err();
        let log = String::from_utf8(log).unwrap();
        for text in [seen.join(""), log, format!("{error:#}")] {
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("***"), "{text}");
        }
    }
}
