//! `check-runtime` and the check `build` runs, on images the test engine
//! builds from Debian's own binaries: `tini` (dynamically linked against
//! glibc) with and without the files of `libc6`.

use std::path::Path;

use crate::common::*;

/// Where this machine's glibc lives, read rather than assumed (x86_64 is
/// not the only host): tini's own interpreter (`/lib64/ld-linux-x86-64.so.2`
/// on x86_64, `/lib/ld-linux-aarch64.so.1` on arm64) and the multiarch
/// folder of Debian's libc6 that holds it and libc.so.6
/// (`x86_64-linux-gnu`, `aarch64-linux-gnu`, …).
struct Glibc {
    interpreter: String,
    triplet: String,
}

fn glibc() -> Glibc {
    let tini = layout().tools().join("usr/bin/tini");
    assert!(tini.is_file(), "{} is missing: {PROVISION}", tini.display());
    let elf = xtask::commands::check_runtime::elf::read(&std::fs::read(&tini).unwrap()).unwrap();
    let interpreter = elf.interpreter.expect("tini is dynamically linked");
    let loader = Path::new(&interpreter).file_name().unwrap();
    let lib = standin_root().join("lib");
    let triplet = std::fs::read_dir(&lib)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|dir| {
            dir.file_name()
                .is_some_and(|name| name.to_string_lossy().contains("-linux-gnu"))
                && dir.join("libc.so.6").is_file()
                && dir.join(loader).exists()
        })
        .unwrap_or_else(|| {
            panic!(
                "no <triplet>-linux-gnu folder with libc.so.6 and {} in {}: {PROVISION}",
                loader.to_string_lossy(),
                lib.display()
            )
        });
    Glibc {
        interpreter,
        triplet: triplet.file_name().unwrap().to_string_lossy().into_owned(),
    }
}

/// The files of a runnable `tini`: the program, glibc's loader and libc, the
/// loader's link where tini's interpreter names it, as Debian lays them out.
fn tini_rootfs(context: &Path, with_libc: bool) {
    let rootfs = context.join("rootfs");
    let tini = layout().tools().join("usr/bin/tini");
    let Glibc {
        interpreter,
        triplet,
    } = glibc();
    let libc6 = standin_root().join("lib").join(&triplet);
    let loader = Path::new(&interpreter)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::create_dir_all(rootfs.join("usr/bin")).unwrap();
    std::fs::copy(&tini, rootfs.join("usr/bin/tini")).unwrap();
    let lib = rootfs.join("lib").join(&triplet);
    std::fs::create_dir_all(&lib).unwrap();
    let mut files = vec![loader.as_str()];
    if with_libc {
        files.push("libc.so.6");
    }
    for file in files {
        std::fs::copy(libc6.join(file), lib.join(file)).unwrap();
    }
    let in_triplet = format!("/lib/{triplet}/{loader}");
    if interpreter != in_triplet {
        let link = rootfs.join(interpreter.trim_start_matches('/'));
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&in_triplet, link).unwrap();
    }
}

/// A FROM-scratch image of the files under its `rootfs/`, started as `entrypoint`.
fn scratch_image(checkout: &Path, name: &str, entrypoint: &str) {
    add_image(
        checkout,
        name,
        &format!("ARG SOURCE_DATE_EPOCH\nFROM scratch\nCOPY rootfs/ /\nENTRYPOINT {entrypoint}\n"),
    );
}

fn reason<'a>(reports: &'a [xtask::report::StepReport], image: &str) -> &'a str {
    let report = reports
        .iter()
        .find(|r| r.image == image)
        .unwrap_or_else(|| panic!("no report for {image}: {reports:#?}"));
    match &report.outcome {
        xtask::report::Outcome::Failed(reason) => reason,
        other => panic!("{image}: {other:?}"),
    }
}

