//! Why two builds of one image differ: down to files in layers, each layer
//! named by the instruction that made it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::oci::archive::{FileEntry, OciArchive};
use crate::oci::tar::Budget;

/// What differs between two builds of one image, down to files in layers,
/// each layer named by the instruction that made it.
pub fn explain(first: &OciArchive, second: &OciArchive) -> Result<String> {
    let mut out = String::new();
    out.push_str(&format!(
        "  manifest {} ({})\n        vs {} ({})\n",
        first.manifest_digest(),
        name_of(&first.path),
        second.manifest_digest(),
        name_of(&second.path)
    ));
    let (config_a, config_b) = (first.config()?, second.config()?);
    for key in ["architecture", "os", "config"] {
        if config_a.get(key) != config_b.get(key) {
            out.push_str(&format!(
                "  image config `{key}` differs: {} vs {}\n",
                config_a.get(key).unwrap_or(&serde_json::Value::Null),
                config_b.get(key).unwrap_or(&serde_json::Value::Null)
            ));
        }
    }
    if config_a.get("created") != config_b.get("created") {
        out.push_str(
            "  image config `created` differs: is SOURCE_DATE_EPOCH the same for both builds?\n",
        );
    }
    let instructions = layer_instructions(&config_a);
    let (layers_a, layers_b) = (&first.manifest.layers, &second.manifest.layers);
    if layers_a.len() != layers_b.len() {
        out.push_str(&format!(
            "  layer count differs: {} vs {}\n",
            layers_a.len(),
            layers_b.len()
        ));
    }
    let mut differing_files = 0;
    let budget_a = Budget::from_env()?;
    let budget_b = Budget::from_env()?;
    for (index, (a, b)) in layers_a.iter().zip(layers_b).enumerate() {
        if a.digest == b.digest {
            continue;
        }
        let made_by = instructions
            .get(index)
            .map(|s| format!(" made by `{s}`"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  layer {}{made_by}: {} vs {}\n",
            index + 1,
            a.digest,
            b.digest
        ));
        let files_a = first.layer_files(a, &budget_a)?;
        let files_b = second.layer_files(b, &budget_b)?;
        let lines = compare_files(&files_a, &files_b);
        if lines.is_empty() {
            out.push_str("    same files and attributes: the difference is in the tar or compression framing (entry order, headers)\n");
        }
        differing_files += lines.len();
        for line in lines {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.push_str(&format!("  {differing_files} file(s) differ\n"));
    Ok(out)
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `created_by` of the history entries that produced a layer, in layer order.
fn layer_instructions(config: &serde_json::Value) -> Vec<String> {
    config["history"]
        .as_array()
        .map(|history| {
            history
                .iter()
                .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
                .map(|h| {
                    let text = h["created_by"].as_str().unwrap_or("?");
                    text.trim_end_matches(" # buildkit").to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One line per file that differs: `~ path: what changed`, `+ path` (only in the
/// second build), `- path` (only in the first).
pub fn compare_files(
    a: &BTreeMap<String, FileEntry>,
    b: &BTreeMap<String, FileEntry>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, left) in a {
        match b.get(path) {
            None => lines.push(format!("- {path} ({}, only in the first build)", left.kind)),
            Some(right) if right != left => {
                let mut changes = Vec::new();
                if left.kind != right.kind {
                    changes.push(format!("type {} → {}", left.kind, right.kind));
                }
                if left.sha256 != right.sha256 {
                    changes.push(format!(
                        "content sha256 {}… → {}…",
                        &left.sha256[..12],
                        &right.sha256[..12]
                    ));
                }
                if left.size != right.size {
                    changes.push(format!("size {} → {}", left.size, right.size));
                }
                if left.mode != right.mode {
                    changes.push(format!("mode {:o} → {:o}", left.mode, right.mode));
                }
                if (left.uid, left.gid) != (right.uid, right.gid) {
                    changes.push(format!(
                        "owner {}:{} → {}:{}",
                        left.uid, left.gid, right.uid, right.gid
                    ));
                }
                if left.mtime != right.mtime {
                    changes.push(format!(
                        "mtime {} → {} (is the timestamp clamped to SOURCE_DATE_EPOCH? A layer from BuildKit's cache keeps the time it was first made: build with --no-cache)",
                        left.mtime, right.mtime
                    ));
                }
                if left.link != right.link {
                    changes.push(format!(
                        "link target {} → {}",
                        left.link.as_deref().unwrap_or("-"),
                        right.link.as_deref().unwrap_or("-")
                    ));
                }
                lines.push(format!("~ {path}: {}", changes.join("; ")));
            }
            Some(_) => {}
        }
    }
    for (path, right) in b {
        if !a.contains_key(path) {
            lines.push(format!(
                "+ {path} ({}, only in the second build)",
                right.kind
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: char, size: u64, mtime: u64) -> FileEntry {
        FileEntry {
            kind: "file",
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
            link: None,
            sha256: sha.to_string().repeat(64),
        }
    }

    #[test]
    fn file_differences_are_spelled_out() {
        let a = BTreeMap::from([
            ("stamp".to_string(), file('a', 30, 1)),
            ("same".to_string(), file('c', 1, 1)),
            ("gone".to_string(), file('d', 1, 1)),
        ]);
        let mut moved = file('c', 1, 1);
        moved.mode = 0o755;
        moved.mtime = 99;
        let b = BTreeMap::from([
            ("stamp".to_string(), file('b', 31, 1)),
            ("same".to_string(), moved),
            ("new".to_string(), file('e', 1, 1)),
        ]);
        insta::assert_snapshot!(compare_files(&a, &b).join("\n"));
    }
}
