use super::*;
use crate::commands::check_runtime::elf::tests::{make, Spec};
use crate::commands::check_runtime::tree::tests::rootfs;

const X86_64: u16 = 62;
const MUSL: &str = "/lib/ld-musl-x86_64.so.1";

/// An image under construction: paths as in [`rootfs`], and what each file
/// holds.
struct Fixture {
    rootfs: Rootfs,
    sniffs: HashMap<Origin, Sniff>,
    config: RunConfig,
    packages: BTreeSet<String>,
}

impl Fixture {
    /// The usual StageX layout: `/lib` → `usr/lib`, `/bin` → `usr/bin`, musl.
    fn musl() -> Fixture {
        let mut fixture = Fixture {
            rootfs: rootfs(&["bin -> usr/bin", "lib -> usr/lib", "usr/bin/", "usr/lib/"]),
            sniffs: HashMap::new(),
            config: RunConfig::default(),
            packages: ["core-gmp", "core-libunwind"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        fixture.elf("usr/lib/libc.so", &Spec::default());
        fixture.link("usr/lib/ld-musl-x86_64.so.1", "libc.so");
        fixture
    }

    /// An ELF file made from `spec` (64-bit x86_64 unless it says otherwise),
    /// read as the check reads it.
    fn elf(&mut self, path: &str, spec: &Spec<'_>) {
        let spec = Spec {
            bits: if spec.bits == 0 { 64 } else { spec.bits },
            machine: if spec.machine == 0 {
                X86_64
            } else {
                spec.machine
            },
            ..spec.clone()
        };
        let bytes = make(&spec);
        self.file(path, sniff(path, Sniffed::Whole(&bytes)));
    }

    fn file(&mut self, path: &str, sniff: Sniff) {
        let entry = Entry::example(Kind::File, None);
        self.sniffs.insert(entry.origin().unwrap(), sniff);
        self.rootfs.entries.insert(path.to_string(), entry);
    }

    fn text(&mut self, path: &str, text: &str) {
        self.file(path, sniff(path, Sniffed::Whole(text.as_bytes())));
    }

    fn link(&mut self, path: &str, target: &str) {
        self.rootfs.entries.insert(
            path.to_string(),
            Entry::example(Kind::Symlink, Some(target)),
        );
    }

    fn start(&mut self, argv: &[&str]) {
        self.config.entrypoint = argv.iter().map(|s| s.to_string()).collect();
    }

    fn check(&self) -> Verdict {
        Image {
            rootfs: &self.rootfs,
            sniffs: &self.sniffs,
            config: &self.config,
            packages: &self.packages,
        }
        .check()
    }

    fn problems(&self) -> Vec<String> {
        self.check()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }
}

fn program<'a>(interpreter: &'a str, needed: &'a [&'a str]) -> Spec<'a> {
    Spec {
        interpreter: Some(interpreter),
        needed,
        ..Spec::default()
    }
}

fn library<'a>(needed: &'a [&'a str]) -> Spec<'a> {
    Spec {
        needed,
        ..Spec::default()
    }
}

#[test]
fn a_complete_musl_image_passes() {
    let mut image = Fixture::musl();
    image.elf(
        "usr/bin/ruby",
        &program(MUSL, &["libruby.so.3.4", "libc.musl-x86_64.so.1"]),
    );
    image.elf(
        "usr/lib/libruby.so.3.4.9",
        &library(&["libz.so.1", "libc.so"]),
    );
    image.link("usr/lib/libruby.so.3.4", "libruby.so.3.4.9");
    image.elf("usr/lib/libz.so.1", &library(&[]));
    image.start(&["/usr/bin/ruby"]);
    let verdict = image.check();
    assert_eq!(verdict.problems, []);
    assert_eq!(verdict.program.as_deref(), Some("/usr/bin/ruby"));
    assert_eq!(
        (verdict.elf_files, verdict.programs, verdict.libraries),
        (4, 1, 2)
    );
    assert_eq!(
        verdict.summary(),
        "starts /usr/bin/ruby; 4 ELF files, 1 program, 2 libraries resolved"
    );
}

#[test]
fn a_missing_library_is_named_with_the_file_that_needs_it_and_its_package() {
    let mut image = Fixture::musl();
    image.elf("usr/bin/ruby", &program(MUSL, &["libruby.so.3.4"]));
    image.elf(
        "usr/lib/libruby.so.3.4",
        &library(&["libgmp.so.10", "libc.so"]),
    );
    image.start(&["/usr/bin/ruby"]);
    assert_eq!(
        image.problems(),
        ["/usr/lib/libruby.so.3.4: needs libgmp.so.10: not found in /lib, /usr/local/lib, /usr/lib (musl rules); StageX package `core-gmp` provides it"]
    );
}

#[test]
fn a_link_chain_to_nowhere_is_shown() {
    let mut image = Fixture::musl();
    image.elf("usr/lib/libgcc_s.so.1", &library(&["libunwind.so.1"]));
    image.link("usr/lib/libunwind.so.1", "libunwind.so");
    image.elf("usr/bin/java", &program(MUSL, &["libgcc_s.so.1"]));
    let problems = image.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("/usr/lib/libgcc_s.so.1: needs libunwind.so.1: not found in /lib, /usr/local/lib, /usr/lib (musl rules); /usr/lib/libunwind.so does not exist (symlinks followed: /lib/libunwind.so.1 → usr/lib → libunwind.so)"),
        "{problems:#?}"
    );
    assert!(problems[0].ends_with("StageX package `core-libunwind` provides it"));
}

