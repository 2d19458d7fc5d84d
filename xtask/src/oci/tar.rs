//! The one tar reader: every command that reads image bytes (OCI archives and
//! the layers inside them) reads them through [`TarReader`].
//!
//! Engines unpack layers with Go's `archive/tar`. A header that Go's reader
//! and another reader would read differently lets a layer show one
//! filesystem to a scanner and unpack another, so this reader accepts only
//! what Go's reader and Python's `tarfile` (the reference of our differential
//! tests) read alike, and refuses the rest, naming the entry and the reason:
//! duplicate PAX keys, a PAX size unlike the header's, typeflag `\0` on a name
//! ending in `/`, GNU sparse entries and `GNU.*` keys, a GNU header with
//! anything in its atime/ctime/prefix area, STAR and V7 headers, global PAX
//! headers, two long names for one entry, numbers either reader parses its own
//! way. Sizes are always the entry's as parsed, never a raw header field, and
//! every cost is bounded ([`Limits`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};

use anyhow::{Context, Result};

use crate::error::Failure;

pub const BLOCK: u64 = 512;
/// Go refuses PAX records and GNU long names past 1 MiB (`maxSpecialFileSize`).
const MAX_META: u64 = 1 << 20;
/// The longest path the kernel takes (PATH_MAX).
pub const PATH_MAX: usize = 4096;

/// What one image (all of its layers) may cost to read. The defaults are far
/// above any real base image; each is named in the refusal with the
/// environment variable that raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries (files, folders, links, …) over all layers.
    pub entries: u64,
    /// Bytes of one entry.
    pub entry_bytes: u64,
    /// Bytes read from all layers, decompressed: contents, headers, PAX
    /// records and long names alike.
    pub total_bytes: u64,
    /// Bytes of all names and link targets over all layers (what the
    /// filesystem model holds in memory).
    pub name_bytes: u64,
}

/// Parts of one path: far deeper than any real image (the filesystem model
/// walks every parent of every path).
pub const MAX_DEPTH: usize = 128;

pub const ENTRIES_VARIABLE: &str = "XTASK_ARCHIVE_MAX_ENTRIES";
pub const ENTRY_BYTES_VARIABLE: &str = "XTASK_ARCHIVE_MAX_FILE_BYTES";
pub const TOTAL_BYTES_VARIABLE: &str = "XTASK_ARCHIVE_MAX_BYTES";
pub const NAME_BYTES_VARIABLE: &str = "XTASK_ARCHIVE_MAX_NAME_BYTES";

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            entries: 200_000,
            entry_bytes: 4 << 30,
            total_bytes: 16 << 30,
            name_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// An OCI archive file itself: its few entries (index, layout file,
    /// folders, blobs) are counted; its blobs are passed over by seeking and
    /// bounded by what reads them later.
    pub fn oci_archive() -> Limits {
        Limits {
            entries: 10_000,
            entry_bytes: u64::MAX,
            total_bytes: u64::MAX,
            ..Limits::default()
        }
    }

    /// The defaults, each raised or lowered by its environment variable.
    pub fn from_env() -> Result<Limits> {
        let mut limits = Limits::default();
        for (variable, field) in [
            (ENTRIES_VARIABLE, &mut limits.entries),
            (ENTRY_BYTES_VARIABLE, &mut limits.entry_bytes),
            (TOTAL_BYTES_VARIABLE, &mut limits.total_bytes),
            (NAME_BYTES_VARIABLE, &mut limits.name_bytes),
        ] {
            if let Ok(value) = std::env::var(variable) {
                *field = value.trim().parse().with_context(|| {
                    format!("{variable}={value:?}: expected a whole number (a count or bytes)")
                })?;
            }
        }
        Ok(limits)
    }
}

