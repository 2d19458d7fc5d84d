//! Stand-in "StageX" images for a machine that cannot pull StageX: FROM-scratch
//! images made of Debian's busybox-static, musl and ca-certificates, pushed to
//! the test registry under StageX's names, and a checkout shaped like ours that
//! pins them by digest. The demo, the benchmarks and the integration tests all
//! start from here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::test_env::Layout;
use crate::commands::args::default_jobs;
use crate::commands::build::{plan, run::run_builds};
use crate::commands::digests;
use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::oci::archive::OciArchive;
use crate::oci::auth::Role;
use crate::oci::reference::ImageRef;
use crate::oci::registry::{self, Registry};
use crate::oci::transfer;
use crate::report;
use crate::tools::process::Env;

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

/// A program of a stand-in package: a made ELF file that loads as the real
/// one does (its interpreter and libraries, under the stand-in musl's names).
pub struct Program {
    pub path: &'static str,
    pub needs: &'static [&'static str],
}

/// The stand-in musl: Debian's `libc.so` for this machine's architecture,
/// which is also its dynamic linker (the names and the ELF machine are
/// this host's, as the Debian packages test-env fetched are).
struct Musl {
    /// Debian's folder of it, under `lib/`.
    debian_dir: &'static str,
    /// The dynamic linker's file name.
    loader: &'static str,
    /// The ELF `e_machine` of its programs.
    machine: u16,
}

fn musl() -> Musl {
    match std::env::consts::ARCH {
        "aarch64" => Musl {
            debian_dir: "aarch64-linux-musl",
            loader: "ld-musl-aarch64.so.1",
            machine: 183,
        },
        _ => Musl {
            debian_dir: "x86_64-linux-musl",
            loader: "ld-musl-x86_64.so.1",
            machine: 62,
        },
    }
}

/// The interpreter the stand-in programs name.
fn interpreter() -> String {
    format!("/lib/{}", musl().loader)
}

const LIBC: &str = "libc.so";

/// core-ca-certificates' programs (StageX packages/core/ca-certificates/
/// Containerfile:23, `make install`; c_rehash links core-openssl's libcrypto).
pub const CA_PROGRAMS: &[Program] = &[
    Program {
        path: "/usr/sbin/update-ca-certificates",
        needs: &[LIBC],
    },
    Program {
        path: "/usr/bin/c_rehash",
        needs: &["libcrypto.so.3", LIBC],
    },
];

impl Program {
    pub fn elf(&self) -> Vec<u8> {
        use crate::commands::check_runtime::elf::synthetic::{make, Spec};
        let interpreter = interpreter();
        make(&Spec {
            bits: 64,
            machine: musl().machine,
            interpreter: Some(&interpreter),
            needed: self.needs,
            ..Spec::default()
        })
    }
}

/// The release the fixture checkout's lists are filed under.
const STANDIN_RELEASE: &str = "2026.03.0";

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

/// Where a prepared stand-in checkout lives.
pub struct Prepared {
    pub checkout: PathBuf,
    pub registry: String,
    pub env: Env,
    /// Stand-in package → manifest digest in the registry.
    pub standins: BTreeMap<String, String>,
}

