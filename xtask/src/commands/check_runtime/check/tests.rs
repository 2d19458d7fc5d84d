use super::*;
use crate::commands::check_runtime::elf::tests::{make, Spec};
use crate::commands::check_runtime::tree::tests::rootfs;
#[allow(unused_imports)]
use crate::oci::rootfs::Entry;

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
        Image::new(&self.rootfs, &self.sniffs, &self.config, &self.packages).check()
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
        "starts /usr/bin/ruby; 4 ELF files (1 with an interpreter); 2 libraries loaded"
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
        ["nosuch: the entrypoint: `nosuch` is in no folder of PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) as a file this user may execute"]
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
        ["/usr/bin/private: the entrypoint: not executable by uid 1000 gid 1000 (mode 700, owner 0:0)"]
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
        ["/usr/bin/start: its #! line hands env one argument, `python3 -u`, which env takes for a program name: write `#!/usr/bin/env -S python3 -u`"]
    );
    // `env -S` splits it: then python3 must be found through PATH.
    image.file(
        "usr/bin/start",
        Sniff::Script("/usr/bin/env -S python3 -u".into()),
    );
    assert_eq!(
        image.problems(),
        ["/usr/bin/start: the program its #! line has `env` start, `python3`: `python3` is in no folder of PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) as a file this user may execute"]
    );
    image.file(
        "usr/bin/python3",
        Sniff::Script("/nonexistent/interp".into()),
    );
    assert_eq!(
        image.problems(),
        ["/usr/bin/python3: its #! interpreter /nonexistent/interp: /nonexistent does not exist"]
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
        ["/etc/passwd: the entrypoint: neither an ELF program nor a #! script: exec fails"]
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
    assert_eq!(
        bare,
        RunConfig {
            architecture: "amd64".into(),
            ..RunConfig::default()
        }
    );
    assert_eq!(bare.machine(), Some((64, 62)));
    let nulls = serde_json::json!({"config": {"Entrypoint": null, "Cmd": null}});
    assert_eq!(
        RunConfig::from_image_config(&nulls).unwrap(),
        RunConfig::default()
    );
    assert!(RunConfig::from_image_config(&serde_json::json!({"config": {"Cmd": "sh"}})).is_err());
}

/// What the attack on the first version found, each now refused.
mod hostile {
    use super::*;

    #[test]
    fn a_crlf_shebang_fails_as_the_kernel_fails_it() {
        let mut image = Fixture::musl();
        image.elf("usr/bin/busybox", &Spec::default());
        image.link("usr/bin/sh", "busybox");
        image.file(
            "usr/bin/start.sh",
            sniff(
                "usr/bin/start.sh",
                Sniffed::Whole(b"#!/bin/sh\r\necho hi\r\n"),
            ),
        );
        image.start(&["/usr/bin/start.sh"]);
        assert_eq!(
            image.problems(),
            ["/usr/bin/start.sh: the entrypoint: its #! line ends in \\r (CRLF line endings): the kernel looks for `/bin/sh\\r` and finds nothing; convert the script to LF"]
        );
    }

    #[test]
    fn a_shebang_without_a_slash_is_not_searched_in_path() {
        let mut image = Fixture::musl();
        image.elf("usr/bin/python3", &program(MUSL, &[]));
        image.file("usr/bin/start", Sniff::Script("python3".into()));
        image.start(&["/usr/bin/start"]);
        assert_eq!(
            image.problems(),
            ["/usr/bin/start: its #! interpreter /python3: /python3 does not exist"]
        );
    }

