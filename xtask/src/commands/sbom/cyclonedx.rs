//! The document as CycloneDX 1.6 JSON. A package's files are its
//! sub-components; files no package left sit at the top. The serial number
//! and the time come from the image digest and SOURCE_DATE_EPOCH: the same
//! image gives the same bytes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::document::{Document, File, PackageKind};

/// A UUID (version 5 layout) from the document's content hash: the same
/// document, the same serial; any change, a new one.
fn serial(hash: &str) -> String {
    let mut hex: Vec<char> = hash[..32].chars().collect();
    hex[12] = '5';
    hex[16] = match hex[16] {
        '0' | '4' | '8' | 'c' => '8',
        '1' | '5' | '9' | 'd' => '9',
        '2' | '6' | 'a' | 'e' => 'a',
        _ => 'b',
    };
    let hex: String = hex.into_iter().collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn file(file: &File) -> Value {
    json!({
        "type": "file",
        "bom-ref": format!("file:{}", file.path),
        "name": format!("/{}", file.path),
        "hashes": [
            {"alg": "SHA-1", "content": file.sha1},
            {"alg": "SHA-256", "content": file.sha256},
        ],
    })
}

pub fn render(document: &Document) -> Value {
    let mut by_package: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut loose = Vec::new();
    for entry in &document.files {
        match &entry.from {
            Some(from) => by_package.entry(from).or_default().push(file(entry)),
            None => loose.push(file(entry)),
        }
    }
    let mut components = Vec::new();
    let mut depends = Vec::new();
    for package in &document.packages {
        let reference = format!("package:{}", package.name);
        let mut component = json!({
            "type": if package.kind == PackageKind::OurImage { "container" } else { "library" },
            "bom-ref": reference,
            "name": package.name,
            "purl": package.purl,
            "hashes": [{"alg": "SHA-256", "content": package.digest.trim_start_matches("sha256:")}],
            "scope": if package.kind == PackageKind::BuildTool { "excluded" } else { "required" },
        });
        if let Some(version) = &package.version {
            component["version"] = json!(version);
        }
        if let Some(cpe) = &package.cpe {
            component["cpe"] = json!(cpe);
        }
        if package.kind != PackageKind::OurImage {
            component["supplier"] = json!({"name": "StageX", "url": ["https://stagex.tools"]});
        }
        if let Some(files) = by_package.remove(package.name.as_str()) {
            component["components"] = json!(files);
        }
        if package.kind != PackageKind::BuildTool {
            depends.push(reference);
        }
        components.push(component);
    }
    components.extend(loose);
    let mut bom = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": "",
        "version": 1,
        "metadata": {
            "timestamp": crate::time::rfc3339(document.created),
            "tools": {"components": [{
                "type": "application",
                "name": "cargo-xtask",
                "version": document.tool_version,
            }]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": document.image,
                "version": document.digest,
                "purl": document.purl(),
            },
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": depends}],
    });
    bom["serialNumber"] = json!(serial(&super::document::content_hash(&bom)));
    bom
}
