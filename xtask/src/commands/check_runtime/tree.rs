//! Paths looked up in an image's final filesystem as the kernel would look
//! them up inside the container: symlinks followed (absolute ones from the
//! image's root), `..` stopping at that root, never anything of this machine.

use crate::oci::rootfs::{Entry, Kind, Rootfs};

/// Symlinks followed in one lookup before it counts as a loop (Linux: 40).
const MAX_LINKS: usize = 40;
/// The longest path the kernel takes (PATH_MAX).
pub const PATH_MAX: usize = 4096;

/// The end of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End<'r> {
    /// The path, symlinks resolved, and what is there (`None`: a folder no
    /// layer listed, implied by what is under it, or the root).
    Found(String, Option<&'r Entry>),
    /// Nothing at this (resolved) path.
    Missing(String),
    /// A path goes on below this one, which is no folder.
    NotAFolder(String),
    TooManyLinks,
    /// Longer than PATH_MAX.
    TooLong,
    /// The check's budget of steps ran out before the lookup ended.
    OverBudget,
}

/// A lookup: where it ended, and the symlinks it followed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup<'r> {
    pub end: End<'r>,
    /// `(link, target as written)`, in the order followed.
    pub links: Vec<(String, String)>,
}

impl Lookup<'_> {
    /// `/a → b → /c`: the path and each link target followed, clipped (the
    /// first and last hops, each target to [`SHOWN_TARGET`] bytes): a crafted
    /// chain must not turn one message into megabytes.
    pub fn chain(&self, from: &str) -> String {
        const FIRST: usize = 4;
        const LAST: usize = 2;
        let mut chain = clip(&absolute(from));
        let hops = self.links.len();
        for (index, (_, target)) in self.links.iter().enumerate() {
            if hops > FIRST + LAST && index == FIRST {
                chain.push_str(&format!(" → … {} more …", hops - FIRST - LAST));
            }
            if hops > FIRST + LAST && (FIRST..hops - LAST).contains(&index) {
                continue;
            }
            chain.push_str(" → ");
            chain.push_str(&clip(target));
        }
        chain
    }

    /// The regular file this lookup reached, as an absolute path.
    pub fn file(&self) -> Option<(String, &Entry)> {
        match &self.end {
            End::Found(path, Some(entry)) if matches!(entry.kind, Kind::File | Kind::Hardlink) => {
                Some((absolute(path), *entry))
            }
            _ => None,
        }
    }

    /// Why this lookup reached no regular file, for people.
    pub fn why_not(&self, from: &str) -> String {
        let via = if self.links.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.chain(from))
        };
        match &self.end {
            End::Found(path, Some(entry)) => format!(
                "{} is a {}, not a file{via}",
                absolute(path),
                kind_name(&entry.kind)
            ),
            End::Found(path, None) => format!("{} is a folder, not a file{via}", absolute(path)),
            End::Missing(path) if self.links.is_empty() => {
                format!("{} does not exist", absolute(path))
            }
            End::Missing(path) => format!(
                "{} does not exist (symlinks followed: {})",
                absolute(path),
                self.chain(from)
            ),
            End::NotAFolder(path) => format!("{} is not a folder{via}", absolute(path)),
            End::TooManyLinks => format!("more than {MAX_LINKS} symlinks followed: a loop{via}"),
            End::TooLong => {
                format!("the path is longer than {PATH_MAX} bytes: the kernel refuses it{via}")
            }
            End::OverBudget => "not judged: the check's budget of steps is spent".to_string(),
        }
    }
}

/// The most of one path or link target a message shows.
pub const SHOWN_TARGET: usize = 120;

/// `text`, cut to [`SHOWN_TARGET`] bytes with the length said.
pub fn clip(text: &str) -> String {
    if text.len() <= SHOWN_TARGET {
        return text.to_string();
    }
    let mut end = SHOWN_TARGET;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::File | Kind::Hardlink => "file",
        Kind::Directory => "folder",
        Kind::Symlink => "symlink",
        Kind::Special(name) => name,
    }
}

/// `a/b` → `/a/b`; the root is `/`.
pub fn absolute(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

/// The folder of an absolute or relative path: `/usr/bin/x` → `/usr/bin`.
pub fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((dir, _)) => dir.to_string(),
    }
}

/// Whether a folder no layer listed is implied by something below it.
fn implied_folder(rootfs: &Rootfs, path: &str) -> bool {
    let below = format!("{path}/");
    rootfs
        .entries
        .range(below.clone()..)
        .next()
        .is_some_and(|(p, _)| p.starts_with(&below))
}

/// Steps one lookup may take on its own: more than the kernel's walk of
/// PATH_MAX through MAX_LINKS links.
const STEPS_PER_LOOKUP: u64 = 400_000;

/// Look `path` up (absolute, or relative to the root) in `rootfs`, following
/// every symlink, the last one too. A path or link target longer than
/// PATH_MAX is refused as the kernel refuses it.
pub fn lookup<'r>(rootfs: &'r Rootfs, path: &str) -> Lookup<'r> {
    lookup_within(rootfs, path, &std::cell::Cell::new(STEPS_PER_LOOKUP))
}