/// The costs of one image, shared by the readers of its layers.
#[derive(Debug)]
pub struct Budget {
    pub limits: Limits,
    entries: Cell<u64>,
    bytes: Cell<u64>,
    names: Cell<u64>,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            entries: Cell::new(0),
            bytes: Cell::new(0),
            names: Cell::new(0),
        }
    }

    /// The limits of the environment ([`Limits::from_env`]).
    pub fn from_env() -> Result<Budget> {
        Ok(Budget::new(Limits::from_env()?))
    }

    fn charge(&self, size: u64) -> std::result::Result<(), String> {
        if size > self.limits.entry_bytes {
            return Err(format!(
                "{size} bytes: refused (more than {} bytes in one file; {ENTRY_BYTES_VARIABLE} raises the limit)",
                self.limits.entry_bytes
            ));
        }
        add(&self.entries, 1, self.limits.entries, || {
            format!(
                "more than {} entries: refused (a real base image has far fewer; {ENTRIES_VARIABLE} raises the limit)",
                self.limits.entries
            )
        })?;
        self.charge_bytes(size).inspect_err(|_| {
            // Refused entries are not counted.
            self.entries.set(self.entries.get() - 1);
        })
    }

    /// Bytes read that are no entry's content: headers, PAX records, long
    /// names, what follows the end of a stream.
    fn charge_bytes(&self, size: u64) -> std::result::Result<(), String> {
        add(&self.bytes, size, self.limits.total_bytes, || {
            format!(
                "more than {} bytes read in all: refused ({TOTAL_BYTES_VARIABLE} raises the limit)",
                self.limits.total_bytes
            )
        })
    }

    fn charge_names(&self, size: u64) -> std::result::Result<(), String> {
        add(&self.names, size, self.limits.name_bytes, || {
            format!(
                "more than {} bytes of names and link targets in all: refused ({NAME_BYTES_VARIABLE} raises the limit)",
                self.limits.name_bytes
            )
        })
    }
}

/// Add `size` to `counter` unless that passes `limit` (then the counter
/// keeps its value and `refusal` says why).
fn add(
    counter: &Cell<u64>,
    size: u64,
    limit: u64,
    refusal: impl FnOnce() -> String,
) -> std::result::Result<(), String> {
    let total = counter.get().saturating_add(size);
    if total > limit {
        return Err(refusal());
    }
    counter.set(total);
    Ok(())
}

/// A byte stream the reader can move forward in: a file seeks past what it
/// does not read, a decompressor reads and drops it.
pub trait Source: Read {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let skipped = io::copy(&mut self.take(n), &mut io::sink())?;
        if skipped < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Read what follows the end of the archive, up to `limit` bytes: a
    /// decompressor checks its trailer (containerd drains a layer and fails
    /// on a bad checksum there). Returns the bytes read.
    fn drain(&mut self, limit: u64) -> io::Result<u64> {
        io::copy(&mut self.take(limit), &mut io::sink())
    }
}

impl Source for Box<dyn Read + '_> {}
impl Source for &[u8] {}
impl Source for io::Cursor<Vec<u8>> {}

/// A file read from the start, skipped by seeking (an OCI archive's blobs
/// are not read to be passed over).
pub struct FileSource {
    reader: BufReader<File>,
    len: u64,
    position: u64,
}

impl FileSource {
    pub fn new(file: File) -> io::Result<FileSource> {
        let len = file.metadata()?.len();
        Ok(FileSource {
            reader: BufReader::new(file),
            len,
            position: 0,
        })
    }
}

impl Read for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Source for FileSource {
    /// A file has no trailer to check: nothing is read.
    fn drain(&mut self, _: u64) -> io::Result<u64> {
        Ok(0)
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        if n > self.len.saturating_sub(self.position) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let step = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.reader.seek_relative(step)?;
        self.position += n;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    File,
    Hardlink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Hardlink => "hardlink",
            Kind::Symlink => "symlink",
            Kind::CharDevice => "char device",
            Kind::BlockDevice => "block device",
            Kind::Directory => "directory",
            Kind::Fifo => "fifo",
        }
    }
}

