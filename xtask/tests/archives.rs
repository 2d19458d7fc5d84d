//! Differential tests of the one archive reader (`oci::tar`): crafted and
//! random layers read by our reader and by Python's `tarfile` (the stand-in
//! for Go's `archive/tar`, which engines unpack layers with), asserting that
//! we either refuse a layer or see exactly what the reference sees: the same
//! names, kinds, modes, owners, times, link targets and contents.
//!
//! No test services: only `python3` (on every machine this project runs on).

mod common;

use std::io::Read;
use std::path::PathBuf;

use serde::Deserialize;
use xtask::oci::tar::{Budget, Limits, TarReader};

// ---------------------------------------------------------------- crafting

#[derive(Clone, Copy, PartialEq)]
enum Magic {
    Ustar,
    Gnu,
    V7,
}

/// One header block; fields as given, then the checksum.
#[derive(Clone)]
struct Head {
    name: Vec<u8>,
    typeflag: u8,
    size: u64,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Vec<u8>,
    prefix: Vec<u8>,
    magic: Magic,
}

impl Head {
    fn new(name: &str, typeflag: u8, size: u64) -> Head {
        Head {
            name: name.as_bytes().to_vec(),
            typeflag,
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            link: Vec::new(),
            prefix: Vec::new(),
            magic: Magic::Ustar,
        }
    }

    fn link(mut self, to: &str) -> Head {
        self.link = to.as_bytes().to_vec();
        self
    }

    fn magic(mut self, magic: Magic) -> Head {
        self.magic = magic;
        self
    }

    fn block(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put(&mut b, 0, &self.name);
        octal(&mut b[100..108], u64::from(self.mode));
        octal(&mut b[108..116], self.uid);
        octal(&mut b[116..124], self.gid);
        octal(&mut b[124..136], self.size);
        octal(&mut b[136..148], self.mtime);
        b[156] = self.typeflag;
        put(&mut b, 157, &self.link);
        match self.magic {
            Magic::Ustar => put(&mut b, 257, b"ustar\x0000"),
            Magic::Gnu => put(&mut b, 257, b"ustar  \x00"),
            Magic::V7 => {}
        }
        put(&mut b, 345, &self.prefix);
        checksum(&mut b);
        b
    }
}

fn put(block: &mut [u8], at: usize, bytes: &[u8]) {
    block[at..at + bytes.len()].copy_from_slice(bytes);
}

/// `%0*o` and a NUL, as Go writes numbers.
fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}", width = field.len() - 1);
    assert!(text.len() < field.len(), "{value} does not fit");
    field[..text.len()].copy_from_slice(text.as_bytes());
    field[text.len()] = 0;
}

fn checksum(block: &mut [u8; 512]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(data.len().div_ceil(512) * 512, 0);
    out
}

/// A header and its content.
fn entry(head: &Head, data: &[u8]) -> Vec<u8> {
    let mut out = head.block().to_vec();
    out.extend(padded(data));
    out
}

fn record(key: &str, value: &str) -> String {
    // The length counts itself: grow it until it does.
    let body = format!(" {key}={value}\n");
    let mut length = body.len() + 1;
    while format!("{length}").len() + body.len() != length {
        length = format!("{length}").len() + body.len();
    }
    format!("{length}{body}")
}

/// A PAX header ('x') carrying `records`, before the next entry.
fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let data: String = records.iter().map(|(k, v)| record(k, v)).collect();
    entry(
        &Head::new("PaxHeaders/x", b'x', data.len() as u64),
        data.as_bytes(),
    )
}

/// A GNU long name ('L') or long link ('K') header.
fn long(typeflag: u8, name: &str) -> Vec<u8> {
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    entry(
        &Head::new("././@LongLink", typeflag, data.len() as u64).magic(Magic::Gnu),
        &data,
    )
}

fn end() -> Vec<u8> {
    vec![0; 1024]
}