#[test]
fn build_proves_each_image_can_start_and_refuses_those_that_cannot() {
    let checkout = demo_checkout();
    let root = checkout.path();
    let images = [
        (
            "tini",
            r#"["/usr/bin/tini", "--", "/usr/bin/tini", "--version"]"#,
        ),
        ("tini-without-libc", r#"["/usr/bin/tini", "--"]"#),
        ("no-such-entrypoint", r#"["/usr/bin/nosuch"]"#),
        ("dangling", r#"["/usr/bin/start"]"#),
        ("escape", r#"["/usr/bin/escape"]"#),
    ];
    for (name, entrypoint) in images {
        tini_rootfs(&root.join(name), name != "tini-without-libc");
        scratch_image(root, name, entrypoint);
    }
    let bin = |image: &str| root.join(image).join("rootfs/usr/bin");
    // A chain of two links whose end is missing.
    std::fs::create_dir_all(root.join("dangling/rootfs/usr/lib")).unwrap();
    std::fs::write(root.join("dangling/rootfs/usr/lib/.keep"), "").unwrap();
    std::os::unix::fs::symlink("run", bin("dangling").join("start")).unwrap();
    std::os::unix::fs::symlink("../lib/start.sh", bin("dangling").join("run")).unwrap();
    // Climbs past the root: in the image that is `/usr/bin/true`, which is
    // not there (this machine's /usr/bin/true is never looked at).
    assert!(Path::new("/usr/bin/true").exists());
    std::os::unix::fs::symlink(
        "../../../../../../../usr/bin/true",
        bin("escape").join("escape"),
    )
    .unwrap();

    let json = root.join("build.json");
    let names: Vec<&str> = images.iter().map(|(name, _)| *name).collect();
    let mut args = vec!["build", "--json", json.to_str().unwrap()];
    args.extend(&names);
    let output = xtask_in(root, &args);
    let stderr = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let reports = reports(&json);

    // The complete image passes, and its record says what was proven.
    let passed = reports.iter().find(|r| r.image == "tini").unwrap();
    assert!(!passed.failed(), "{passed:#?}\n{stderr}");
    assert_eq!(
        passed.detail.as_deref(),
        Some(
            // libc.so.6 is a program too (it prints its version), and needs the loader.
            "runtime: starts /usr/bin/tini; 3 ELF files (2 with an interpreter); 2 libraries loaded"
        )
    );
    let runtime = record(root, "tini")
        .runtime
        .expect("the record carries the check");
    assert_eq!(runtime.program.as_deref(), Some("/usr/bin/tini"));
    assert_eq!(runtime.argv[..2], ["/usr/bin/tini", "--"]);

    // Without libc: exactly that library, and the file that needs it.
    let without = reason(&reports, "tini-without-libc");
    let triplet = glibc().triplet;
    assert!(
        without.contains(&format!("/usr/bin/tini: needs libc.so.6: not found in /lib/{triplet}, /usr/lib/{triplet}, /lib64, /usr/lib64, /lib, /usr/lib (glibc rules)")),
        "{without}"
    );
    assert_eq!(without.matches("needs ").count(), 1, "{without}");
    assert!(!root.join("out/tini-without-libc/build.json").exists());
    assert!(!root.join("out/tini-without-libc/image.tar").exists());
    let rejected = root.join("out/tini-without-libc/image.rejected.tar");
    assert!(
        rejected.is_file(),
        "the rejected archive is kept to look at"
    );

    assert!(
        reason(&reports, "no-such-entrypoint")
            .contains("/usr/bin/nosuch: the entrypoint: /usr/bin/nosuch does not exist"),
        "{stderr}"
    );
    assert!(
        reason(&reports, "dangling").contains(
            "/usr/bin/start: the entrypoint: /usr/lib/start.sh does not exist (symlinks followed: /usr/bin/start → run → ../lib/start.sh)"
        ),
        "{stderr}"
    );
    assert!(
        reason(&reports, "escape").contains("/usr/bin/true does not exist"),
        "{stderr}"
    );

    // The standalone check agrees, on built images and on any archive.
    let checked = root.join("check.json");
    let output = xtask_in(
        root,
        &["check-runtime", "tini", "--json", checked.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", text(&output));
    let results = read_document(&checked, "check-runtime");
    assert_eq!(results[0]["image"], "tini");
    assert_eq!(results[0]["passed"], true);
    assert_eq!(results[0]["problems"], serde_json::json!([]));
    eprintln!(
        "check-runtime on `tini` (tini, glibc's loader and libc: {:.1} MiB): {:.3}s",
        std::fs::metadata(root.join("out/tini/image.tar"))
            .unwrap()
            .len() as f64
            / 1048576.0,
        results[0]["seconds"].as_f64().unwrap()
    );
    let output = xtask_in(
        root,
        &["check-runtime", "--archive", rejected.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("needs libc.so.6"),
        "{}",
        text(&output)
    );
    let output = xtask_in(root, &["check-runtime", "no-such-entrypoint"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("no build record"),
        "{}",
        text(&output)
    );
}

/// The demo checkout's own images pass as they are: a shell from busybox
/// through `/bin`, an image with no entrypoint, a static program.
#[test]
fn the_stand_in_images_start() {
    let checkout = demo_checkout();
    let root = checkout.path();
    let output = xtask_in(root, &["build"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = xtask_in(root, &["check-runtime", "--all"]);
    let stderr = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("[base] check-runtime: passed — starts /bin/sh"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[base-static] check-runtime: passed — no entrypoint"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: no entrypoint or command: nothing to start"),
        "{stderr}"
    );
    assert!(record(root, "hello").runtime.is_some());
}