/// One entry, as Go's reader reports it once PAX records and GNU long names
/// are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as written (not cleaned: `./a`, `a/` stay so).
    pub name: String,
    pub kind: Kind,
    /// Permission and set-id bits.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Content bytes: 0 for every kind but a file.
    pub size: u64,
    /// Whole seconds.
    pub mtime: u64,
    /// A symlink's target or a hard link's linked name.
    pub link: Option<String>,
    /// Where the content starts in the stream.
    pub data_offset: u64,
}

/// Reads entries one at a time; [`TarReader::data`] reads the current one's
/// content, and what is left of it is passed over by the next
/// [`TarReader::next_entry`].
pub struct TarReader<'b, R: Source> {
    source: R,
    budget: &'b Budget,
    /// Prefixed to every refusal: the archive, and the layer.
    what: String,
    position: u64,
    /// Content of the current entry not read yet, and its padding.
    remaining: u64,
    padding: u64,
    /// The current entry's name, for errors while reading its content.
    current: String,
    /// Where the header being read starts.
    header_at: u64,
    done: bool,
}

/// What the PAX records and GNU long names before an entry say of it.
#[derive(Default)]
struct Pending {
    pax: Option<BTreeMap<String, String>>,
    long_name: Option<String>,
    long_link: Option<String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pax.is_none() && self.long_name.is_none() && self.long_link.is_none()
    }
}

/// `ustar\0` then version `00`: USTAR or PAX.
const USTAR_MAGIC: &[u8] = b"ustar\x0000";
/// `ustar ` then version ` \0`: GNU.
const GNU_MAGIC: &[u8] = b"ustar  \x00";

impl<'b, R: Source> TarReader<'b, R> {
    pub fn new(source: R, budget: &'b Budget, what: impl Into<String>) -> Self {
        TarReader {
            source,
            budget,
            what: what.into(),
            position: 0,
            remaining: 0,
            padding: 0,
            current: String::new(),
            header_at: 0,
            done: false,
        }
    }

    fn refuse(&self, entry: &str, reason: impl std::fmt::Display) -> anyhow::Error {
        let at = if entry.is_empty() {
            format!("the header at byte {}", self.header_at)
        } else {
            format!("entry `{}`", clip(entry))
        };
        Failure(format!("{}: {at}: {reason}", self.what)).into()
    }

