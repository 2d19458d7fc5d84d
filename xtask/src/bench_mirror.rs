//! `cargo xtask bench mirror`: our mirror against `skopeo copy` on the same
//! images in one run, a no-op re-mirror, and peak memory on a big layer.
//! Images are made here (random layers, so nothing compresses or dedupes) and
//! signed here with sequoia, as StageX maintainers would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sequoia_openpgp as openpgp;
use xshell::Shell;

use crate::oci::archive::OciArchive;
use crate::oci::registry::{self, Registry};
use crate::pgp::lookaside::{self, SignatureFile};
use crate::test_env::{self, Layout};

pub fn run(
    sh: &Shell,
    images: usize,
    layer_mib: usize,
    noop_refs: usize,
    big_layer_mib: usize,
) -> Result<()> {
    let root = sh.current_dir();
    let layout = Layout::for_root(&root);
    test_env::up(sh, &layout)?;
    let skopeo = ensure_skopeo()?;
    let registry_address = layout.registry();
    let work = root.join("target/bench-mirror");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let signer = Signer::new(&work.join("keys"))?;
    let lookaside = work.join("signatures");
    let run_id = std::process::id();
    let source = format!("{registry_address}/bench-{run_id}-source");
    let xtask = std::env::current_exe()?;

    // 1. Throughput: the same images copied by us and by skopeo, each into a
    // registry of its own that has never seen them (so neither can mount).
    let ours_registry = ScratchRegistry::start(&layout, &work.join("registry-ours"))?;
    let skopeo_registry = ScratchRegistry::start(&layout, &work.join("registry-skopeo"))?;
    eprintln!("bench: {images} images x 3 layers x {layer_mib} MiB of random data");
    let mut references = Vec::new();
    for index in 0..images {
        let name = format!("img-{index}");
        let sizes = [layer_mib << 20; 3];
        let digest = publish(&work, &source, &name, &sizes, index as u64 + 1)?;
        signer.sign(&lookaside, &name, &digest)?;
        references.push((name, digest));
    }
    let total_bytes = (images * 3 * layer_mib) as f64;
    let refs: Vec<String> = references
        .iter()
        .map(|(name, digest)| format!("stagex/{name}:1@{digest}"))
        .collect();
    let mirror_args = |to: &str, jobs: usize| -> Vec<String> {
        let mut args = vec![
            "mirror".to_string(),
            "--from".into(),
            source.clone(),
            "--to".into(),
            to.to_string(),
            "--lookaside".into(),
            format!("file://{}", lookaside.display()),
            "--keyring".into(),
            signer.keyring.display().to_string(),
            "--threshold".into(),
            "1".into(),
            "--jobs".into(),
            jobs.to_string(),
        ];
        args.extend(refs.iter().cloned());
        args
    };
    let ours_serial = timed(
        Command::new(&xtask).args(mirror_args(&format!("{}/jobs-1", ours_registry.address), 1)),
    )?;
    let ours_parallel = timed(
        Command::new(&xtask).args(mirror_args(&format!("{}/jobs-4", ours_registry.address), 4)),
    )?;
    let started = Instant::now();
    for (name, _) in &references {
        let status = skopeo_copy(
            &skopeo,
            &format!("{source}/{name}:1"),
            &format!("{}/skopeo/{name}:1", skopeo_registry.address),
        )
        .status()?;
        if !status.success() {
            bail!("skopeo copy of {name} failed");
        }
    }
    let skopeo_seconds = started.elapsed().as_secs_f64();

    // 2. A no-op re-mirror: everything already there.
    eprintln!("bench: {noop_refs} small signed images for the no-op re-mirror");
    let mut small_refs = Vec::new();
    for index in 0..noop_refs {
        let name = format!("small-{index}");
        let digest = publish(&work, &source, &name, &[4096], 1000 + index as u64)?;
        signer.sign(&lookaside, &name, &digest)?;
        small_refs.push(format!("stagex/{name}:1@{digest}"));
    }
    let noop_target = format!("{registry_address}/bench-{run_id}-noop");
    let noop_args = |refs: &[String]| {
        let mut args = mirror_args(&noop_target, 4);
        args.truncate(args.len() - references.len());
        args.extend(refs.iter().cloned());
        args
    };
    timed(Command::new(&xtask).args(noop_args(&small_refs)))?;
    let noop_seconds = timed(Command::new(&xtask).args(noop_args(&small_refs)))?;

    // 3. Peak memory while one big layer is copied, ours and skopeo's.
    eprintln!("bench: one {big_layer_mib} MiB layer for peak memory");
    let big_digest = publish(&work, &source, "big", &[big_layer_mib << 20], 4242)?;
    signer.sign(&lookaside, "big", &big_digest)?;
    let mut big_args = mirror_args(&format!("{}/big", ours_registry.address), 1);
    big_args.truncate(big_args.len() - references.len());
    big_args.push(format!("stagex/big:1@{big_digest}"));
    let (big_seconds, our_peak) = peak_rss(Command::new(&xtask).args(&big_args))?;
    let (_, skopeo_peak) = peak_rss(&mut skopeo_copy(
        &skopeo,
        &format!("{source}/big:1"),
        &format!("{}/big/big:1", skopeo_registry.address),
    ))?;

    println!(
        "mirror throughput, {images} images x 3 x {layer_mib} MiB: ours --jobs 1 {:.2}s ({:.0} MiB/s), ours --jobs 4 {:.2}s ({:.0} MiB/s), skopeo copy (sequential) {:.2}s ({:.0} MiB/s); ratio vs skopeo: {:.2}x (--jobs 1), {:.2}x (--jobs 4)",
        ours_serial,
        total_bytes / ours_serial,
        ours_parallel,
        total_bytes / ours_parallel,
        skopeo_seconds,
        total_bytes / skopeo_seconds,
        skopeo_seconds / ours_serial,
        skopeo_seconds / ours_parallel
    );
    println!("no-op re-mirror of {noop_refs} references: {noop_seconds:.2}s");
    println!(
        "one {big_layer_mib} MiB layer: ours {big_seconds:.1}s, peak RSS ours {:.1} MiB, skopeo {:.1} MiB",
        our_peak as f64 / 1024.0,
        skopeo_peak as f64 / 1024.0
    );
    Ok(())
}

