//! `cargo xtask bench mirror`: in one run, on the same images, each copy into
//! a fresh registry of its own: our `mirror` (`--jobs 1` and `--jobs 4`),
//! `skopeo copy`, and the limit: a minimal copier that pipes each blob's GET
//! into one PUT with no checks at all, at our parallelism. Then a no-op
//! re-mirror, and peak memory on a big layer. Images are made here (random
//! layers, so nothing compresses or dedupes) and signed here with sequoia, as
//! StageX maintainers would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use sequoia_openpgp as openpgp;

use super::super::test_env::{self, which, Layout};
use super::peak_rss;
use crate::oci::archive::OciArchive;
use crate::oci::auth::Role;
use crate::oci::manifest::MANIFEST_TYPES;
use crate::oci::reference::ImageRef;
use crate::oci::registry::{self, Registry};
use crate::oci::transfer;
use crate::pgp::lookaside::{self, SignatureFile};
use crate::tools::process::Cmd;

/// Our mirror's parallelism: references at once (its default `--jobs`) and
/// blobs of one image at once.
const REFS_AT_ONCE: usize = 4;
const BLOBS_AT_ONCE: usize = 4;

#[derive(Debug, clap::Args)]
pub struct MirrorBench {
    /// Images for the throughput run (each 3 layers).
    #[arg(long, default_value_t = 10)]
    images: usize,
    /// MiB of random data per layer.
    #[arg(long, default_value_t = 16)]
    layer_mib: usize,
    /// Throughput rounds; each copier's median is compared.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// References for the no-op re-mirror.
    #[arg(long, default_value_t = 50)]
    noop_refs: usize,
    /// MiB of the single layer copied while peak memory is measured.
    #[arg(long, default_value_t = 1024)]
    big_layer_mib: usize,
}

/// The copiers compared, each run once per round into a fresh registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copier {
    Ours,
    Skopeo,
    Limit,
}

impl MirrorBench {
    pub fn run(self, root: &Path) -> Result<()> {
        run(root, &self)
    }
}