    #[test]
    fn a_numeric_user_takes_its_passwd_group_and_its_other_groups() {
        let mut image = Fixture::musl();
        image.text(
            "etc/passwd",
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        );
        image.text("etc/group", "root:x:0:\napp:x:1000:\nops:x:2000:app\n");
        image.elf("usr/bin/tool", &Spec::default());
        image.start(&["/usr/bin/tool"]);
        let tool = |image: &mut Fixture, mode: u32, gid: u64| {
            let entry = image.rootfs.entries.get_mut("usr/bin/tool").unwrap();
            entry.mode = mode;
            entry.gid = gid;
        };
        // root:root 0750 is not for uid 1000, whose group is 1000.
        image.config.user = "1000".into();
        tool(&mut image, 0o750, 0);
        assert_eq!(image.problems().len(), 1, "{:?}", image.problems());
        // root:1000 0750 is.
        tool(&mut image, 0o750, 1000);
        assert_eq!(image.problems(), Vec::<String>::new());
        // root:2000 0750: through the group that lists `app`.
        tool(&mut image, 0o750, 2000);
        assert_eq!(image.problems(), Vec::<String>::new());
        // An explicit group replaces the others.
        image.config.user = "app:app".into();
        assert_eq!(image.problems().len(), 1);
        // `app:` is no group at all, as for runc.
        image.config.user = "app:".into();
        assert_eq!(image.problems(), Vec::<String>::new());
        image.config.user = "4294967296".into();
        assert!(image.problems()[0].contains("the runtime refuses it"));
    }

    #[test]
    fn a_program_of_another_architecture_is_an_exec_format_error() {
        let mut image = Fixture::musl();
        image.elf(
            "usr/bin/tool",
            &Spec {
                machine: 183,
                ..Spec::default()
            },
        );
        image.start(&["/usr/bin/tool"]);
        image.config.architecture = "amd64".into();
        assert_eq!(
            image.problems(),
            ["/usr/bin/tool: the entrypoint: /usr/bin/tool is 64-bit LSB aarch64, but the image is amd64: exec format error"]
        );
        image.config.architecture = "arm64".into();
        assert_eq!(image.problems(), Vec::<String>::new());
    }

    #[test]
    fn musl_stops_at_a_folder_a_loop_or_an_object_file() {
        let mut image = Fixture::musl();
        image.elf("usr/bin/tool", &program(MUSL, &["libx.so"]));
        image.elf("usr/lib/libx.so", &library(&[]));
        assert_eq!(image.problems(), Vec::<String>::new());
        // LD_LIBRARY_PATH is searched first: what is there of that name ends it.
        image
            .config
            .env
            .push(("LD_LIBRARY_PATH".into(), "/opt/first".into()));
        image.rootfs.entries.insert(
            "opt/first/libx.so".into(),
            Entry::example(Kind::Directory, None),
        );
        assert_eq!(
            image.problems(),
            ["/usr/bin/tool: needs libx.so: /opt/first/libx.so is a folder, not a file: the linker opens it, and fails"]
        );
        image.rootfs.entries.remove("opt/first/libx.so");
        image.link("opt/first/libx.so", "libx.so");
        assert!(
            image.problems()[0].contains("a loop"),
            "{:?}",
            image.problems()
        );
        image.rootfs.entries.remove("opt/first/libx.so");
        // An object file where the library should be.
        let mut object = make(&Spec {
            bits: 64,
            machine: X86_64,
            ..Spec::default()
        });
        object[16] = 1; // ET_REL
        image.file(
            "opt/first/libx.so",
            sniff("opt/first/libx.so", Sniffed::Whole(&object)),
        );
        assert!(
            image.problems()[0].contains("no linker loads"),
            "{:?}",
            image.problems()
        );
    }

    #[test]
    fn musl_ignores_a_run_path_with_another_dynamic_token() {
        let mut image = Fixture::musl();
        let spec = Spec {
            runpath: Some("/opt/app/lib:$LIB"),
            ..program(MUSL, &["libapp.so"])
        };
        image.elf("usr/bin/app", &spec);
        image.elf("opt/app/lib/libapp.so", &library(&[]));
        assert!(
            image.problems()[0].starts_with(
                "/usr/bin/app: needs libapp.so: not found in /lib, /usr/local/lib, /usr/lib"
            ),
            "{:?}",
            image.problems()
        );
    }