/// [`lookup`], charging every path component walked and every link target
/// part queued to `budget` (steps left): a chain of links full of `x/../`
/// costs what it walks, not one lookup.
pub fn lookup_within<'r>(
    rootfs: &'r Rootfs,
    path: &str,
    budget: &std::cell::Cell<u64>,
) -> Lookup<'r> {
    let mut links = Vec::new();
    let charge = |steps: u64| {
        let left = budget.get();
        budget.set(left.saturating_sub(steps));
        left >= steps
    };
    if path.len() > PATH_MAX {
        return Lookup {
            end: End::TooLong,
            links,
        };
    }
    let mut todo: std::collections::VecDeque<String> =
        path.split('/').map(str::to_string).collect();
    // The resolved path so far, and where each of its parts starts: one
    // string grown and cut, not rebuilt at every part.
    let mut at = String::new();
    let mut starts: Vec<usize> = Vec::new();
    if !charge(todo.len() as u64) {
        return Lookup {
            end: End::OverBudget,
            links,
        };
    }
    while let Some(part) = todo.pop_front() {
        if !charge(1) {
            return Lookup {
                end: End::OverBudget,
                links,
            };
        }
        match part.as_str() {
            "" | "." => continue,
            // Above the root is the root, as in the kernel's walk.
            ".." => {
                if let Some(start) = starts.pop() {
                    at.truncate(start.saturating_sub(1));
                }
                continue;
            }
            _ => {}
        }
        let start = if at.is_empty() { 0 } else { at.len() + 1 };
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(&part);
        if at.len() > PATH_MAX {
            return Lookup {
                end: End::TooLong,
                links,
            };
        }
        match rootfs.entries.get(&at) {
            Some(entry) if entry.kind == Kind::Symlink => {
                if links.len() >= MAX_LINKS {
                    return Lookup {
                        end: End::TooManyLinks,
                        links,
                    };
                }
                let target = entry.link.clone().unwrap_or_default();
                if target.len() > PATH_MAX {
                    return Lookup {
                        end: End::TooLong,
                        links,
                    };
                }
                let link = at.clone();
                // The link's folder is where a relative target starts.
                at.truncate(start.saturating_sub(1));
                if target.starts_with('/') {
                    at.clear();
                    starts.clear();
                }
                if !charge(target.split('/').count() as u64) {
                    return Lookup {
                        end: End::OverBudget,
                        links,
                    };
                }
                for piece in target.split('/').rev() {
                    todo.push_front(piece.to_string());
                }
                links.push((link, target));
            }
            Some(entry) if entry.kind == Kind::Directory => starts.push(start),
            Some(_) if todo.iter().any(|p| !p.is_empty() && p != ".") => {
                return Lookup {
                    end: End::NotAFolder(at),
                    links,
                }
            }
            Some(_) => starts.push(start),
            None if implied_folder(rootfs, &at) => starts.push(start),
            None => {
                return Lookup {
                    end: End::Missing(at),
                    links,
                }
            }
        }
    }
    let entry = rootfs.entries.get(&at);
    Lookup {
        end: End::Found(at, entry),
        links,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::oci::rootfs::Entry;

    pub fn entry(kind: Kind, link: Option<&str>) -> Entry {
        Entry::example(kind, link)
    }

    /// A filesystem from `(path, kind)`: `"dir/"` a folder, `"a -> b"` a
    /// symlink, anything else a file.
    pub fn rootfs(paths: &[&str]) -> Rootfs {
        let mut rootfs = Rootfs::default();
        for spec in paths {
            let (path, value) = if let Some((path, target)) = spec.split_once(" -> ") {
                (path, entry(Kind::Symlink, Some(target)))
            } else if let Some(path) = spec.strip_suffix('/') {
                (path, entry(Kind::Directory, None))
            } else {
                (*spec, entry(Kind::File, None))
            };
            rootfs.entries.insert(path.to_string(), value);
        }
        rootfs
    }

    #[test]
    fn links_are_followed_inside_the_image() {
        let fs = rootfs(&[
            "bin -> usr/bin",
            "lib -> /usr/lib",
            "usr/",
            "usr/bin/",
            "usr/bin/busybox",
            "usr/bin/sh -> busybox",
            "usr/lib/libc.so",
            "usr/lib/ld-musl-x86_64.so.1 -> libc.so",
            "usr/bin/up -> ../../../../../../usr/bin/sh",
            "usr/bin/host -> ../../../../../../etc/hostname",
            "usr/bin/loop -> loop",
            "usr/bin/dangling -> missing.so",
            "usr/bin/through -> busybox/x",
        ]);
        let found = |path: &str| lookup(&fs, path).file().map(|(p, _)| p);
        assert_eq!(found("/bin/sh").as_deref(), Some("/usr/bin/busybox"));
        assert_eq!(
            found("/lib/ld-musl-x86_64.so.1").as_deref(),
            Some("/usr/lib/libc.so")
        );
        // `..` stops at the image's root: the host's /etc is never reached.
        assert_eq!(found("/usr/bin/up").as_deref(), Some("/usr/bin/busybox"));
        let host = lookup(&fs, "/usr/bin/host");
        assert_eq!(host.end, End::Missing("etc".into()));
        assert_eq!(lookup(&fs, "/usr/bin/loop").end, End::TooManyLinks);
        let dangling = lookup(&fs, "/bin/dangling");
        assert_eq!(
            dangling.why_not("/bin/dangling"),
            "/usr/bin/missing.so does not exist (symlinks followed: /bin/dangling → usr/bin → missing.so)"
        );
        assert_eq!(
            lookup(&fs, "/usr/bin/through").end,
            End::NotAFolder("usr/bin/busybox".into())
        );
        // A folder only implied by its contents is still a folder.
        assert_eq!(
            lookup(&fs, "/usr/lib").end,
            End::Found("usr/lib".into(), None)
        );
        assert_eq!(lookup(&fs, "/").end, End::Found(String::new(), None));
        let long = format!("/{}", "a/".repeat(3000));
        assert_eq!(lookup(&fs, &long).end, End::TooLong);
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/usr/bin/x"), "/usr/bin");
        assert_eq!(parent("/x"), "/");
        assert_eq!(absolute("usr/lib"), "/usr/lib");
    }
}
