//! Helpers shared by the integration tests: the xtask binary, the repository,
//! scratch checkouts, and the real services from `cargo xtask test-env`.
#![allow(dead_code)] // each test file uses a different subset

pub mod gpg;
pub mod naive_registry;
pub mod proxy;
pub mod scanners;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PROVISION: &str =
    "run the suite with `cargo xtask test`, or provision the services first: `cargo xtask test-env up && eval \"$(cargo xtask test-env env)\"`";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `cargo xtask ARGS…` on the built binary.
pub fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("the xtask binary runs")
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A scratch copy of the repository's Containerfiles, examples, release data
/// and DIGESTS.md, to mutate without touching the real checkout.
pub fn copy_checkout() -> tempfile::TempDir {
    let root = repo_root();
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&root).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = name == "DIGESTS.md"
            || name == "cpes.txt"
            || name == "sbom"
            || name == "stagex-release"
            || name == "examples"
            || name == "k8s"
            || name == "policies"
            || name == "cosign.pub"
            || entry.path().join("Containerfile").is_file();
        if keep {
            copy_tree(&entry.path(), &copy.path().join(&name));
        }
    }
    copy
}

pub fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// A program on PATH, or a failure that says how to get it.
pub fn require_tool(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| panic!("`{program}` is not on PATH: {PROVISION}"))
}

/// The test registry's `host:port`, after checking the engine and registry answer.
pub fn require_engine() -> String {
    let registry = std::env::var("XTASK_TEST_REGISTRY")
        .unwrap_or_else(|_| panic!("XTASK_TEST_REGISTRY is not set: {PROVISION}"));
    assert!(
        std::env::var("DOCKER_HOST").is_ok(),
        "DOCKER_HOST is not set: {PROVISION}"
    );
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match version {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the Docker engine does not answer ({}): {PROVISION}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(error) => panic!("no docker client ({error}): {PROVISION}"),
    }
    let catalog = std::net::TcpStream::connect(&registry);
    assert!(catalog.is_ok(), "no registry at {registry}: {PROVISION}");
    registry
}

/// test-env's layout for this checkout: where its tools and stand-in files are.
pub fn layout() -> xtask::dev::test_env::Layout {
    xtask::dev::test_env::Layout::for_root(&repo_root())
}

/// Debian's busybox-static, musl and ca-certificates as test-env unpacked them.
pub fn standin_root() -> PathBuf {
    let root = layout().standin_root();
    assert!(
        root.join("bin/busybox").is_file(),
        "{} has no bin/busybox: {PROVISION}",
        root.display()
    );
    root
}

/// Run a command, panicking with its output when it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("command starts");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        text(&output)
    );
    output
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    xtask::hash::hex_sha256(bytes)
}

pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// One plain HTTP/1.0 request to the registry: (status, body). The Accept
/// header matters: without one naming OCI manifests, distribution answers 404
/// for them.
fn registry_request(method: &str, registry: &str, path: &str, accept: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(registry).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {registry}\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response has a header");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

/// `GET http://{registry}{path}` with an Accept header: (status, body).
pub fn registry_get(registry: &str, path: &str, accept: &str) -> (u16, Vec<u8>) {
    registry_request("GET", registry, path, accept)
}

/// `HEAD http://{registry}{path}`, accepting every manifest kind: the status.
pub fn registry_head(registry: &str, path: &str) -> u16 {
    registry_request("HEAD", registry, path, MANIFEST_ACCEPT).0
}

/// The stand-in checkout (stand-ins pushed to the test registry, a checkout
/// that pins them), made once per test binary; each test gets its own copy.
pub fn demo_checkout() -> tempfile::TempDir {
    static PREPARED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let prepared = PREPARED.get_or_init(|| {
        require_engine();
        let dir = repo_root()
            .join("target/test-demo")
            .join(format!("{}", std::process::id()));
        let prepared = xtask::dev::standins::prepare(&layout(), &dir)
            .unwrap_or_else(|e| panic!("preparing the stand-in checkout: {e:#}"));
        prepared.checkout
    });
    let copy = tempfile::tempdir().unwrap();
    copy_tree(prepared, copy.path());
    copy
}

/// Add an image (its Containerfile) to a checkout.
pub fn add_image(checkout: &Path, dir: &str, containerfile: &str) {
    std::fs::create_dir_all(checkout.join(dir)).unwrap();
    std::fs::write(checkout.join(dir).join("Containerfile"), containerfile).unwrap();
}

/// A Containerfile like the fixture's images: its `ARG`s, its pinned
/// stand-in busybox, and exec-form RUNs on a scratch image holding it.
pub fn busybox_image(checkout: &Path, runs: &[&str]) -> String {
    let base = std::fs::read_to_string(checkout.join("base/Containerfile")).unwrap();
    let header: String = base
        .lines()
        .filter(|l| l.starts_with("ARG"))
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    let busybox = base.lines().find(|l| l.contains("core-busybox")).unwrap();
    let runs: String = runs.iter().map(|run| format!("RUN {run}\n")).collect();
    format!("{header}{busybox}\nFROM scratch\nCOPY --from=busybox . /\n{runs}")
}

/// The stand-ins' own archives (out/<package>/image.tar of the stand-in builds).
pub fn standin_archive(package: &str) -> PathBuf {
    demo_checkout();
    repo_root()
        .join("target/test-demo")
        .join(format!("{}", std::process::id()))
        .join("standins/out")
        .join(package)
        .join("image.tar")
}

/// The build record of `image` in `root`, typed.
pub fn record(root: &Path, image: &str) -> xtask::records::build::BuildRecord {
    xtask::records::build::BuildRecord::load(root, image)
        .unwrap_or_else(|e| panic!("build record of {image}: {e:#}"))
}

/// The step reports a command wrote with `--json PATH`.
/// A `--json` document held to its command's committed JSON Schema
/// (`docs/schemas/<command>.v1.json`) by check-jsonschema: every test that
/// reads a command's document checks the contract on the way.
pub fn validated_document(bytes: &[u8]) -> serde_json::Value {
    let document: serde_json::Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)));
    let id = document["schema"].as_str().unwrap_or_default();
    let command = id
        .strip_prefix("xtask/")
        .and_then(|rest| rest.strip_suffix("/v1"))
        .unwrap_or_else(|| panic!("not an xtask document: {document}"));
    let schema = repo_root().join(format!("docs/schemas/{command}.v1.json"));
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("document.json");
    std::fs::write(&instance, bytes).unwrap();
    let output = Command::new(require_tool("check-jsonschema"))
        .arg("--schemafile")
        .arg(&schema)
        .arg(&instance)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the {command} document does not follow {}: {}",
        schema.display(),
        text(&output)
    );
    document
}

/// The step rows of a `--json` document.
pub fn reports(path: &Path) -> Vec<xtask::report::StepReport> {
    let document = validated_document(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    );
    serde_json::from_value(document["steps"].clone())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `result` of a `--json` document (file or stdout bytes), after its
/// envelope was checked: schema `xtask/<command>/v1`, the tool's version.
pub fn document_result(bytes: &[u8], command: &str) -> serde_json::Value {
    let document = validated_document(bytes);
    assert_eq!(
        document["schema"],
        format!("xtask/{command}/v1"),
        "{document}"
    );
    assert_eq!(document["tool"]["version"], env!("CARGO_PKG_VERSION"));
    document["result"].clone()
}

/// [`document_result`] of a file.
pub fn read_document(path: &Path, command: &str) -> serde_json::Value {
    document_result(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        command,
    )
}

/// `cargo xtask --root ROOT ARGS…` with a fixed SOURCE_DATE_EPOCH (fixture
/// checkouts have no git history).
pub fn xtask_in(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("the xtask binary runs")
}

/// [`xtask_in`] with more environment (e.g. a PATH with stub programs first).
pub fn xtask_in_env(root: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .arg("--root")
        .arg(root)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the xtask binary runs")
}

/// This PATH without the folders that hold any of `programs`: a machine
/// where they are not installed.
pub fn path_without(programs: &[&str]) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !programs.iter().any(|p| dir.join(p).exists()))
        .collect();
    std::env::join_paths(kept)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// An empty folder made a checkout (the release file marks one).
