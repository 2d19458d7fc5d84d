//! `cargo xtask demo`: the whole pipeline on this machine, offline. Stand-in
//! "StageX" images (FROM scratch, from Debian's busybox-static, musl and
//! ca-certificates) go into the test registry; a checkout shaped like ours pins
//! them; then lint → build → verify-reproducible → push → pull back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use xshell::Shell;

use crate::build::{self, BuildOptions, Env};
use crate::catalog::Catalog;
use crate::oci::archive::OciArchive;
use crate::oci::registry::{self, Registry};
use crate::release::Release;
use crate::report::{self, Outcome, StepReport};
use crate::reproduce::VerifyReproducible;
use crate::settings;
use crate::test_env::{self, Layout};

/// The whole pipeline offline, on stand-in StageX images in the test registry.
#[derive(Debug, Args)]
pub struct Demo {
    /// Write a JSON report (each image's digest, archive, reproducibility, pushed reference).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Work folder: stand-ins and the fixture checkout (default: target/demo).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Only push the stand-ins and write the fixture checkout (for tests and benchmarks).
    #[arg(long)]
    setup_only: bool,
}

/// A stand-in package: the StageX name, and the files it holds.
pub struct Standin {
    pub package: &'static str,
    /// Real release 2026.03.0 version tag, so the fixture reads like ours.
    pub tag: &'static str,
}

pub const STANDINS: &[Standin] = &[
    Standin {
        package: "core-filesystem",
        tag: "latest",
    },
    Standin {
        package: "core-musl",
        tag: "1.2.5",
    },
    Standin {
        package: "core-busybox",
        tag: "1.37.0",
    },
    Standin {
        package: "core-ca-certificates",
        tag: "f2e816d18e74480775f74a2620f48c4d4dc51b7e",
    },
];

/// Busybox applets the fixture images use.
const APPLETS: &[&str] = &[
    "sh",
    "cat",
    "date",
    "dd",
    "echo",
    "ls",
    "mkdir",
    "sha256sum",
    "true",
];

#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub registry: String,
    pub images: Vec<DemoImage>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct DemoImage {
    pub image: String,
    pub digest: String,
    pub archive: String,
    pub reproducible: bool,
    pub pushed: Option<String>,
    pub pulled_back_identical: bool,
}

/// Where a prepared demo lives.
pub struct Prepared {
    pub checkout: PathBuf,
    pub registry: String,
    pub env: Env,
    /// Stand-in package → manifest digest in the registry.
    pub standins: BTreeMap<String, String>,
}

impl Demo {
    pub fn run(self, sh: &Shell) -> Result<()> {
        let root = sh.current_dir();
        let dir = self.dir.clone().unwrap_or_else(|| root.join("target/demo"));
        let layout = Layout::for_root(&root);
        test_env::up(sh, &layout)?;
        let prepared = prepare(&layout, &dir)?;
        if self.setup_only {
            println!("{}", prepared.checkout.display());
            return Ok(());
        }
        let report = run_pipeline(&prepared)?;
        eprint!("\n{}", report::table(&report.steps));
        for image in &report.images {
            eprintln!(
                "{:<12} {}  reproducible={}  pushed={}",
                image.image,
                image.digest,
                image.reproducible,
                image.pushed.as_deref().unwrap_or("-")
            );
        }
        if let Some(path) = &self.json {
            let mut text = serde_json::to_string_pretty(&report)?;
            text.push('\n');
            crate::generated::write_atomically(path, text.as_bytes())?;
        }
        report::fail_if_any(&report.steps, "demo")
    }
}