#[test]
fn origin_runpaths_are_searched_from_the_objects_folder() {
    let mut image = Fixture::musl();
    let spec = Spec {
        runpath: Some("$ORIGIN/../lib"),
        ..program(MUSL, &["libapp.so.1"])
    };
    image.elf("opt/app/bin/app", &spec);
    image.elf("opt/app/lib/libapp.so.1", &library(&[]));
    image.start(&["/opt/app/bin/app"]);
    assert_eq!(image.problems(), Vec::<String>::new());
    image.rootfs.entries.remove("opt/app/lib/libapp.so.1");
    assert_eq!(
        image.problems(),
        ["/opt/app/bin/app: needs libapp.so.1: not found in /opt/app/bin/../lib, /lib, /usr/local/lib, /usr/lib (musl rules)"]
    );
}

#[test]
fn musls_path_file_replaces_its_default_folders() {
    let mut image = Fixture::musl();
    image.elf("usr/bin/tool", &program(MUSL, &["libx.so"]));
    image.elf("usr/lib/libx.so", &library(&[]));
    image.text("etc/ld-musl-x86_64.path", "/opt/lib\n");
    assert_eq!(
        image.problems(),
        ["/usr/bin/tool: needs libx.so: not found in /opt/lib (musl rules)"]
    );
    image.text("etc/ld-musl-x86_64.path", "/opt/lib:/usr/lib\n");
    assert_eq!(image.problems(), Vec::<String>::new());
}

#[test]
fn a_missing_dynamic_linker_fails_the_program() {
    let mut image = Fixture::musl();
    image.rootfs.entries.remove("usr/lib/ld-musl-x86_64.so.1");
    image.elf("usr/bin/tool", &program(MUSL, &[]));
    assert_eq!(
        image.problems(),
        ["/usr/bin/tool: needs its dynamic linker /lib/ld-musl-x86_64.so.1: /usr/lib/ld-musl-x86_64.so.1 does not exist (symlinks followed: /lib/ld-musl-x86_64.so.1 → usr/lib)"]
    );
}

#[test]
fn a_library_of_another_class_is_skipped_by_glibc_and_fatal_to_musl() {
    let mut image = Fixture::musl();
    let bits32 = Spec {
        bits: 32,
        machine: 3,
        ..program("/lib/ld-linux.so.2", &["libx.so.1"])
    };
    image.elf(
        "usr/lib/ld-linux.so.2",
        &Spec {
            bits: 32,
            machine: 3,
            ..Spec::default()
        },
    );
    image.elf("usr/bin/old", &bits32);
    image.elf("usr/lib/libx.so.1", &library(&[]));
    let problems = image.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("/usr/bin/old: needs libx.so.1: not found in /lib/i386-linux-gnu, /usr/lib/i386-linux-gnu, /lib, /usr/lib (glibc rules); /usr/lib/libx.so.1 is 64-bit LSB x86_64, not 32-bit LSB i386"),
        "{problems:#?}"
    );
    let mut musl = Fixture::musl();
    musl.elf(
        "usr/bin/old",
        &Spec {
            bits: 32,
            machine: X86_64,
            ..program(MUSL, &["libx.so.1"])
        },
    );
    musl.elf("usr/lib/libx.so.1", &library(&[]));
    let problems = musl.problems();
    assert!(
        problems.iter().any(|p| p == "/usr/bin/old: needs libx.so.1: /usr/lib/libx.so.1 is 64-bit LSB x86_64, not 32-bit LSB x86_64"),
        "{problems:#?}"
    );
}

#[test]
fn libraries_no_program_loads_are_checked_too() {
    let mut image = Fixture::musl();
    image.elf(
        "usr/lib/python3.13/lib-dynload/_ssl.so",
        &library(&["libssl.so.3"]),
    );
    assert_eq!(
        image.problems(),
        ["/usr/lib/python3.13/lib-dynload/_ssl.so: needs libssl.so.3: not found in /lib, /usr/local/lib, /usr/lib (musl rules)"]
    );
}