pub fn make_checkout(root: &Path) {
    std::fs::create_dir_all(root.join("stagex-release")).unwrap();
    std::fs::copy(
        repo_root().join("stagex-release/RELEASE"),
        root.join("stagex-release/RELEASE"),
    )
    .unwrap();
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Accept header for every manifest kind.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The stand-in packages of a demo checkout: (package, tag or None, digest hex).
pub fn standins(checkout: &Path) -> Vec<(String, Option<String>, String)> {
    let versions =
        std::fs::read_to_string(checkout.join("stagex-release/2026.03.0/versions.tsv")).unwrap();
    versions
        .lines()
        .skip(1)
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            let tag = (columns[1] != "latest").then(|| columns[1].to_string());
            (columns[0].to_string(), tag, columns[3].to_string())
        })
        .collect()
}

/// A minimal static file server on a free loopback port (GET only, 404 for
/// what is missing): a lookaside store reached over http://.
pub fn serve_files(dir: &Path) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Drain the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let file = dir.join(path.trim_start_matches('/').replace("..", ""));
            let response = match std::fs::read(&file) {
                Ok(body) => {
                    let mut response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    response.extend(body);
                    response
                }
                Err(_) => {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    format!("http://{address}")
}

/// A server on a free loopback port that answers every request with
/// `302 Found` to `to` followed by the request's path: a store or keyserver
/// that sends its clients elsewhere.
pub fn serve_redirect(to: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let to = to.trim_end_matches('/').to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {to}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    format!("http://{address}")
}

/// Push an OCI archive to `reference` with the library; its manifest digest.
pub fn push_archive(archive: &Path, reference: &str) -> String {
    use xtask::oci::{archive::OciArchive, auth::Role, reference::ImageRef, registry};
    let archive = OciArchive::open(archive).unwrap();
    let target = ImageRef::parse(reference).unwrap();
    registry::block_on(async {
        let client = registry::Registry::connect_to(&target, Role::Target).await?;
        xtask::oci::transfer::push_archive(&client, &archive, &target).await
    })
    .unwrap()
    .unwrap()
    .digest
}

/// The engine's own export of the image in `archive` (loaded, a container
/// created and removed): the tar of its filesystem, as `docker export` writes it.
pub fn engine_export(archive: &Path) -> Vec<u8> {
    let loaded = run_ok(Command::new("docker").arg("load").arg("-i").arg(archive));
    let loaded = text(&loaded);
    let id = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image ID: "))
        .unwrap_or_else(|| panic!("docker load said: {loaded}"))
        .trim()
        .to_string();
    let created = run_ok(Command::new("docker").args(["create", &id, "/nothing"]));
    let container = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let exported = run_ok(Command::new("docker").args(["export", &container]));
    run_ok(Command::new("docker").args(["rm", &container]));
    exported.stdout
}

/// A throwaway cosign key pair under `dir` (`cosign.key`, `cosign.pub`),
/// its password `password`; the public half becomes `checkout`'s
/// cosign.pub. Returns the private key's path.
pub fn cosign_key_pair(dir: &Path, password: &str, checkout: &Path) -> PathBuf {
    run_ok(
        Command::new(require_tool("cosign"))
            .arg("generate-key-pair")
            .arg("--output-key-prefix")
            .arg(dir.join("cosign"))
            .env("COSIGN_PASSWORD", password),
    );
    std::fs::copy(dir.join("cosign.pub"), checkout.join("cosign.pub")).unwrap();
    dir.join("cosign.key")
}