/// A registry of the bench's own, on a free loopback port, stopped on drop.
struct ScratchRegistry {
    address: String,
    child: std::process::Child,
}

impl ScratchRegistry {
    fn start(layout: &Layout, dir: &Path) -> Result<ScratchRegistry> {
        std::fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.join("data").display()
            ),
        )?;
        let child = Command::new(layout.tools().join("usr/bin/docker-registry"))
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting a scratch registry")?;
        let registry = ScratchRegistry { address, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !test_env::registry_answers(&registry.address) {
            if Instant::now() > deadline {
                bail!("the scratch registry on {} did not start", registry.address);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }
}

impl Drop for ScratchRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure_skopeo() -> Result<PathBuf> {
    if let Some(path) = test_env::which("skopeo") {
        return Ok(path);
    }
    eprintln!("bench: installing skopeo (Debian) to compare against");
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "skopeo"])
        .status();
    match status {
        Ok(status) if status.success() => {
            test_env::which("skopeo").context("skopeo installed but not on PATH")
        }
        _ => bail!(
            "the mirror benchmark compares against skopeo: `apt-get install skopeo` (as root)"
        ),
    }
}

/// `skopeo copy` between two plain-HTTP registries, keeping digests.
fn skopeo_copy(skopeo: &Path, from: &str, to: &str) -> Command {
    let mut command = Command::new(skopeo);
    command
        .args([
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{from}"))
        .arg(format!("docker://{to}"));
    command
}

/// Seconds a command took; it must succeed.
fn timed(command: &mut Command) -> Result<f64> {
    let started = Instant::now();
    let output = command.output()?;
    if !output.status.success() {
        bail!(
            "{command:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Run a command and sample its peak resident set (VmHWM, KiB) until it exits.
fn peak_rss(command: &mut Command) -> Result<(f64, u64)> {
    let started = Instant::now();
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{command:?} failed");
            }
            return Ok((started.elapsed().as_secs_f64(), peak));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Write an OCI archive with random layers, push it as `<prefix>/<name>:1`,
/// return its manifest digest.
fn publish(
    work: &Path,
    prefix: &str,
    name: &str,
    layer_sizes: &[usize],
    seed: u64,
) -> Result<String> {
    let archive_path = work.join(format!("{name}.tar"));
    write_random_archive(&archive_path, layer_sizes, seed)?;
    let archive = OciArchive::open(&archive_path)?;
    let target = registry::parse_reference(&format!("{prefix}/{name}:1"))?;
    let client = Registry::for_reference(&target)?;
    registry::block_on(async {
        client.login().await;
        crate::push::push_archive(&client, &archive, &target).await
    })??;
    std::fs::remove_file(&archive_path)?;
    Ok(archive.manifest_digest().to_string())
}

/// An OCI archive whose layers are random bytes (registries do not look inside).
fn write_random_archive(path: &Path, layer_sizes: &[usize], seed: u64) -> Result<()> {
    let file = std::fs::File::create(path)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    let add = |builder: &mut tar::Builder<_>, name: &str, bytes: &[u8]| -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes)?;
        Ok(())
    };
    // A blob goes in under its own digest, which is returned.
    let add_blob = |builder: &mut tar::Builder<_>, bytes: &[u8]| -> Result<String> {
        let digest = crate::sha::hex_sha256(bytes);
        add(builder, &format!("blobs/sha256/{digest}"), bytes)?;
        Ok(digest)
    };
    let mut layers = Vec::new();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for size in layer_sizes {
        let mut data = Vec::with_capacity(*size);
        while data.len() < *size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        data.truncate(*size);
        layers.push((add_blob(&mut builder, &data)?, *size));
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| format!("sha256:{d}")).collect::<Vec<_>>()},
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = add_blob(&mut builder, &config_bytes)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config_bytes.len()},
        "layers": layers.iter().map(|(d, size)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{d}"),
            "size": size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = add_blob(&mut builder, &manifest_bytes)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_digest}"), "size": manifest_bytes.len()}],
    });
    add(&mut builder, "index.json", &serde_json::to_vec(&index)?)?;
    add(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    builder.into_inner()?.flush()?;
    Ok(())
}