fn layer(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = parts.concat();
    out.extend(end());
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

// ---------------------------------------------------------------- reading

/// What a reader saw of one entry (names without trailing `/`, which
/// tarfile drops from folders).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Seen {
    name: String,
    kind: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    link: Option<String>,
    sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    entries: Option<Vec<Seen>>,
    error: Option<String>,
}

fn ours(bytes: &[u8]) -> Result<Vec<Seen>, String> {
    let budget = Budget::new(Limits::default());
    let source: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut reader = TarReader::new(source, &budget, "layer");
    let mut seen = Vec::new();
    loop {
        let header = match reader.next_entry() {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(seen),
            Err(error) => return Err(format!("{error:#}")),
        };
        let sha256 = if header.kind == xtask::oci::tar::Kind::File {
            let mut content = Vec::new();
            if let Err(error) = reader.data().read_to_end(&mut content) {
                return Err(error.to_string());
            }
            Some(xtask::hash::hex_sha256(&content))
        } else {
            None
        };
        seen.push(Seen {
            name: header.name.trim_end_matches('/').to_string(),
            kind: header.kind.name().to_string(),
            mode: header.mode,
            uid: header.uid,
            gid: header.gid,
            mtime: header.mtime,
            size: header.size,
            link: header.link,
            sha256,
        });
    }
}

