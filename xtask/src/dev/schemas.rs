//! The JSON Schema of every command's `--json` document, generated from the
//! Rust types that write it: `docs/schemas/<command>.v1.json`, written and
//! drift-checked by `cargo xtask docs`.

use schemars::{schema_for, Schema};

use crate::report::{Document, DOCUMENT_VERSION};

/// `(command, schema)`: every document a command writes, by the name in its
/// `schema` field (`xtask/<command>/v1`).
pub fn all() -> Vec<(&'static str, Schema)> {
    use crate::commands::*;
    type Nothing = ();
    vec![
        ("all", schema_for!(Document<Nothing>)),
        ("attest", schema_for!(Document<signing::Signed>)),
        ("build", schema_for!(Document<Nothing>)),
        (
            "check-runtime",
            schema_for!(Document<Vec<check_runtime::Checked>>),
        ),
        ("compare", schema_for!(Document<Vec<compare::Measured>>)),
        ("demo", schema_for!(Document<super::demo::DemoReport>)),
        ("doctor", schema_for!(Document<Vec<doctor::Diagnosis>>)),
        ("keys-fetch", schema_for!(Document<Vec<keys::Fetched>>)),
        ("lint", schema_for!(Document<Vec<lint::Finding>>)),
        (
            "malcontent",
            schema_for!(Document<Vec<malcontent::Analysed>>),
        ),
        ("mirror", schema_for!(Document<Vec<mirror::MirrorResult>>)),
        ("pins-check", schema_for!(Document<Vec<pins::plan::Judged>>)),
        ("pins-update", schema_for!(Document<Vec<pins::Moved>>)),
        (
            "publish",
            schema_for!(Document<Option<crate::records::publish::PublishRecord>>),
        ),
        ("push", schema_for!(Document<crate::oci::transfer::Pushed>)),
        ("sbom", schema_for!(Document<Nothing>)),
        ("scan", schema_for!(Document<Vec<scan::Scanned>>)),
        ("sign", schema_for!(Document<signing::Signed>)),
        (
            "signatures-verify",
            schema_for!(Document<crate::pgp::verify::QuorumReport>),
        ),
        ("verify", schema_for!(Document<signing::verified::Verified>)),
        ("verify-reproducible", schema_for!(Document<Nothing>)),
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