/// A maintainer key made here, signing as StageX signers do (inline, by a
/// signing subkey, simple-signing payload).
struct Signer {
    cert: openpgp::Cert,
    keyring: PathBuf,
}

impl Signer {
    fn new(keyring: &Path) -> Result<Signer> {
        use openpgp::serialize::SerializeInto;
        let (cert, _revocation) = openpgp::cert::CertBuilder::new()
            .add_userid("bench maintainer <bench@example.com>")
            .add_signing_subkey()
            .generate()?;
        std::fs::create_dir_all(keyring)?;
        std::fs::write(keyring.join("bench.asc"), cert.armored().to_vec()?)?;
        Ok(Signer {
            cert,
            keyring: keyring.to_path_buf(),
        })
    }

    fn sign(&self, lookaside_dir: &Path, name: &str, digest: &str) -> Result<()> {
        use openpgp::serialize::stream::{LiteralWriter, Message, Signer as StreamSigner};
        let policy = openpgp::policy::StandardPolicy::new();
        let keypair = self
            .cert
            .keys()
            .unencrypted_secret()
            .with_policy(&policy, None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .context("the bench key has a signing subkey")?
            .key()
            .clone()
            .into_keypair()?;
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"stagex/{name}:1"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"atomic container signature"}},"optional":{{}}}}"#
        );
        let mut signed = Vec::new();
        let message = Message::new(&mut signed);
        let signer = StreamSigner::new(message, keypair)?.build()?;
        let mut literal = LiteralWriter::new(signer).build()?;
        literal.write_all(payload.as_bytes())?;
        literal.finalize()?;
        let hex = digest.trim_start_matches("sha256:");
        let files = [SignatureFile {
            name: "signature-1".into(),
            bytes: signed,
        }];
        lookaside::save(lookaside_dir, &format!("stagex/{name}"), hex, &files)?;
        Ok(())
    }
}
