//! The JSON Schema of every command's `--json` document, generated from the
//! Rust types that write it: `docs/schemas/<command>.v1.json`, written and
//! drift-checked by `cargo xtask docs`.

use schemars::{generate::SchemaSettings, JsonSchema, Schema};

use crate::report::{Document, DOCUMENT_VERSION};

/// The schema of what a command writes (a field skipped when empty is not
/// required), not of what it would accept.
fn output<T: JsonSchema>() -> Schema {
    SchemaSettings::default()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Document<T>>()
}

/// `(command, schema)`: every document a command writes, by the name in its
/// `schema` field (`xtask/<command>/v1`).
pub fn all() -> Vec<(&'static str, Schema)> {
    use crate::commands::*;
    type Nothing = ();
    vec![
        ("all", output::<Nothing>()),
        ("attest", output::<signing::Signed>()),
        ("build", output::<Nothing>()),
        ("check-runtime", output::<Vec<check_runtime::Checked>>()),
        ("compare", output::<Vec<compare::Measured>>()),
        ("demo", output::<super::demo::DemoReport>()),
        ("doctor", output::<Vec<doctor::Diagnosis>>()),
        ("keys-fetch", output::<Vec<keys::Fetched>>()),
        ("lint", output::<Vec<lint::Finding>>()),
        ("malcontent", output::<Vec<malcontent::Analysed>>()),
        ("mirror", output::<Vec<mirror::MirrorResult>>()),
        ("pins-check", output::<Vec<pins::plan::Judged>>()),
        ("pins-update", output::<Vec<pins::Moved>>()),
        (
            "publish",
            output::<Option<crate::records::publish::PublishRecord>>(),
        ),
        ("provenance", output::<Vec<provenance::Written>>()),
        ("push", output::<crate::oci::transfer::Pushed>()),
        ("release-notes", output::<release_notes::Notes>()),
        ("sbom", output::<Nothing>()),
        ("scan", output::<Vec<scan::Scanned>>()),
        ("sign", output::<signing::Signed>()),
        (
            "signatures-verify",
            output::<crate::pgp::verify::QuorumReport>(),
        ),
        ("verify", output::<signing::verified::Verified>()),
        ("verify-reproducible", output::<Nothing>()),
    ]
}

/// `docs/schemas/<command>.v1.json` and its text, for every command.
pub fn files() -> Vec<(String, String)> {
    all()
        .into_iter()
        .map(|(command, mut schema)| {
            // Each file pins its command's id and says whose it is.
            schema.insert(
                "title".into(),
                format!("cargo xtask {command} --json (v1)").into(),
            );
            if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
                properties.insert(
                    "schema".into(),
                    serde_json::json!({ "const": crate::report::schema_id(command) }),
                );
            }
            let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
            text.push('\n');
            (
                format!("docs/schemas/{command}.{DOCUMENT_VERSION}.json"),
                text,
            )
        })
        .collect()
}

/// Write (or check) every schema file under `root`; a schema file of no
/// command is a stray.
pub fn ensure(root: &std::path::Path, mode: crate::files::Mode) -> anyhow::Result<usize> {
    let files = files();
    let mut written = 0;
    for (path, text) in &files {
        if crate::files::ensure_file(&root.join(path), text, mode, "cargo xtask docs")?
            == crate::files::Outcome::Written
        {
            written += 1;
        }
    }
    let planned: Vec<String> = files.into_iter().map(|(path, _)| path).collect();
    let strays = crate::files::strays(root, &["docs/schemas"], &planned);
    if !strays.is_empty() {
        return crate::error::fail(format!(
            "{} in docs/schemas/ belong to no command's document: remove them, or run `cargo xtask docs`",
            strays.join(", ")
        ));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command's schema is generated, and each one pins its own id.
    /// The committed schemas are the generated ones (`XTASK_WRITE_SCHEMAS=1`
    /// writes them, as `cargo xtask docs` does).
    #[test]
    fn the_committed_schemas_are_current() {
        let mode = if std::env::var_os("XTASK_WRITE_SCHEMAS").is_some() {
            crate::files::Mode::Write
        } else {
            crate::files::Mode::Check
        };
        ensure(&crate::files::project_root(), mode).unwrap();
    }

    #[test]
    fn each_schema_names_its_command() {
        for (command, schema) in all() {
            let text = serde_json::to_string(&schema).unwrap();
            assert!(text.contains("\"schema\""), "{command}");
            assert!(text.contains("\"steps\""), "{command}");
            assert!(text.contains("\"result\""), "{command}");
        }
    }
}