#[test]
fn the_entrypoint_must_exist_and_be_executable() {
    let mut image = Fixture::musl();
    image.elf("usr/bin/busybox", &Spec::default());
    image.link("usr/bin/sh", "busybox");
    image.start(&["/usr/bin/nosuch"]);
    assert_eq!(
        image.problems(),
        ["/usr/bin/nosuch: the entrypoint: /usr/bin/nosuch does not exist"]
    );
    // Found through PATH and the /bin link.
    image.start(&["sh", "-c", "true"]);
    assert_eq!(image.check().program.as_deref(), Some("/usr/bin/sh"));
    image.start(&["nosuch"]);
    assert_eq!(
        image.problems(),
        ["nosuch: the entrypoint `nosuch` is not in PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)"]
    );
    // A link that climbs out ends at the image's root, never on this machine.
    image.link("usr/bin/escape", "../../../../../../../bin/true");
    image.start(&["/usr/bin/escape"]);
    assert_eq!(
        image.problems(),
        ["/usr/bin/escape: the entrypoint: /usr/bin/true does not exist (symlinks followed: /usr/bin/escape → ../../../../../../../bin/true → usr/bin)"]
    );
    // Not executable by the user it runs as.
    image.text(
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    );
    image.file(
        "usr/bin/private",
        Sniff::Elf(
            crate::commands::check_runtime::elf::read(&make(&Spec {
                bits: 64,
                machine: X86_64,
                ..Spec::default()
            }))
            .unwrap(),
        ),
    );
    image
        .rootfs
        .entries
        .get_mut("usr/bin/private")
        .unwrap()
        .mode = 0o700;
    image.config.user = "app".into();
    image.start(&["/usr/bin/private"]);
    assert_eq!(
        image.problems(),
        ["/usr/bin/private: the entrypoint is not executable by uid 1000 gid 1000 (mode 700, owner 0:0)"]
    );
    image.config.user = String::new();
    assert_eq!(image.problems(), Vec::<String>::new(), "root may run it");
}

#[test]
fn a_named_user_must_exist() {
    let mut image = Fixture::musl();
    image.elf("usr/bin/busybox", &Spec::default());
    image.start(&["/usr/bin/busybox"]);
    image.config.user = "app".into();
    assert_eq!(
        image.problems(),
        ["USER: app: a user name, but the image has no /etc/passwd"]
    );
    image.text("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    assert_eq!(
        image.problems(),
        ["USER: app: no user `app` in /etc/passwd"]
    );
    image.config.user = "1000:1000".into();
    assert_eq!(
        image.problems(),
        Vec::<String>::new(),
        "numeric ids need no entry"
    );
    image.config.user = "root:wheel".into();
    assert_eq!(
        image.problems(),
        ["USER: root:wheel: no group `wheel` in /etc/group"]
    );
}

#[test]
fn scripts_need_their_interpreter_and_wrappers_their_program() {
    let mut image = Fixture::musl();
    image.elf("usr/bin/busybox", &Spec::default());
    image.link("usr/bin/env", "busybox");
    image.file(
        "usr/bin/start",
        Sniff::Script("/usr/bin/env python3 -u".into()),
    );
    image.start(&["/usr/bin/start"]);
    assert_eq!(
        image.problems(),
        ["python3: the program `env` starts for /usr/bin/start `python3` is not in PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)"]
    );
    image.file(
        "usr/bin/python3",
        Sniff::Script("/nonexistent/interp".into()),
    );
    assert_eq!(
        image.problems(),
        ["/nonexistent/interp: the #! interpreter of /usr/bin/python3: /nonexistent does not exist"]
    );
    // tini starts what follows `--`.
    image.elf("usr/sbin/tini", &program(MUSL, &[]));
    image.start(&["/usr/sbin/tini", "--", "/usr/bin/forgejo-runner", "daemon"]);
    assert_eq!(
        image.problems(),
        ["/usr/bin/forgejo-runner: the program tini starts: /usr/bin/forgejo-runner does not exist"]
    );
    // A file that is neither ELF nor script cannot be executed.
    image.text("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    image.start(&["/etc/passwd"]);
    assert_eq!(
        image.problems(),
        ["/etc/passwd: the entrypoint is neither an ELF program nor a #! script: exec fails"]
    );
}

#[test]
fn no_entrypoint_is_a_base_to_build_on() {
    let image = Fixture::musl();
    let verdict = image.check();
    assert!(verdict.passed());
    assert_eq!(
        verdict.notes,
        ["no entrypoint or command: nothing to start (an image to build on)"]
    );
}

#[test]
fn the_run_config_is_read_from_the_image_config() {
    let config = serde_json::json!({
        "architecture": "amd64",
        "config": {
            "Entrypoint": ["/usr/sbin/tini", "--"],
            "Cmd": ["daemon"],
            "WorkingDir": "/home/user",
            "User": "1000:1000",
            "Env": ["PATH=/usr/bin", "LD_LIBRARY_PATH=/opt/lib", "EMPTY"]
        }
    });
    let run = RunConfig::from_image_config(&config).unwrap();
    assert_eq!(run.argv(), ["/usr/sbin/tini", "--", "daemon"]);
    assert_eq!(run.env("LD_LIBRARY_PATH"), Some("/opt/lib"));
    assert_eq!(run.env("EMPTY"), Some(""));
    assert_eq!(run.user, "1000:1000");
    let bare = RunConfig::from_image_config(&serde_json::json!({"architecture": "amd64"})).unwrap();
    assert_eq!(bare, RunConfig::default());
    let nulls = serde_json::json!({"config": {"Entrypoint": null, "Cmd": null}});
    assert_eq!(
        RunConfig::from_image_config(&nulls).unwrap(),
        RunConfig::default()
    );
    assert!(RunConfig::from_image_config(&serde_json::json!({"config": {"Cmd": "sh"}})).is_err());
}