fn run(root: &Path, bench: &MirrorBench) -> Result<()> {
    let MirrorBench {
        images,
        layer_mib,
        rounds,
        noop_refs,
        big_layer_mib,
    } = *bench;
    let layout = Layout::for_root(root);
    test_env::up_for(&layout, test_env::Purpose::Pipeline)?;
    let skopeo = which("skopeo").context(
        "the mirror benchmark compares against skopeo, which is not on PATH: install it (Debian: apt-get install skopeo) and run the benchmark again",
    )?;
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

    // 1. Throughput: the same images, each copy into a registry that has never seen them.
    crate::ui::say!("bench: {images} images x 3 layers x {layer_mib} MiB of random data");
    let mut references = Vec::new();
    for index in 0..images {
        let name = format!("img-{index}");
        let sizes = [layer_mib << 20; 3];
        let digest = publish(&work, &source, &name, &sizes, index as u64 + 1)?;
        signer.sign(&lookaside, &name, &digest)?;
        references.push((name, digest));
    }
    let total_mib = (images * 3 * layer_mib) as f64;
    let refs: Vec<String> = references
        .iter()
        .map(|(name, digest)| format!("stagex/{name}:1@{digest}"))
        .collect();
    let mirror = |to: &str, jobs: usize, refs: &[String]| -> Cmd {
        let mut command = Cmd::new(&xtask);
        command
            .args(["mirror", "--registry", &source, "--to-prefix", to])
            .arg("--lookaside")
            .arg(format!("file://{}", lookaside.display()))
            .arg("--keyring")
            .arg(&signer.keyring)
            .args(["--threshold", "1", "--jobs", &jobs.to_string()])
            .args(refs);
        command
    };
    // Registries keep their blobs in memory when they can (/dev/shm): the
    // disk's writeback would otherwise blur one run into the next.
    let scratch = match tempfile::tempdir_in("/dev/shm") {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir_in(&work)?,
    };
    let names: Vec<String> = references.iter().map(|(name, _)| name.clone()).collect();
    let mut run_number = 0;
    let mut copy_into_fresh_registry = |copier: Copier, jobs: usize| -> Result<f64> {
        run_number += 1;
        let target =
            ScratchRegistry::start(&layout, &scratch.path().join(format!("run-{run_number}")))?;
        Cmd::new("sync").output()?;
        let started = Instant::now();
        match copier {
            Copier::Ours => {
                mirror(&target.address, jobs, &refs).output()?;
            }
            Copier::Skopeo => {
                for name in &names {
                    skopeo_copy(
                        &skopeo,
                        &format!("{source}/{name}:1"),
                        &format!("{}/skopeo/{name}:1", target.address),
                    )
                    .output()
                    .with_context(|| format!("skopeo copy of {name}"))?;
                }
            }
            Copier::Limit => {
                Cmd::new(&xtask)
                    .args(["bench", "copy-unchecked", &source, &target.address])
                    .args(&names)
                    .output()?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        drop(target);
        std::fs::remove_dir_all(scratch.path().join(format!("run-{run_number}")))?;
        Ok(seconds)
    };
    let ours_serial = copy_into_fresh_registry(Copier::Ours, 1)?;
    let mut times: Vec<(Copier, Vec<f64>)> = vec![
        (Copier::Ours, Vec::new()),
        (Copier::Skopeo, Vec::new()),
        (Copier::Limit, Vec::new()),
    ];
    for round in 1..=rounds.max(1) {
        crate::ui::say!("bench: throughput round {round} of {rounds}");
        for (copier, seconds) in &mut times {
            seconds.push(copy_into_fresh_registry(*copier, REFS_AT_ONCE)?);
        }
    }
    let median = |copier: Copier| {
        let mut seconds = times
            .iter()
            .find(|(c, _)| *c == copier)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        seconds.sort_by(f64::total_cmp);
        seconds.get(seconds.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (ours, skopeo_seconds, limit_seconds) = (
        median(Copier::Ours),
        median(Copier::Skopeo),
        median(Copier::Limit),
    );
    let ours_registry = ScratchRegistry::start(&layout, &work.join("registry-big"))?;

    // 2. A no-op re-mirror: everything already there.
    crate::ui::say!("bench: {noop_refs} small signed images for the no-op re-mirror");
    let mut small_refs = Vec::new();
    for index in 0..noop_refs {
        let name = format!("small-{index}");
        let digest = publish(&work, &source, &name, &[4096], 1000 + index as u64)?;
        signer.sign(&lookaside, &name, &digest)?;
        small_refs.push(format!("stagex/{name}:1@{digest}"));
    }
    let noop_target = format!("{registry_address}/bench-{run_id}-noop");
    timed(&mirror(&noop_target, REFS_AT_ONCE, &small_refs))?;
    let noop_seconds = timed(&mirror(&noop_target, REFS_AT_ONCE, &small_refs))?;

    // 3. Peak memory while one big layer is copied, ours and skopeo's.
    crate::ui::say!("bench: one {big_layer_mib} MiB layer for peak memory");
    let big_digest = publish(&work, &source, "big", &[big_layer_mib << 20], 4242)?;
    signer.sign(&lookaside, "big", &big_digest)?;
    let big_refs = [format!("stagex/big:1@{big_digest}")];
    let (big_seconds, our_peak) = peak_rss(&mirror(
        &format!("{}/big", ours_registry.address),
        1,
        &big_refs,
    ))?;
    let (_, skopeo_peak) = peak_rss(&skopeo_copy(
        &skopeo,
        &format!("{source}/big:1"),
        &format!("{}/big/big:1", ours_registry.address),
    ))?;

    println!(
        "mirror, {images} images x 3 x {layer_mib} MiB, each into a fresh registry, median of {rounds}: ours --jobs 1 {ours_serial:.2}s, ours --jobs {REFS_AT_ONCE} {ours:.2}s ({:.0} MiB/s), skopeo copy {skopeo_seconds:.2}s, unchecked copier (the limit) {limit_seconds:.2}s; ours vs skopeo {:.2}x, ours vs the limit {:.2}x",
        total_mib / ours,
        skopeo_seconds / ours,
        limit_seconds / ours,
    );
    println!("no-op re-mirror of {noop_refs} references: {noop_seconds:.2}s");
    println!(
        "one {big_layer_mib} MiB layer: ours {big_seconds:.1}s, peak RSS ours {:.1} MiB, skopeo {:.1} MiB",
        our_peak as f64 / 1024.0,
        skopeo_peak as f64 / 1024.0
    );
    Ok(())
}

/// `bench copy-unchecked`: [`unchecked_copy`] in a process of its own.
pub fn copy_unchecked(source: &str, target: &str, names: &[String]) -> Result<()> {
    registry::block_on(unchecked_copy(source, target, names))?
}

/// The limit: each image's blobs piped GET → PUT (one monolithic upload each),
/// then its manifest, with no digest or size checks, at our parallelism.
async fn unchecked_copy(source: &str, target: &str, names: &[String]) -> Result<()> {
    let http = crate::http::client()?.clone();
    let (source_host, source_path) = source.split_once('/').context("source prefix")?;
    let copy_image = |name: String| {
        let http = http.clone();
        async move {
            let from = format!("http://{source_host}/v2/{source_path}/{name}");
            let to = format!("http://{target}/v2/unchecked/{name}");
            let manifest = http
                .get(format!("{from}/manifests/1"))
                .header("Accept", MANIFEST_TYPES.join(", "))
                .send()
                .await?
                .error_for_status()?;
            let media_type = manifest
                .headers()
                .get("content-type")
                .cloned()
                .context("a manifest without a content type")?;
            let bytes = manifest.bytes().await?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)?;
            let mut blobs = vec![value["config"]["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string()];
            for layer in value["layers"].as_array().into_iter().flatten() {
                blobs.push(layer["digest"].as_str().unwrap_or_default().to_string());
            }
            futures_util::stream::iter(blobs)
                .map(|digest| {
                    let http = http.clone();
                    let (from, to) = (from.clone(), to.clone());
                    async move {
                        let session = http
                            .post(format!("{to}/blobs/uploads/"))
                            .send()
                            .await?
                            .error_for_status()?;
                        let location = session
                            .headers()
                            .get("location")
                            .and_then(|l| l.to_str().ok())
                            .context("an upload without a location")?
                            .to_string();
                        let location = if location.starts_with("http") {
                            location
                        } else {
                            format!("http://{target}{location}")
                        };
                        let separator = if location.contains('?') { '&' } else { '?' };
                        let blob = http
                            .get(format!("{from}/blobs/{digest}"))
                            .send()
                            .await?
                            .error_for_status()?;
                        let length = blob.content_length().context("a blob without a length")?;
                        http.put(format!("{location}{separator}digest={digest}"))
                            .header("Content-Length", length)
                            .body(reqwest::Body::wrap_stream(blob.bytes_stream()))
                            .send()
                            .await?
                            .error_for_status()?;
                        anyhow::Ok(())
                    }
                })
                .buffer_unordered(BLOBS_AT_ONCE)
                .try_collect::<Vec<()>>()
                .await?;
            http.put(format!("{to}/manifests/1"))
                .header("Content-Type", media_type)
                .body(bytes)
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(())
        }
    };
    futures_util::stream::iter(names.iter().cloned())
        .map(copy_image)
        .buffer_unordered(REFS_AT_ONCE)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// A registry of the bench's own, on a free loopback port, stopped on drop.
struct ScratchRegistry {
    address: String,
    process: duct::Handle,
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
        let process = Cmd::new(layout.tools().join("usr/bin/docker-registry"))
            .arg("serve")
            .arg(&config)
            .start_quiet()
            .context("starting a scratch registry")?;
        let registry = ScratchRegistry { address, process };
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
        let _ = self.process.kill();
    }
}

/// `skopeo copy` between two plain-HTTP registries, keeping digests.
fn skopeo_copy(skopeo: &Path, from: &str, to: &str) -> Cmd {
    let mut command = Cmd::new(skopeo);
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
fn timed(command: &Cmd) -> Result<f64> {
    let started = Instant::now();
    command.output()?;
    Ok(started.elapsed().as_secs_f64())
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
    let target = ImageRef::parse(&format!("{prefix}/{name}:1"))?;
    registry::block_on(async {
        let client = Registry::connect_to(&target, Role::Target).await?;
        transfer::push_archive(&client, &archive, &target).await
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
        let digest = crate::hash::hex_sha256(bytes);
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