/// Python's reading of every layer, in one process.
fn reference(layers: &[Vec<u8>]) -> Vec<Reference> {
    let dir = tempfile::tempdir().unwrap();
    let mut paths: Vec<PathBuf> = Vec::new();
    for (i, bytes) in layers.iter().enumerate() {
        let path = dir.path().join(format!("{i}.tar"));
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    let script = common::repo_root().join("xtask/tests/testdata/tar_reference.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .args(&paths)
        .output()
        .expect("python3 runs (the reference reader): install it with `apt-get install python3`");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let answers: Vec<Reference> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(answers.len(), layers.len());
    answers
}

fn normalised(mut seen: Vec<Seen>) -> Vec<Seen> {
    for entry in &mut seen {
        entry.name = entry.name.trim_end_matches('/').to_string();
    }
    seen
}

/// The differential rule: we refuse, or we see what the reference sees.
fn agree(label: &str, bytes: &[u8], theirs: &Reference) -> Result<Vec<Seen>, String> {
    match ours(bytes) {
        Err(refusal) => Err(refusal),
        Ok(seen) => {
            let Some(reference) = &theirs.entries else {
                panic!(
                    "{label}: we read {} entries where the reference refuses ({:?}): {seen:#?}",
                    seen.len(),
                    theirs.error
                );
            };
            assert_eq!(
                normalised(seen.clone()),
                normalised(reference.clone()),
                "{label}: we and the reference read different entries"
            );
            Ok(seen)
        }
    }
}

// ---------------------------------------------------------------- corpus

/// What a case must come to: read as the reference reads it, or refused for
/// a reason that names the problem.
enum Expect {
    Read,
    Refused(&'static str),
}

fn corpus() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let app = b"\x7fELF benign app";
    let payload = b"payload that runs";
    let mut cases: Vec<(&'static str, Vec<u8>, Expect)> = Vec::new();

    // (a) one PAX header with `size` twice: the tar crate took the first.
    let mut dup = Vec::new();
    let data = format!("{}{}", record("size", "15"), record("size", "17"));
    dup.extend(entry(
        &Head::new("PaxHeaders/app", b'x', data.len() as u64),
        data.as_bytes(),
    ));
    dup.extend(entry(&Head::new("bin/app", b'0', 17), payload));
    cases.push((
        "duplicate PAX size",
        layer(&[dup]),
        Refused("appears twice"),
    ));

    // (b) `opt/evil/payload`, then `opt/` with typeflag NUL.
    cases.push((
        "typeflag NUL on a folder name",
        layer(&[
            entry(&Head::new("opt/evil/payload", b'0', 17), payload),
            entry(&Head::new("opt/", 0, 0), b""),
        ]),
        Refused("typeflag NUL"),
    ));

    // (c) a PAX GNU sparse 1.0 entry naming bin/app.
    cases.push((
        "GNU sparse 1.0 through PAX",
        layer(&[
            entry(&Head::new("bin/app", b'0', 15), app),
            pax(&[
                ("GNU.sparse.major", "1"),
                ("GNU.sparse.minor", "0"),
                ("GNU.sparse.name", "bin/app"),
                ("GNU.sparse.realsize", "17"),
            ]),
            entry(&Head::new("GNUSparseFile.0/app", b'0', 17), payload),
        ]),
        Refused("GNU"),
    ));
    cases.push((
        "GNU sparse type S",
        layer(&[entry(
            &Head::new("bin/app", b'S', 17).magic(Magic::Gnu),
            payload,
        )]),
        Refused("sparse"),
    ));

    // (d) a GNU header with `bin` in the atime/prefix area.
    let mut gnu = Head::new("app", b'0', 17).magic(Magic::Gnu);
    gnu.prefix = b"bin".to_vec();
    cases.push((
        "GNU header with a prefix",
        layer(&[entry(&gnu, payload)]),
        Refused("atime/ctime/prefix"),
    ));
    // The same prefix in a USTAR header is a prefix for everyone.
    let mut ustar = Head::new("app", b'0', 17);
    ustar.prefix = b"bin".to_vec();
    cases.push(("USTAR prefix", layer(&[entry(&ustar, payload)]), Read));

    // An ELF whose ustar size says 8 GiB while PAX says 15 bytes.
    cases.push((
        "ustar size unlike the PAX size",
        layer(&[
            pax(&[("size", "15")]),
            entry(&Head::new("bin/app", b'0', (8 << 30) - 1), app),
        ]),
        Refused("differs from its header"),
    ));
    cases.push((
        "PAX size equal to the header's",
        layer(&[
            pax(&[("size", "15")]),
            entry(&Head::new("bin/app", b'0', 15), app),
        ]),
        Read,
    ));

    // The classic ones: read alike (the filesystem model refuses them later).
    cases.push((
        "climbing name",
        layer(&[entry(&Head::new("../../etc/passwd", b'0', 17), payload)]),
        Read,
    ));
    cases.push((
        "absolute name",
        layer(&[entry(&Head::new("/etc/passwd", b'0', 17), payload)]),
        Read,
    ));
    cases.push((
        "write through a symlink",
        layer(&[
            entry(&Head::new("etc", b'2', 0).link("/etc"), b""),
            entry(&Head::new("etc/passwd", b'0', 17), payload),
        ]),
        Read,
    ));
    cases.push((
        "hard link out",
        layer(&[entry(
            &Head::new("shadow", b'1', 0).link("../../etc/shadow"),
            b"",
        )]),
        Read,
    ));
    cases.push((
        "whiteouts",
        layer(&[
            entry(&Head::new("etc/.wh.passwd", b'0', 0), b""),
            entry(&Head::new("var/.wh..wh..opq", b'0', 0), b""),
        ]),
        Read,
    ));
    let mut null = Head::new("dev/null", b'3', 0);
    null.mode = 0o666;
    cases.push((
        "devices and fifos",
        layer(&[
            entry(&null, b""),
            entry(&Head::new("dev/sda", b'4', 0), b""),
            entry(&Head::new("run/fifo", b'6', 0), b""),
        ]),
        Read,
    ));
    let mut setuid = Head::new("bin/su", b'0', 15);
    setuid.mode = 0o4755;
    cases.push(("set-id bits", layer(&[entry(&setuid, app)]), Read));
    cases.push((
        "dot-slash names and folders",
        layer(&[
            entry(&Head::new("./", b'5', 0), b""),
            entry(&Head::new("./usr/", b'5', 0), b""),
            entry(&Head::new("./usr/bin/app", b'0', 15), app),
        ]),
        Read,
    ));

    // Long names, each way.
    let deep = format!("{}/app", "d".repeat(120));
    cases.push((
        "GNU long name",
        layer(&[
            long(b'L', &deep),
            entry(&Head::new("truncated", b'0', 15).magic(Magic::Gnu), app),
        ]),
        Read,
    ));
    cases.push((
        "GNU long link",
        layer(&[
            long(b'K', &deep),
            entry(
                &Head::new("lnk", b'2', 0).magic(Magic::Gnu).link("short"),
                b"",
            ),
        ]),
        Read,
    ));
    cases.push((
        "PAX path and linkpath",
        layer(&[
            pax(&[("path", &deep), ("linkpath", "/target/é")]),
            entry(&Head::new("truncated", b'2', 0).link("x"), b""),
        ]),
        Read,
    ));
    cases.push((
        "PAX path and a GNU long name",
        layer(&[
            pax(&[("path", "bin/benign")]),
            long(b'L', "bin/evil"),
            entry(&Head::new("x", b'0', 15).magic(Magic::Gnu), app),
        ]),
        Refused("both a PAX path and a GNU long name"),
    ));
    cases.push((
        "two PAX headers",
        layer(&[
            pax(&[("path", "bin/benign")]),
            pax(&[("path", "bin/evil")]),
            entry(&Head::new("x", b'0', 15), app),
        ]),
        Refused("two PAX headers"),
    ));
    cases.push((
        "two GNU long names",
        layer(&[
            long(b'L', "bin/benign"),
            long(b'L', "bin/evil"),
            entry(&Head::new("x", b'0', 15).magic(Magic::Gnu), app),
        ]),
        Refused("two GNU long names"),
    ));
    cases.push((
        "PAX global header",
        layer(&[
            entry(&Head::new("g", b'g', 0), b""),
            entry(&Head::new("bin/app", b'0', 15), app),
        ]),
        Refused("global"),
    ));
    cases.push((
        "PAX hdrcharset",
        layer(&[
            pax(&[("hdrcharset", "BINARY")]),
            entry(&Head::new("bin/app", b'0', 15), app),
        ]),
        Refused("hdrcharset"),
    ));
    cases.push((
        "empty PAX value",
        layer(&[
            pax(&[("path", "")]),
            entry(&Head::new("bin/app", b'0', 15), app),
        ]),
        Refused("empty"),
    ));
    let mut fine = Head::new("bin/app", b'0', 15);
    fine.uid = 1000;
    cases.push((
        "PAX times, uid and gid",
        layer(&[
            pax(&[
                ("mtime", "1700000123.456789"),
                ("atime", "1700000000.5"),
                ("uid", "4294967294"),
                ("gid", "70000"),
                ("SCHILY.xattr.security.capability", "x"),
            ]),
            entry(&fine, app),
        ]),
        Read,
    ));
    cases.push((
        "PAX uid with a sign",
        layer(&[
            pax(&[("uid", "+5")]),
            entry(&Head::new("bin/app", b'0', 15), app),
        ]),
        Refused("not a whole number"),
    ));
    cases.push((
        "PAX records at the end, no entry",
        [pax(&[("path", "bin/app")]), end()].concat(),
        Refused("before their entry"),
    ));
    cases.push((
        "a symlink with content",
        layer(&[
            entry(
                &Head::new("bin/sh", b'2', 512).link("busybox"),
                &[b'A'; 512],
            ),
            entry(&Head::new("bin/app", b'0', 15), app),
        ]),
        Refused("bytes of content"),
    ));
    cases.push((
        "contiguous file type",
        layer(&[entry(&Head::new("bin/app", b'7', 15), app)]),
        Refused("type `7`"),
    ));
    cases.push((
        "V7 header",
        layer(&[entry(&Head::new("bin/app", b'0', 15).magic(Magic::V7), app)]),
        Refused("V7"),
    ));
    let mut star = entry(&Head::new("app", b'0', 15), app);
    star[508..512].copy_from_slice(b"tar\0");
    let mut block: [u8; 512] = star[..512].try_into().unwrap();
    checksum(&mut block);
    star[..512].copy_from_slice(&block);
    cases.push(("STAR header", layer(&[star]), Refused("STAR")));
    cases.push((
        "entries after a zero block",
        layer(&[
            entry(&Head::new("bin/app", b'0', 15), app),
            vec![0; 512],
            entry(&Head::new("bin/evil", b'0', 17), payload),
        ]),
        Refused("zero block"),
    ));
    let mut truncated = entry(&Head::new("bin/app", b'0', 4096), &[1; 4096]);
    truncated.truncate(1024);
    cases.push(("truncated content", truncated, Refused("truncated")));
    let mut bad_sum = entry(&Head::new("bin/app", b'0', 15), app);
    bad_sum[0] ^= 1;
    cases.push(("bad checksum", layer(&[bad_sum]), Refused("checksum")));
    let mut embedded = Head::new("bin/app", b'0', 15).block();
    embedded[100..108].copy_from_slice(b"75\x00 5\0\0\0");
    checksum(&mut embedded);
    cases.push((
        "a number with a NUL inside",
        layer(&[[embedded.to_vec(), padded(app)].concat()]),
        Refused("mode field"),
    ));
    let mut base256 = Head::new("bin/app", b'0', 15).block();
    base256[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15]);
    checksum(&mut base256);
    cases.push((
        "base-256 size",
        layer(&[[base256.to_vec(), padded(app)].concat()]),
        Read,
    ));
    let mut latin1 = Head::new("bin/app", b'0', 15);
    latin1.name = b"bin/caf\xe9".to_vec();
    cases.push((
        "a name that is not UTF-8",
        layer(&[entry(&latin1, app)]),
        Refused("not UTF-8"),
    ));
    // Two gzip members: Go (and Python) read on into the second.
    let first = layer(&[entry(&Head::new("bin/app", b'0', 15), app)]);
    let tail = first.len() - 1024;
    let second = layer(&[entry(&Head::new("bin/evil", b'0', 17), payload)]);
    cases.push((
        "two gzip members",
        [gzip(&first[..tail]), gzip(&second)].concat(),
        Read,
    ));
    cases
}

#[test]
fn crafted_layers_are_refused_or_read_as_the_reference_reads_them() {
    let cases = corpus();
    let bytes: Vec<Vec<u8>> = cases.iter().map(|(_, b, _)| b.clone()).collect();
    let answers = reference(&bytes);
    for ((label, bytes, expect), theirs) in cases.iter().zip(&answers) {
        match (agree(label, bytes, theirs), expect) {
            (Ok(_), Expect::Read) => {}
            (Err(refusal), Expect::Refused(why)) => {
                assert!(
                    refusal.contains(why),
                    "{label}: refused for another reason: {refusal}"
                );
                assert!(
                    refusal.contains("layer: "),
                    "{label}: the refusal names the layer: {refusal}"
                );
            }
            (Ok(seen), Expect::Refused(why)) => {
                panic!("{label}: read ({seen:?}) where it should be refused ({why})")
            }
            (Err(refusal), Expect::Read) => panic!("{label}: refused: {refusal}"),
        }
    }
    // Both gzip members are read, as Go reads them.
    let two = ours(&cases.iter().find(|c| c.0 == "two gzip members").unwrap().1).unwrap();
    let names: Vec<&str> = two.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bin/app", "bin/evil"]);
}

// ---------------------------------------------------------------- random

/// xorshift64*: the same layers on every run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const PARTS: &[&str] = &[
    "usr",
    "bin",
    "lib",
    "etc",
    "a",
    "long-component-name-for-depth",
    "é",
    "日本",
    "x.so.1",
    "with space",
    ".hidden",
    "ssl",
];

fn random_name(rng: &mut Rng) -> String {
    let deep = rng.below(5) == 0;
    let depth = 1 + rng.below(if deep { 14 } else { 4 });
    (0..depth)
        .map(|_| *rng.pick(PARTS))
        .collect::<Vec<_>>()
        .join("/")
}

/// A valid layer of random entries, each written one of the ways real
/// writers write it; also returns where each header block starts.
fn random_layer(rng: &mut Rng) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut heads = Vec::new();
    let mut files: Vec<String> = Vec::new();
    for _ in 0..1 + rng.below(12) {
        let name = random_name(rng);
        let kind = *rng.pick(&[b'0', b'0', b'0', b'5', b'2', b'1', b'3', b'6']);
        let kind = if kind == b'1' && files.is_empty() {
            b'0'
        } else {
            kind
        };
        let content: Vec<u8> = if kind == b'0' {
            (0..rng.below(1500)).map(|_| rng.next() as u8).collect()
        } else {
            Vec::new()
        };
        let mut head = Head::new("", kind, content.len() as u64);
        head.mode = *rng.pick(&[0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o600, 0o444]);
        head.uid = rng.below(70_000);
        head.gid = rng.below(70_000);
        head.mtime = 1_500_000_000 + rng.below(300_000_000);
        let link = match kind {
            b'1' => rng.pick(&files).clone(),
            b'2' => random_name(rng),
            _ => String::new(),
        };
        let shown = if kind == b'5' {
            format!("{name}/")
        } else {
            name.clone()
        };
        let mut records: Vec<(String, String)> = Vec::new();
        let gnu = rng.below(3) == 0;
        if gnu {
            head.magic = Magic::Gnu;
        }
        // The name: in the header, split into prefix and name, PAX or GNU.
        if shown.len() <= 100 && rng.below(4) != 0 {
            head.name = shown.clone().into_bytes();
        } else if gnu {
            heads.push(out.len());
            out.extend(long(b'L', &shown));
            head.name = shown.as_bytes()[..shown.len().min(100)].to_vec();
        } else if let Some(split) = shown
            .match_indices('/')
            .map(|(at, _)| at)
            .find(|&at| at <= 155 && shown.len() - at - 1 <= 100 && at > 0)
            .filter(|_| rng.below(2) == 0)
        {
            head.prefix = shown.as_bytes()[..split].to_vec();
            head.name = shown.as_bytes()[split + 1..].to_vec();
        } else {
            records.push(("path".into(), shown.clone()));
            head.name = b"PaxHeaders.0/long".to_vec();
        }
        if link.len() > 100 || (!link.is_empty() && rng.below(6) == 0) {
            if gnu {
                heads.push(out.len());
                out.extend(long(b'K', &link));
            } else {
                records.push(("linkpath".into(), link.clone()));
            }
            head.link = b"see-long-link".to_vec();
        } else {
            head.link = link.into_bytes();
        }
        if !gnu && rng.below(4) == 0 {
            records.push((
                "mtime".into(),
                format!("{}.{}", head.mtime, rng.below(999_999)),
            ));
            records.push(("uid".into(), format!("{}", rng.below(1 << 31))));
        }
        if !records.is_empty() {
            let refs: Vec<(&str, &str)> = records
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            heads.push(out.len());
            out.extend(pax(&refs));
        }
        heads.push(out.len());
        out.extend(entry(&head, &content));
        if kind == b'0' {
            files.push(name);
        }
    }
    out.extend(end());
    (out, heads)
}