/// Build and push the stand-ins, and write the fixture checkout that pins them.
pub fn prepare(layout: &Layout, dir: &Path) -> Result<Prepared> {
    let env = layout.env();
    let registry = layout.registry();
    let standin_dir = dir.join("standins");
    write_standin_contexts(&layout.standin_root(), &standin_dir)?;
    let catalog = Catalog::load(&standin_dir)?;
    let options = BuildOptions::new(&standin_dir, 1);
    let builds = build::plan(&catalog, &[], &options)?;
    eprintln!("demo: building {} stand-in StageX images", builds.len());
    let (reports, built) = build::run_builds_with(&builds, build::default_jobs(), &env, "stand-in");
    report::fail_if_any(&reports, "stand-in build")?;
    let mut standins = BTreeMap::new();
    for standin in STANDINS {
        let record = &built[standin.package];
        let archive = OciArchive::open(&standin_dir.join(&record.archive))?;
        let tag = if standin.tag == "latest" {
            "standin"
        } else {
            standin.tag
        };
        let target = registry::parse_reference(&format!(
            "{registry}/{}/{}:{tag}",
            settings::STAGEX_NAMESPACE,
            standin.package
        ))?;
        let client = Registry::for_reference(&target)?;
        registry::block_on(async {
            client.login().await;
            crate::push::push_archive(&client, &archive, &target).await
        })??;
        standins.insert(standin.package.to_string(), record.manifest_digest.clone());
    }
    let checkout = dir.join("checkout");
    write_checkout(
        &checkout,
        &format!("{registry}/{}", settings::STAGEX_NAMESPACE),
        &standins,
    )?;
    Ok(Prepared {
        checkout,
        registry,
        env,
        standins,
    })
}