    fn io_error(&self, entry: &str, error: io::Error) -> anyhow::Error {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            self.refuse(entry, "the archive ends inside it (truncated)")
        } else {
            anyhow::Error::new(error).context(format!("{}: reading", self.what))
        }
    }

    /// Read a whole block; `Ok(false)` at a clean end of the stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK as usize]) -> Result<bool> {
        let mut filled = 0;
        while filled < block.len() {
            match self.source.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.io_error("", error)),
            }
        }
        if filled == 0 {
            return Ok(false);
        }
        if filled < block.len() {
            return Err(self.refuse("", "the archive ends inside a header (truncated)"));
        }
        self.position += BLOCK;
        self.budget
            .charge_bytes(BLOCK)
            .map_err(|reason| self.refuse("", reason))?;
        Ok(true)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let current = std::mem::take(&mut self.current);
        self.source
            .skip(n)
            .map_err(|error| self.io_error(&current, error))?;
        self.current = current;
        self.position += n;
        Ok(())
    }

    /// The content of a metadata entry (PAX records, a GNU long name).
    fn read_meta(&mut self, size: u64, what: &str) -> Result<Vec<u8>> {
        if size > MAX_META {
            return Err(self.refuse(
                "",
                format!("a {what} of {size} bytes: refused (Go's reader stops at {MAX_META})"),
            ));
        }
        self.budget
            .charge_bytes(size + padding(size))
            .map_err(|reason| self.refuse("", reason))?;
        let mut bytes = vec![0; size as usize];
        self.source
            .read_exact(&mut bytes)
            .map_err(|error| self.io_error("", error))?;
        self.position += size;
        // Python reads records and names on into the padding; Go stops at
        // the size. Only NULs there are read alike.
        let mut pad = vec![0; padding(size) as usize];
        self.source
            .read_exact(&mut pad)
            .map_err(|error| self.io_error("", error))?;
        self.position += pad.len() as u64;
        if pad.iter().any(|&b| b != 0) {
            return Err(self.refuse(
                "",
                format!("a {what} with data after its size: Python reads it, Go does not"),
            ));
        }
        Ok(bytes)
    }

    /// The end: what follows is drained (bounded by the budget) so that a
    /// compressed stream's trailer is checked, as engines check it.
    fn finish(&mut self) -> Result<()> {
        self.done = true;
        let left = self
            .budget
            .limits
            .total_bytes
            .saturating_sub(self.budget.bytes.get());
        let drained = self
            .source
            .drain(left.saturating_add(1))
            .map_err(|error| self.io_error("", error))?;
        self.budget
            .charge_bytes(drained)
            .map_err(|reason| self.refuse("", format!("after the end of the archive: {reason}")))?;
        Ok(())
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Header>> {
        if self.done {
            return Ok(None);
        }
        let left = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(left)?;
        self.current.clear();
        let mut pending = Pending::default();
        let mut block = [0u8; BLOCK as usize];
        loop {
            self.header_at = self.position;
            if !self.read_block(&mut block)? {
                if !pending.is_empty() {
                    return Err(self.refuse(
                        "",
                        "the archive ends after PAX records or a GNU long name, before their entry",
                    ));
                }
                self.finish()?;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                if !pending.is_empty() {
                    return Err(self.refuse(
                        "",
                        "the archive ends after PAX records or a GNU long name, before their entry",
                    ));
                }
                // Go needs the second zero block (or nothing); Python stops at the first.
                let mut second = [0u8; BLOCK as usize];
                if self.read_block(&mut second)? && second.iter().any(|&b| b != 0) {
                    return Err(self.refuse(
                        "",
                        "a zero block followed by more entries: Go's reader refuses them, Python's stops before them",
                    ));
                }
                self.finish()?;
                return Ok(None);
            }
            let raw = self.parse_block(&block)?;
            match raw.typeflag {
                b'x' => {
                    if pending.pax.is_some() {
                        return Err(self.refuse(
                            "",
                            "two PAX headers for one entry: Go applies the second, Python the first",
                        ));
                    }
                    let bytes = self.read_meta(raw.size, "PAX header")?;
                    let records = parse_pax(&bytes).map_err(|reason| self.refuse("", reason))?;
                    pending.pax = Some(records);
                }
                b'L' | b'K' => {
                    let bytes = self.read_meta(raw.size, "GNU long name")?;
                    let name = until_nul(&bytes);
                    let name = std::str::from_utf8(name)
                        .map_err(|_| self.refuse("", "a GNU long name that is not UTF-8"))?
                        .to_string();
                    let slot = if raw.typeflag == b'L' {
                        &mut pending.long_name
                    } else {
                        &mut pending.long_link
                    };
                    if slot.is_some() {
                        return Err(self.refuse(
                            &name,
                            "two GNU long names for one entry: Go applies the second, Python the first",
                        ));
                    }
                    *slot = Some(name);
                }
                _ => {
                    let header = self.entry(raw, pending)?;
                    let names = header.name.len() + header.link.as_ref().map_or(0, String::len);
                    self.budget
                        .charge(header.size)
                        .and_then(|()| self.budget.charge_names(names as u64))
                        .map_err(|reason| self.refuse(&header.name, reason))?;
                    if header.name.split('/').filter(|p| !p.is_empty()).count() > MAX_DEPTH {
                        return Err(self.refuse(
                            &header.name,
                            format!("more than {MAX_DEPTH} folders deep: refused"),
                        ));
                    }
                    self.remaining = header.size;
                    self.padding = padding(header.size);
                    self.current = header.name.clone();
                    return Ok(Some(header));
                }
            }
        }
    }

    /// The entry a header describes, its PAX records and long names applied.
    fn entry(&self, raw: RawHeader, pending: Pending) -> Result<Header> {
        let text = |bytes: &[u8], what: &str| {
            String::from_utf8(bytes.to_vec()).map_err(|_| {
                self.refuse(
                    &String::from_utf8_lossy(bytes),
                    format!("its {what} is not UTF-8 (names in SBOMs and reports are)"),
                )
            })
        };
        // Replaced by a PAX path or a long name, the header's own name is
        // read by nobody (Go truncates a long one anywhere, even mid-character).
        let mut name = String::from_utf8_lossy(&raw.name).into_owned();
        let mut link = String::new();
        let mut own_name = true;
        let mut own_link = true;
        let mut size = raw.size;
        let mut uid = raw.uid;
        let mut gid = raw.gid;
        let mut mtime = raw.mtime;
        let mut pax_path = false;
        let mut pax_link = false;
        if let Some(records) = &pending.pax {
            for (key, value) in records {
                let number = |value: &str| {
                    decimal(value).ok_or_else(|| {
                        self.refuse(&name, format!("PAX `{key}={value}` is not a whole number"))
                    })
                };
                match key.as_str() {
                    "path" => {
                        name = value.clone();
                        pax_path = true;
                        own_name = false;
                    }
                    "linkpath" => {
                        link = value.clone();
                        pax_link = true;
                        own_link = false;
                    }
                    "size" => {
                        let pax = number(value)?;
                        if pax != raw.size {
                            return Err(self.refuse(
                                &name,
                                format!(
                                    "its PAX size ({pax}) differs from its header's ({}): readers disagree on where the next entry starts",
                                    raw.size
                                ),
                            ));
                        }
                        size = pax;
                    }
                    "uid" => uid = number(value)?,
                    "gid" => gid = number(value)?,
                    "mtime" => {
                        mtime = pax_time(value).ok_or_else(|| {
                            self.refuse(&name, format!("PAX `mtime={value}` is not a time"))
                        })?
                    }
                    "atime" | "ctime" => {
                        pax_time(value).ok_or_else(|| {
                            self.refuse(&name, format!("PAX `{key}={value}` is not a time"))
                        })?;
                    }
                    _ => {}
                }
            }
        }
        if let Some(long) = pending.long_name {
            if pax_path {
                return Err(self.refuse(
                    &long,
                    "both a PAX path and a GNU long name: Go takes the long name, Python the PAX path",
                ));
            }
            name = long;
            own_name = false;
        }
        if let Some(long) = pending.long_link {
            if pax_link {
                return Err(self.refuse(
                    &name,
                    "both a PAX linkpath and a GNU long link: Go takes the long link, Python the PAX linkpath",
                ));
            }
            link = long;
            own_link = false;
        }
        if own_name {
            name = text(&raw.name, "name")?;
        }
        if own_link && matches!(raw.typeflag, b'1' | b'2') {
            link = text(&raw.link, "link target")?;
        }
        let kind = match raw.typeflag {
            b'0' => Kind::File,
            b'\0' if name.ends_with('/') || raw.name.ends_with(b"/") => return Err(self.refuse(
                &name,
                "typeflag NUL on a name ending in `/`: Go makes it a folder, other readers a file",
            )),
            b'\0' => Kind::File,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::CharDevice,
            b'4' => Kind::BlockDevice,
            b'5' => Kind::Directory,
            b'6' => Kind::Fifo,
            b'g' => {
                return Err(self.refuse(
                    &name,
                    "a PAX global header: Python applies it to every later entry, Go does not",
                ))
            }
            b'S' => {
                return Err(self.refuse(
                    &name,
                    "a GNU sparse file: refused (readers place its data differently)",
                ))
            }
            other => {
                return Err(self.refuse(
                    &name,
                    format!(
                    "type `{}`: not a file, folder, link, device or fifo (containerd refuses it)",
                    (other as char).escape_default()
                ),
                ))
            }
        };
        if name.is_empty() {
            return Err(self.refuse("", "an entry without a name"));
        }
        if name.len() > PATH_MAX || link.len() > PATH_MAX {
            return Err(self.refuse(&name, format!("a name longer than {PATH_MAX} bytes")));
        }
        if kind != Kind::File && size != 0 {
            return Err(self.refuse(
                &name,
                format!(
                    "a {} with {size} bytes of content: Go reads none, other readers skip them",
                    kind.name()
                ),
            ));
        }
        if kind != Kind::Directory && name.ends_with('/') {
            return Err(self.refuse(&name, format!("a {} named like a folder", kind.name())));
        }
        let link = match kind {
            Kind::Symlink | Kind::Hardlink => {
                if link.is_empty() {
                    return Err(self.refuse(&name, format!("a {} without a target", kind.name())));
                }
                Some(link)
            }
            _ => None,
        };
        Ok(Header {
            name,
            kind,
            mode: (raw.mode & 0o7777) as u32,
            uid,
            gid,
            size,
            mtime,
            link,
            data_offset: self.position,
        })
    }

    fn parse_block(&self, block: &[u8; BLOCK as usize]) -> Result<RawHeader> {
        let field = |range: std::ops::Range<usize>, what: &str| {
            numeric(&block[range]).ok_or_else(|| {
                self.refuse(
                    "",
                    format!("its {what} field is not a number both Go and Python read alike"),
                )
            })
        };
        // Go reads the checksum as octal only.
        if block[148] == 0x80 {
            return Err(self.refuse("", "a base-256 checksum: Go refuses it"));
        }
        let checksum = field(148..156, "checksum")?;
        let (unsigned, signed) = checksums(block);
        if checksum != unsigned && Some(checksum) != u64::try_from(signed).ok() {
            return Err(self.refuse("", "a bad header checksum: not a tar header"));
        }
        // Go parses the device numbers of every USTAR and GNU header.
        field(329..337, "devmajor")?;
        field(337..345, "devminor")?;
        let magic = &block[257..265];
        let gnu = if magic == USTAR_MAGIC {
            if &block[508..512] == b"tar\0" {
                return Err(self.refuse("", "a STAR header: Go reads a shorter prefix than Python"));
            }
            false
        } else if magic == GNU_MAGIC {
            true
        } else {
            return Err(self.refuse(
                "",
                "neither a USTAR, PAX nor GNU header (V7 and others are read differently)",
            ));
        };
        let mut name = until_nul(&block[0..100]).to_vec();
        let prefix = until_nul(&block[345..500]);
        // Only an entry's own header names it (a PAX or long-name header's
        // name is read by neither).
        if !matches!(block[156], b'x' | b'L' | b'K') {
            if gnu {
                if block[345..500].iter().any(|&b| b != 0) {
                    return Err(self.refuse(
                        &String::from_utf8_lossy(&name),
                        "a GNU header with data in its atime/ctime/prefix area: Go ignores it, Python reads it as a path prefix",
                    ));
                }
            } else if !prefix.is_empty() {
                let mut joined = prefix.to_vec();
                joined.push(b'/');
                joined.extend_from_slice(&name);
                name = joined;
            }
        }
        Ok(RawHeader {
            name,
            link: until_nul(&block[157..257]).to_vec(),
            typeflag: block[156],
            mode: field(100..108, "mode")?,
            uid: field(108..116, "uid")?,
            gid: field(116..124, "gid")?,
            size: field(124..136, "size")?,
            mtime: field(136..148, "mtime")?,
        })
    }

    /// The current entry's content (what is left of it).
    pub fn data(&mut self) -> Data<'_, 'b, R> {
        Data { reader: self }
    }

    /// The stream position (the bytes consumed so far).
    pub fn position(&self) -> u64 {
        self.position
    }
}