#[test]
fn random_valid_layers_are_read_exactly_as_the_reference_reads_them() {
    let mut rng = Rng(0x5eed_0f_7a4_2026);
    let mut layers = Vec::new();
    for i in 0..150 {
        let (bytes, _) = random_layer(&mut rng);
        // Some compressed, some in two gzip members.
        layers.push(match i % 5 {
            0 => gzip(&bytes),
            1 => {
                let at = (rng.below(bytes.len() as u64 / 512) * 512) as usize;
                [gzip(&bytes[..at]), gzip(&bytes[at..])].concat()
            }
            _ => bytes,
        });
    }
    let answers = reference(&layers);
    for (i, (bytes, theirs)) in layers.iter().zip(&answers).enumerate() {
        let label = format!("random layer {i}");
        if let Err(refusal) = agree(&label, bytes, theirs) {
            panic!("{label}: a valid layer is refused: {refusal}");
        }
    }
}

/// Valid layers with a few header bytes changed (checksum kept right): each
/// is refused or read exactly as the reference reads it.
#[test]
fn mutated_layers_are_refused_or_read_as_the_reference_reads_them() {
    let mut rng = Rng(0xbad_c0de_1234_5678);
    let mut layers = Vec::new();
    // Where a mutation hurts: name, mode, size, typeflag, link, magic, prefix/GNU area.
    let hot: &[std::ops::Range<usize>] = &[
        0..100,
        100..108,
        124..136,
        156..157,
        157..257,
        257..265,
        345..500,
        508..512,
    ];
    let values: &[u8] = b"\0 /0157xLKgSu.\x80\xff";
    while layers.len() < 400 {
        let (mut bytes, heads) = random_layer(&mut rng);
        for _ in 0..1 + rng.below(3) {
            let at = *rng.pick(&heads);
            let range = rng.pick(hot).clone();
            let offset = at + range.start + rng.below((range.end - range.start) as u64) as usize;
            bytes[offset] = if rng.below(3) == 0 {
                rng.next() as u8
            } else {
                *rng.pick(values)
            };
            let mut block: [u8; 512] = bytes[at..at + 512].try_into().unwrap();
            checksum(&mut block);
            bytes[at..at + 512].copy_from_slice(&block);
        }
        layers.push(bytes);
    }
    let answers = reference(&layers);
    let mut refused = 0;
    for (i, (bytes, theirs)) in layers.iter().zip(&answers).enumerate() {
        if agree(&format!("mutated layer {i}"), bytes, theirs).is_err() {
            refused += 1;
        }
    }
    // Both outcomes occur: the mutations are neither all harmless nor all fatal.
    eprintln!(
        "{refused} of {} mutated layers refused, the rest read alike",
        layers.len()
    );
    assert!(refused > 0 && refused < layers.len(), "{refused} refused");
}