    #[test]
    fn a_broken_elf_file_nothing_uses_is_a_note() {
        let mut image = Fixture::musl();
        image.file(
            "usr/share/testdata/bad.elf",
            Sniff::BrokenElf("truncated".into()),
        );
        let verdict = image.check();
        assert!(verdict.passed(), "{:?}", verdict.problems);
        assert!(verdict.notes[0].contains("bad.elf starts like an ELF file"));
    }

    #[test]
    fn wrappers_options_with_values_are_skipped() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            wrapped_program("tini", &args(&["-p", "SIGTERM", "app"])),
            Some("app")
        );
        assert_eq!(
            wrapped_program("env", &args(&["-u", "HOME", "A=1", "app"])),
            Some("app")
        );
        assert_eq!(
            wrapped_program("tini", &args(&["-s", "--", "-app"])),
            Some("-app")
        );
    }

    /// A chain of libraries each with its interpreter and a run path: the
    /// budget bounds the work, whatever the archive holds (a smaller budget
    /// here; the next test spends the whole of [`MAX_STEPS`]).
    #[test]
    fn the_work_is_bounded() {
        let mut image = Fixture::musl();
        let names: Vec<String> = (0..400).map(|i| format!("lib{i}.so")).collect();
        for (i, name) in names.iter().enumerate() {
            let next: Vec<&str> = names
                .get(i + 1)
                .map(|n| vec![n.as_str()])
                .unwrap_or_default();
            let spec = Spec {
                runpath: Some("/a:/b:/c:/d:/e:/f:/g:/h"),
                ..program(MUSL, &next)
            };
            image.elf(&format!("usr/lib/{name}"), &spec);
        }
        let verdict = Image::new(&image.rootfs, &image.sniffs, &image.config, &image.packages)
            .with_budget(100_000)
            .check();
        assert!(
            verdict
                .problems
                .iter()
                .any(|p| p.message.contains("stopped after")),
            "{:?}",
            verdict.problems.len()
        );
    }

    /// The crafted archive of the attack: `/lib` a chain of 39 symlinks of
    /// 800 `x/../` steps each, and a program needing 1,000 libraries. Each
    /// lookup through `/lib` walks 64,000 parts: the budget counts them, not
    /// lookups, and the problems' text is capped.
    #[test]
    fn a_chain_of_climbing_links_costs_what_it_walks() {
        let mut image = Fixture::musl();
        image.rootfs.entries.remove("lib");
        image
            .rootfs
            .entries
            .insert("x".into(), Entry::example(Kind::Directory, None));
        let climb = "x/../".repeat(800);
        image.link("lib", "c1");
        for i in 1..39 {
            image.link(&format!("c{i}"), &format!("{climb}c{}", i + 1));
        }
        image.link("c39", &format!("{climb}usr/lib"));
        let names: Vec<String> = (0..1000).map(|i| format!("lib{i}.so")).collect();
        let needed: Vec<&str> = names.iter().map(String::as_str).collect();
        image.elf("usr/bin/app", &program(MUSL, &needed));
        image.start(&["/usr/bin/app"]);

        let started = std::time::Instant::now();
        let verdict = image.check();
        let text: usize = verdict.problems.iter().map(|p| p.to_string().len()).sum();
        crate::ui::say!(
            "chain of climbing links: {:?}, {} problems, {text} bytes of problem text",
            started.elapsed(),
            verdict.problems.len()
        );
        assert!(
            verdict
                .problems
                .iter()
                .any(|p| p.message.contains("stopped after")),
            "the budget ran out and says so"
        );
        assert!(text < MAX_PROBLEM_TEXT + 4096, "{text} bytes of problems");
        // Every chain shown is clipped: no message holds a whole target.
        assert!(
            verdict.problems.iter().all(|p| p.message.len() < 4096),
            "a message holds a whole chain"
        );
    }
}
