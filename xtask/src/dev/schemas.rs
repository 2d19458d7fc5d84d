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
        .map(|(command, schema)| {
            let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
            text.push('\n');
            (
                format!("docs/schemas/{command}.{DOCUMENT_VERSION}.json"),
                text,
            )
        })
        .collect()
}