#[test]
fn counts_and_sizes_are_capped_and_the_cap_is_named() {
    // Many empty entries: refused past the entry limit, naming its variable.
    let mut parts = Vec::new();
    for i in 0..50 {
        parts.push(entry(&Head::new(&format!("f{i}"), b'0', 0), b""));
    }
    let bytes = layer(&parts);
    let budget = Budget::new(Limits {
        entries: 40,
        ..Limits::default()
    });
    let mut reader = TarReader::new(&bytes[..], &budget, "layer sha256:x");
    let error = loop {
        match reader.next_entry() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("50 entries read under a limit of 40"),
            Err(error) => break format!("{error:#}"),
        }
    };
    assert!(
        error.contains("more than 40 entries") && error.contains("XTASK_ARCHIVE_MAX_ENTRIES"),
        "{error}"
    );
    assert!(error.contains("layer sha256:x: entry `f40`"), "{error}");

    // A file over the size limit is refused before a byte of it is read.
    let bytes = layer(&[entry(&Head::new("big", b'0', 4096), &[0; 4096])]);
    let budget = Budget::new(Limits {
        entry_bytes: 4095,
        ..Limits::default()
    });
    let error = TarReader::new(&bytes[..], &budget, "layer")
        .next_entry()
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("XTASK_ARCHIVE_MAX_FILE_BYTES"),
        "{error:#}"
    );
    // A refusal is a failed check (exit 1), not a broken tool.
    assert!(xtask::error::is_failure(&error));
}