/// Each stand-in as a FROM-scratch image directory with its files.
fn write_standin_contexts(debian: &Path, dir: &Path) -> Result<()> {
    if !debian.join("bin/busybox").is_file() {
        bail!(
            "{} has no bin/busybox: run `cargo xtask test-env up` to fetch the stand-in packages",
            debian.display()
        );
    }
    if dir.exists() {
        // Only the contexts are rewritten; out/ (the cache of archives) stays.
        for standin in STANDINS {
            let context = dir.join(standin.package);
            if context.exists() {
                std::fs::remove_dir_all(&context)?;
            }
        }
    }
    for standin in STANDINS {
        let rootfs = dir.join(standin.package).join("rootfs");
        std::fs::create_dir_all(&rootfs)?;
        let mut containerfile = String::from("FROM scratch\nCOPY rootfs/ /\n");
        match standin.package {
            "core-filesystem" => {
                let home = dir.join(standin.package).join("home-user");
                std::fs::create_dir_all(&home)?;
                std::fs::write(home.join(".profile"), "export PS1='[stand-in] $ '\n")?;
                for sub in [
                    "etc", "tmp", "home", "usr/bin", "usr/lib", "usr/sbin", "var/tmp",
                ] {
                    std::fs::create_dir_all(rootfs.join(sub))?;
                }
                for (link, target) in [
                    ("bin", "usr/bin"),
                    ("lib", "usr/lib"),
                    ("sbin", "usr/sbin"),
                    ("lib64", "usr/lib"),
                ] {
                    std::os::unix::fs::symlink(target, rootfs.join(link))?;
                }
                std::fs::write(
                    rootfs.join("etc/passwd"),
                    "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                )?;
                std::fs::write(
                    rootfs.join("etc/group"),
                    "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
                )?;
                containerfile.push_str(
                    "COPY --chown=1000:1000 home-user/ /home/user/\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nUSER 1000:1000\nENTRYPOINT [\"/bin/sh\"]\n",
                );
            }
            "core-musl" => {
                std::fs::create_dir_all(rootfs.join("usr/lib"))?;
                std::fs::copy(
                    debian.join("lib/x86_64-linux-musl/libc.so"),
                    rootfs.join("usr/lib/libc.so"),
                )?;
                std::os::unix::fs::symlink("libc.so", rootfs.join("usr/lib/ld-musl-x86_64.so.1"))?;
            }
            "core-busybox" => {
                std::fs::create_dir_all(rootfs.join("usr/bin"))?;
                std::fs::copy(debian.join("bin/busybox"), rootfs.join("usr/bin/busybox"))?;
                for applet in APPLETS {
                    std::os::unix::fs::symlink("busybox", rootfs.join("usr/bin").join(applet))?;
                }
            }
            "core-ca-certificates" => {
                let mozilla = debian.join("usr/share/ca-certificates/mozilla");
                let mut certificates: Vec<PathBuf> = std::fs::read_dir(&mozilla)
                    .with_context(|| format!("listing {}", mozilla.display()))?
                    .map(|e| e.map(|e| e.path()))
                    .collect::<std::io::Result<_>>()?;
                certificates.sort();
                let mut bundle = Vec::new();
                for certificate in certificates {
                    bundle.extend(std::fs::read(certificate)?);
                }
                std::fs::create_dir_all(rootfs.join("etc/ssl/certs"))?;
                std::fs::write(rootfs.join("etc/ssl/certs/ca-certificates.crt"), bundle)?;
            }
            other => bail!("no recipe for stand-in {other}"),
        }
        std::fs::write(
            dir.join(standin.package).join("Containerfile"),
            containerfile,
        )?;
    }
    Ok(())
}

/// The fixture checkout's files: Containerfiles shaped like ours and a release
/// list naming the stand-in digests. Pure, so it is snapshot-tested.
pub fn checkout_files(
    prefix: &str,
    standins: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let pin = |package: &str| {
        let digest = &standins[package];
        let tag = STANDINS
            .iter()
            .find(|s| s.package == package)
            .map(|s| s.tag)
            .unwrap_or("latest");
        if tag == "latest" {
            format!("${{{}}}/{package}@{digest}", settings::REGISTRY_ARG)
        } else {
            format!("${{{}}}/{package}:{tag}@{digest}", settings::REGISTRY_ARG)
        }
    };
    let header = format!(
        "ARG {}={prefix}\nARG SOURCE_DATE_EPOCH\n\n",
        settings::REGISTRY_ARG
    );
    let mut files = BTreeMap::new();
    files.insert(
        "base/Containerfile".to_string(),
        format!(
            "# Like ../../base: FHS layout, musl, busybox, CA bundle.\n{header}FROM {} AS musl\nFROM {} AS busybox\nFROM {} AS ca-certificates\n\nFROM {}\nARG SOURCE_DATE_EPOCH\nCOPY --from=musl . /\nCOPY --from=busybox . /\nCOPY --from=ca-certificates . /\n",
            pin("core-musl"),
            pin("core-busybox"),
            pin("core-ca-certificates"),
            pin("core-filesystem")
        ),
    );
    files.insert(
        "base-static/Containerfile".to_string(),
        format!(
            "# Like ../../base-static: FHS layout and the CA bundle only.\n{header}FROM {} AS ca-certificates\n\nFROM {}\nARG SOURCE_DATE_EPOCH\nCOPY --from=ca-certificates . /\nENTRYPOINT []\n",
            pin("core-ca-certificates"),
            pin("core-filesystem")
        ),
    );
    files.insert(
        "examples/hello/Containerfile".to_string(),
        format!(
            "# Builds on this checkout's base image, supplied from its OCI archive.\n{header}# hadolint ignore=DL3006\nFROM base\nARG SOURCE_DATE_EPOCH\nRUN [\"/bin/sh\", \"-c\", \"echo hello from the demo > /home/user/hello.txt\"]\nENTRYPOINT [\"/bin/cat\", \"/home/user/hello.txt\"]\n"
        ),
    );
    let release = format!("stagex-release/{}", settings::STAGEX_RELEASE);
    let mut digests = String::new();
    let mut versions = String::from("image\tversion_tag\tdefined_in\tmanifest_digest\n");
    for standin in STANDINS {
        let hex = standins[standin.package].trim_start_matches("sha256:");
        digests.push_str(&format!("{hex} {}\n", standin.package));
        versions.push_str(&format!(
            "{}\t{}\tstand-in\t{hex}\n",
            standin.package, standin.tag
        ));
    }
    files.insert(format!("{release}/digests/core.txt"), digests);
    files.insert(format!("{release}/versions.tsv"), versions);
    files
}

fn write_checkout(
    checkout: &Path,
    prefix: &str,
    standins: &BTreeMap<String, String>,
) -> Result<()> {
    if checkout.exists() {
        std::fs::remove_dir_all(checkout)?;
    }
    for (path, text) in checkout_files(prefix, standins) {
        let path = checkout.join(path);
        std::fs::create_dir_all(path.parent().expect("files live in folders"))?;
        std::fs::write(path, text)?;
    }
    let catalog = Catalog::load(checkout)?;
    let release = Release::load(checkout, settings::STAGEX_RELEASE)?;
    std::fs::write(
        checkout.join(crate::digests::FILE),
        crate::digests::render(&catalog, &release),
    )?;
    Ok(())
}

/// lint → build → verify-reproducible → push → pull back, on the prepared checkout.
pub fn run_pipeline(prepared: &Prepared) -> Result<DemoReport> {
    let checkout = &prepared.checkout;
    let mut steps = Vec::new();

    let started = Instant::now();
    let catalog = Catalog::load(checkout)?;
    let release = Release::load(checkout, settings::STAGEX_RELEASE)?;
    let findings = crate::lint::check(&catalog, &release);
    for finding in &findings {
        eprintln!("{finding}");
    }
    let lint_outcome = if findings.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(format!("{} finding(s)", findings.len()))
    };
    steps.push(StepReport::new(
        "-",
        "lint",
        lint_outcome,
        started.elapsed(),
    ));

    let options = BuildOptions::new(checkout, demo_epoch());
    let builds = build::plan(&catalog, &[], &options)?;
    let (build_reports, built) =
        build::run_builds_with(&builds, build::default_jobs(), &prepared.env, "build");
    steps.extend(build_reports);

    let verify = VerifyReproducible {
        images: built.keys().cloned().collect(),
        ..Default::default()
    };
    let verify_reports = if built.is_empty() {
        Vec::new()
    } else {
        verify.reports(checkout, demo_epoch(), &prepared.env)?
    };
    steps.extend(verify_reports.iter().cloned());

    let mut images = Vec::new();
    for (name, result) in &built {
        let started = Instant::now();
        let target = format!("{}/demo/{name}:latest", prepared.registry);
        let pushed = crate::push::push_image(checkout, name, &target).and_then(|pushed| {
            pull_back_identical(checkout, name, &pushed).map(|same| (pushed, same))
        });
        let (pushed, identical) = match pushed {
            Ok((pushed, identical)) => {
                let outcome = if identical {
                    Outcome::Passed
                } else {
                    Outcome::Failed("pulled manifest differs from the archive's".into())
                };
                let mut report = StepReport::new(name, "push", outcome, started.elapsed());
                report.digest = Some(pushed.digest.clone());
                steps.push(report);
                (
                    Some(format!("{}@{}", pushed.reference, pushed.digest)),
                    identical,
                )
            }
            Err(error) => {
                steps.push(StepReport::new(
                    name,
                    "push",
                    Outcome::Failed(format!("{error:#}")),
                    started.elapsed(),
                ));
                (None, false)
            }
        };
        images.push(DemoImage {
            image: name.clone(),
            digest: result.manifest_digest.clone(),
            archive: checkout.join(&result.archive).display().to_string(),
            reproducible: verify_reports
                .iter()
                .any(|r| r.image == *name && r.outcome == Outcome::Passed),
            pushed,
            pulled_back_identical: identical,
        });
    }
    Ok(DemoReport {
        registry: prepared.registry.clone(),
        images,
        steps,
    })
}