/// Build and push the stand-ins, and write the fixture checkout that pins them.
pub fn prepare(layout: &Layout, dir: &Path) -> Result<Prepared> {
    let env = layout.env();
    let registry = layout.registry();
    let standin_dir = dir.join("standins");
    write_standin_contexts(&layout.standin_root(), &standin_dir)?;
    let catalog = Catalog::load(&standin_dir)?;
    let options = plan::BuildOptions {
        // Packages are copied from, never started.
        check_runtime: false,
        ..plan::BuildOptions::new(&standin_dir, 1)
    };
    let builds = plan::plan(&catalog, &[], &options)?;
    crate::ui::say!(
        "stand-ins: building {} stand-in StageX images",
        builds.len()
    );
    let run = run_builds(&builds, default_jobs(), &env, "stand-in");
    report::fail_if_any(&run.reports, "stand-in build")?;
    let mut standins = BTreeMap::new();
    for standin in STANDINS {
        let record = run
            .built
            .get(standin.package)
            .with_context(|| format!("no build of stand-in {}", standin.package))?;
        let archive = OciArchive::open(&standin_dir.join(&record.archive))?;
        let tag = if standin.tag == "latest" {
            "standin"
        } else {
            standin.tag
        };
        let target = ImageRef::parse(&format!(
            "{registry}/{}/{}:{tag}",
            settings::STAGEX_NAMESPACE,
            standin.package
        ))?;
        registry::block_on(async {
            let client = Registry::connect_to(&target, Role::Target).await?;
            transfer::push_archive(&client, &archive, &target).await
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
                    debian.join("lib").join(musl().debian_dir).join("libc.so"),
                    rootfs.join("usr/lib/libc.so"),
                )?;
                std::os::unix::fs::symlink("libc.so", rootfs.join("usr/lib").join(musl().loader))?;
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
                std::os::unix::fs::symlink(
                    "certs/ca-certificates.crt",
                    rootfs.join("etc/ssl/cert.pem"),
                )?;
                // StageX's package also ships its programs, musl programs
                // of which c_rehash needs libcrypto: so does the stand-in,
                // so a whole-package copy fails here as it would there.
                for program in CA_PROGRAMS {
                    let path = rootfs.join(program.path.trim_start_matches('/'));
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&path, program.elf())?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                }
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
            "# Like ../../base: FHS layout, musl, busybox, CA bundle.\n{header}FROM {} AS musl\nFROM {} AS busybox\nFROM {} AS ca-certificates\n\nFROM {}\nARG SOURCE_DATE_EPOCH\nCOPY --from=musl . /\nCOPY --from=busybox . /\n# Only the bundle: the package's programs need libcrypto.\nCOPY --from=ca-certificates /etc/ssl/ /etc/ssl/\n",
            pin("core-musl"),
            pin("core-busybox"),
            pin("core-ca-certificates"),
            pin("core-filesystem")
        ),
    );
    files.insert(
        "base-static/Containerfile".to_string(),
        format!(
            "# Like ../../base-static: FHS layout and the CA bundle only.\n{header}FROM {} AS ca-certificates\n\nFROM {}\nARG SOURCE_DATE_EPOCH\nCOPY --from=ca-certificates /etc/ssl/ /etc/ssl/\nENTRYPOINT []\n",
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
    // What `run-example hello` must see it print.
    files.insert(
        "examples/hello/expected-output".to_string(),
        "hello from the demo\n".to_string(),
    );
    // As ours: what builds and runs leave is never checked in (nor copied
    // into a workflow's workspace by act).
    files.insert(".gitignore".to_string(), "/target\n/out\n".to_string());
    files.insert(
        crate::model::cpes::CPE_MAP.to_string(),
        "# The stand-ins' CPEs: the packages they stand in for.\ncore-musl\tmusl-libc\tmusl\ncore-busybox\tbusybox\tbusybox\n".to_string(),
    );
    let release = format!("stagex-release/{STANDIN_RELEASE}");
    files.insert(
        crate::model::release::CURRENT_FILE.to_string(),
        format!("{STANDIN_RELEASE}\n"),
    );
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
    files.insert(
        format!("{release}/{}", crate::model::facts::FILE),
        standin_facts(standins),
    );
    files.insert(format!("{release}/versions.tsv"), versions);
    files
}

/// The package facts of the stand-ins, as their contexts above make them
/// (each read at its stand-in Containerfile's `COPY rootfs/ /`, line 2).
fn standin_facts(standins: &BTreeMap<String, String>) -> String {
    let at = |package: &str| format!("at=standins/{package}/Containerfile:2");
    let mut text =
        String::from("# The stand-ins' facts: what xtask/src/dev/standins.rs puts in each.\n");
    for standin in STANDINS {
        let package = standin.package;
        let hex = standins[package].trim_start_matches("sha256:");
        text.push_str(&format!("package {package} digest={hex} read=stand-in\n"));
        let at = at(package);
        match package {
            "core-filesystem" => {
                for (link, target) in [
                    ("bin", "usr/bin"),
                    ("lib", "usr/lib"),
                    ("sbin", "usr/sbin"),
                    ("lib64", "usr/lib"),
                ] {
                    text.push_str(&format!("link {package} /{link} to={target} {at}\n"));
                }
                text.push_str(&format!("data {package} /etc/passwd {at}\n"));
            }
            "core-musl" => {
                text.push_str(&format!(
                    "elf {package} /usr/lib/{LIBC} soname={LIBC} {at}\nlink {package} /usr/lib/{} to={LIBC} {at}\n",
                    musl().loader
                ));
            }
            "core-busybox" => {
                text.push_str(&format!("elf {package} /usr/bin/busybox {at}\n"));
            }
            "core-ca-certificates" => {
                text.push_str(&format!(
                    "data {package} /etc/ssl/certs/ca-certificates.crt {at}\nlink {package} /etc/ssl/cert.pem to=certs/ca-certificates.crt {at}\n"
                ));
                for program in CA_PROGRAMS {
                    text.push_str(&format!(
                        "elf {package} {} interp={} needs={} {at}\n",
                        program.path,
                        interpreter(),
                        program.needs.join(",")
                    ));
                }
            }
            _ => {}
        }
    }
    text
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
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    digests::ensure(checkout, crate::files::Mode::Write)?;
    crate::commands::sbom::ensure_cpes(checkout, crate::files::Mode::Write)?;
    crate::commands::k8s::ensure(checkout, crate::files::Mode::Write)?;
    Ok(())
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

    /// The fixture checkout passes lint's closure check, and copying the
    /// whole stand-in CA package fails it as the real package would: a
    /// program without its interpreter (base-static) or without libcrypto.
    #[test]
    fn the_standins_catch_a_whole_package_copy_of_the_ca_certificates() {
        use crate::model::facts::Facts;
        use crate::model::release::Release;
        let standins: BTreeMap<String, String> = STANDINS
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.package.to_string(),
                    format!("sha256:{}", (i + 1).to_string().repeat(64)),
                )
            })
            .collect();
        let findings = |edit: &dyn Fn(&str, String) -> String| {
            let root = tempfile::tempdir().unwrap();
            for (path, text) in checkout_files("registry/stagex", &standins) {
                let path_buf = root.path().join(&path);
                std::fs::create_dir_all(path_buf.parent().unwrap()).unwrap();
                std::fs::write(path_buf, edit(&path, text)).unwrap();
            }
            let catalog = Catalog::load(root.path()).unwrap();
            let release = Release::current(root.path()).unwrap();
            let facts = Facts::current(root.path()).unwrap().unwrap();
            let mut found: Vec<String> =
                crate::commands::closure::check(&catalog, &release, &facts)
                    .findings
                    .iter()
                    .map(|f| format!("{} {}: {}", f.location, f.rule, f.message))
                    .collect();
            found.extend(
                crate::commands::lint::check(&catalog, &release)
                    .iter()
                    .map(|f| f.to_string()),
            );
            found
        };
        assert_eq!(findings(&|_, text| text), Vec::<String>::new());
        let whole = |_: &str, text: String| {
            text.replace(
                "COPY --from=ca-certificates /etc/ssl/ /etc/ssl/",
                "COPY --from=ca-certificates . /",
            )
        };
        let found = findings(&whole);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found.iter().any(|f| f.starts_with("base/Containerfile:")
                && f.contains("missing-library")
                && f.contains("`/usr/bin/c_rehash`")
                && f.contains("needs libcrypto.so.3")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("base-static/Containerfile:")
                    && f.contains("missing-interpreter")
                    && f.contains("c_rehash")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("base-static/Containerfile:")
                    && f.contains("missing-interpreter")
                    && f.contains("update-ca-certificates")),
            "{found:#?}"
        );
    }

    /// The stand-in programs are what their facts say.
    #[test]
    fn the_standin_programs_load_as_recorded() {
        for program in CA_PROGRAMS {
            let elf = crate::commands::check_runtime::elf::read(&program.elf()).unwrap();
            assert_eq!(elf.interpreter, Some(interpreter()));
            assert_eq!(elf.needed, program.needs);
        }
    }
}