// ---------------------------------------------------------------- OCI archives

/// An OCI archive of one uncompressed layer, `index` replacing the normal
/// index.json entry when given (its header and content, as crafted).
fn oci_archive(dir: &std::path::Path, layer: &[u8], index: Option<Vec<u8>>) -> PathBuf {
    let sha = |bytes: &[u8]| xtask::hash::hex_sha256(bytes);
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/app"]}}"#;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{}}}]}}"#,
        sha(config),
        config.len(),
        sha(layer),
        layer.len()
    );
    let index_json = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{}}}]}}"#,
        sha(manifest.as_bytes()),
        manifest.len()
    );
    let blob = |bytes: &[u8]| {
        let mut head = Head::new(
            &format!("blobs/sha256/{}", sha(bytes)),
            b'0',
            bytes.len() as u64,
        );
        head.mode = 0o644;
        entry(&head, bytes)
    };
    let index = index.unwrap_or_else(|| {
        entry(
            &Head::new("index.json", b'0', index_json.len() as u64),
            index_json.as_bytes(),
        )
    });
    let bytes = [
        blob(layer),
        blob(config),
        blob(manifest.as_bytes()),
        index,
        end(),
    ]
    .concat();
    let path = dir.join("image.tar");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn an_index_is_a_small_regular_file_or_the_archive_is_refused() {
    use xtask::oci::archive::OciArchive;
    let dir = tempfile::tempdir().unwrap();
    let app = layer(&[entry(&Head::new("bin/app", b'0', 3), b"app")]);
    assert!(OciArchive::open(&oci_archive(dir.path(), &app, None)).is_ok());

    let sparse = Head::new("index.json", b'S', (8 << 30) - 1).magic(Magic::Gnu);
    let huge = Head::new("index.json", b'0', 5 << 20);
    let linked = Head::new("index.json", b'2', 0).link("/etc/passwd");
    let twice = [
        entry(&Head::new("index.json", b'0', 2), b"{}"),
        entry(&Head::new("./index.json", b'0', 2), b"{}"),
    ]
    .concat();
    for (label, index, says) in [
        ("sparse index", sparse.block().to_vec(), "sparse"),
        (
            "huge index",
            [huge.block().to_vec(), vec![b' '; 5 << 20]].concat(),
            "an index is under",
        ),
        (
            "symlink index",
            linked.block().to_vec(),
            "a symlink, not a file",
        ),
        ("two indexes", twice, "a second index.json"),
    ] {
        let started = std::time::Instant::now();
        let path = oci_archive(dir.path(), &app, Some(index));
        let error = OciArchive::open(&path).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains(says), "{label}: {text}");
        assert!(
            text.contains("index.json"),
            "{label}: names the entry: {text}"
        );
        assert!(
            xtask::error::is_failure(&error),
            "{label}: a failed check, exit 1"
        );
        eprintln!("{label}: refused in {:?}", started.elapsed());
    }
}

/// The ELF of the attack: its ustar size says 8 GiB, its PAX record 15
/// bytes. check-runtime refuses the archive (exit 1) instead of passing the
/// file as "not read".
#[test]
fn check_runtime_refuses_a_size_the_readers_disagree_on() {
    let dir = tempfile::tempdir().unwrap();
    let app = b"\x7fELF not really";
    let layer = layer(&[
        pax(&[("size", "15")]),
        entry(&Head::new("bin/app", b'0', (8 << 30) - 1), app),
    ]);
    let archive = oci_archive(dir.path(), &layer, None);
    let output = common::xtask(&["check-runtime", "--archive", archive.to_str().unwrap()]);
    let text = common::text(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("entry `bin/app`") && text.contains("differs from its header"),
        "{text}"
    );
    assert!(text.contains("layer sha256:"), "names the layer: {text}");
}