/// The content of the current entry: ends at its size; a stream that ends
/// sooner is an error (truncated), never a short file.
pub struct Data<'r, 'b, R: Source> {
    reader: &'r mut TarReader<'b, R>,
}

impl<R: Source> Read for Data<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let reader = &mut *self.reader;
        if reader.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(reader.remaining).unwrap_or(usize::MAX));
        let n = reader.source.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: entry `{}`: the archive ends inside it (truncated)",
                    reader.what,
                    clip(&reader.current)
                ),
            ));
        }
        reader.remaining -= n as u64;
        reader.position += n as u64;
        Ok(n)
    }
}

struct RawHeader {
    name: Vec<u8>,
    link: Vec<u8>,
    typeflag: u8,
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
}

/// An entry's name as engines place it under the root: `./` parts and
/// repeated or trailing slashes dropped; `None` for the root itself.
/// Absolute names and `..` are refused, with the reason.
pub fn clean(name: &str) -> std::result::Result<Option<String>, &'static str> {
    if name.starts_with('/') {
        return Err("is an absolute path: layers hold relative paths only");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("climbs out with `..`"),
            _ => parts.push(part),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

/// A long name, shortened for a message.
fn clip(name: &str) -> String {
    const SHOWN: usize = 200;
    if name.len() <= SHOWN {
        return name.escape_debug().to_string();
    }
    let mut end = SHOWN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", name[..end].escape_debug(), name.len())
}

/// The sum of the header's bytes with the checksum field as spaces, unsigned
/// and signed (old writers summed signed bytes; both readers take either).
fn checksums(block: &[u8; BLOCK as usize]) -> (u64, i64) {
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// A numeric header field as both Go and Python read it: octal digits after
/// optional spaces, then only NULs and spaces (Go trims both ends, Python cuts
/// at the first NUL and strips); all blank is 0; or base-256 marked by 0x80
/// (Go reads any first byte with the high bit so, Python only 0x80 and 0xff).
fn numeric(field: &[u8]) -> Option<u64> {
    if field.first() == Some(&0x80) {
        let mut value = 0u64;
        for &b in &field[1..] {
            if value >> 56 != 0 {
                return None;
            }
            value = value << 8 | u64::from(b);
        }
        return (value <= i64::MAX as u64).then_some(value);
    }
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let digits = field[start..]
        .iter()
        .position(|&b| !(b'0'..=b'7').contains(&b))
        .map_or(field.len(), |end| start + end);
    if !field[digits..].iter().all(|&b| b == 0 || b == b' ') {
        return None;
    }
    let digits = &field[start..digits];
    if digits.is_empty() {
        // Blank: Python takes it as 0, Go too, but only when there are no
        // leading spaces before a NUL … which both trim: 0 either way.
        return Some(0);
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 8)
        .ok()
        .filter(|&v| v <= i64::MAX as u64)
}

/// A PAX whole number: decimal digits only (Go's ParseInt takes a sign,
/// Python's int() takes spaces and underscores: neither is accepted).
fn decimal(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().filter(|&v| v <= i64::MAX as u64)
}

/// A PAX time: `seconds[.fraction]`, non-negative; whole seconds kept.
fn pax_time(value: &str) -> Option<u64> {
    let (seconds, fraction) = match value.split_once('.') {
        Some((seconds, fraction)) => (seconds, Some(fraction)),
        None => (value, None),
    };
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    // Python reads the time as a float and may round it up (x.9999999 → x+1);
    // Go truncates. Only times both read alike are kept.
    let whole = decimal(seconds).filter(|&s| s < 1 << 53)?;
    let float = value.parse::<f64>().ok()?;
    (float.trunc() as u64 == whole).then_some(whole)
}

/// PAX records (`<length> <key>=<value>\n`, the length counting the whole
/// record), read as strictly as Go reads them, and refused where Python
/// would read them otherwise.
fn parse_pax(bytes: &[u8]) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut records = BTreeMap::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a PAX record without a length")?;
        let length = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(decimal)
            .filter(|_| rest[0] != b'0')
            .ok_or("a PAX record whose length is not a plain number")?;
        let length = usize::try_from(length).map_err(|_| "a PAX record too long")?;
        if length < 5 || length > rest.len() || length <= space + 1 {
            return Err("a PAX record whose length does not fit".into());
        }
        let record = &rest[space + 1..length];
        rest = &rest[length..];
        let Some((&b'\n', record)) = record.split_last() else {
            return Err("a PAX record that does not end with a newline".into());
        };
        let equals = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("a PAX record without `=`")?;
        let key = std::str::from_utf8(&record[..equals])
            .map_err(|_| "a PAX key that is not UTF-8".to_string())?;
        let value = std::str::from_utf8(&record[equals + 1..])
            .map_err(|_| format!("PAX `{key}` has a value that is not UTF-8"))?;
        if key.is_empty() || key.contains('\0') || value.contains('\0') {
            return Err("a PAX record with an empty key or a NUL".into());
        }
        if value.is_empty() {
            return Err(format!(
                "PAX `{key}` is empty: Go keeps the header's value, Python clears it"
            ));
        }
        if key.starts_with("GNU.") {
            return Err(format!(
                "PAX `{key}`: GNU sparse and GNU-specific records are refused (readers apply them differently)"
            ));
        }
        if key == "hdrcharset" {
            return Err(
                "PAX `hdrcharset`: Python changes how it decodes names, Go does not".into(),
            );
        }
        if records.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!(
                "PAX `{key}` appears twice: Go takes the last, other readers the first"
            ));
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields_are_read_only_where_go_and_python_agree() {
        assert_eq!(numeric(b"0000644\0"), Some(0o644));
        assert_eq!(numeric(b"  644 \0\0"), Some(0o644));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(numeric(b"        "), Some(0));
        // Python cuts at the NUL and reads 12; Go fails on the embedded NUL.
        assert_eq!(numeric(b"12\x0034\0\0\0"), None);
        assert_eq!(numeric(b"12 34\0\0\0"), None);
        assert_eq!(numeric(b"0000089\0"), None);
        // Go reads a leading NUL as blank, Python as the end of the field.
        assert_eq!(numeric(b"\x000000644"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 7;
        assert_eq!(numeric(&big), Some(7));
        big[0] = 0x81;
        assert_eq!(numeric(&big), None, "only 0x80 marks base-256 for both");
    }

    #[test]
    fn pax_records_are_strict() {
        let ok = parse_pax(b"16 path=a/b/c/d\n11 uid=100\n").unwrap();
        assert_eq!(ok["path"], "a/b/c/d");
        assert_eq!(ok["uid"], "100");
        for (bytes, why) in [
            (&b"12 size=336\n12 size=999\n"[..], "twice"),
            (b"27 GNU.sparse.name=bin/app\n", "GNU"),
            (b"8 path=\n", "empty"),
            (b"012 size=33\n", "plain number"),
            (b"+12 size=33\n", "plain number"),
            (b"12 size=336X", "newline"),
            (b"99 size=336\n", "does not fit"),
            (b"12 size=336\n\0\0\0\0", "length"),
            (b"21 hdrcharset=BINARY\n", "hdrcharset"),
        ] {
            let error = parse_pax(bytes).unwrap_err();
            assert!(error.contains(why), "{bytes:?}: {error}");
        }
    }

    #[test]
    fn times_and_numbers_take_one_spelling() {
        assert_eq!(pax_time("1700000000.123456"), Some(1_700_000_000));
        assert_eq!(pax_time("1700000000"), Some(1_700_000_000));
        for bad in ["-1", "1e9", " 12", "12.", ".5", "inf", "1_000"] {
            assert_eq!(pax_time(bad), None, "{bad}");
        }
        assert_eq!(decimal("336"), Some(336));
        assert_eq!(decimal("+336"), None);
    }

    #[test]
    fn budgets_name_the_limit_and_its_variable() {
        let budget = Budget::new(Limits {
            entries: 2,
            entry_bytes: 10,
            total_bytes: 15,
            name_bytes: 100,
        });
        budget.charge(10).unwrap();
        let error = budget.charge(11).unwrap_err();
        assert!(error.contains(ENTRY_BYTES_VARIABLE), "{error}");
        let error = budget.charge(6).unwrap_err();
        assert!(error.contains(TOTAL_BYTES_VARIABLE), "{error}");
        budget.charge(5).unwrap();
        let error = budget.charge(0).unwrap_err();
        assert!(error.contains(ENTRIES_VARIABLE), "{error}");
    }
}