/// A fixed epoch: the demo's output does not depend on when it runs.
fn demo_epoch() -> u64 {
    1_700_000_000
}

/// Pull the pushed manifest back by digest and compare it byte for byte.
fn pull_back_identical(root: &Path, image: &str, pushed: &crate::push::Pushed) -> Result<bool> {
    let record = crate::record::BuildRecord::load(root, image)?;
    let archive = OciArchive::open(&root.join(&record.archive))?;
    let by_digest = registry::parse_reference(&format!("{}@{}", pushed.repository, pushed.digest))?;
    let client = Registry::for_reference(&by_digest)?;
    let (bytes, digest) = registry::block_on(client.client.pull_manifest_raw(
        &by_digest,
        &client.auth,
        &[archive.manifest_media_type()],
    ))??;
    Ok(bytes.as_ref() == archive.manifest_bytes.as_slice() && digest == record.manifest_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_checkout() {
        let standins: BTreeMap<String, String> = STANDINS
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.package.to_string(),
                    format!("sha256:{}", i.to_string().repeat(64)),
                )
            })
            .collect();
        let files = checkout_files("127.0.0.1:5000/stagex", &standins);
        let rendered: Vec<String> = files
            .iter()
            .map(|(path, text)| format!("==> {path}\n{text}"))
            .collect();
        insta::assert_snapshot!(rendered.join("\n"));
    }
}
