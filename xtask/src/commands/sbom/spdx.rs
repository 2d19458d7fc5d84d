//! The document as SPDX 2.3 JSON. Identifiers, the namespace and the time are
//! derived from the image digest and SOURCE_DATE_EPOCH: the same image gives
//! the same bytes.

use serde_json::{json, Value};

use super::document::{Document, PackageKind};

const IMAGE_ID: &str = "SPDXRef-Image";

fn package_id(name: &str) -> String {
    format!("SPDXRef-Package-{name}")
}

/// `SPDXRef-File-<16 hex of the path's sha256>`: stable, and valid whatever
/// characters the path holds.
fn file_id(path: &str) -> String {
    format!(
        "SPDXRef-File-{}",
        &crate::hash::hex_sha256(path.as_bytes())[..16]
    )
}

/// SPDX 2.3 §7.9: the SHA-1 of the files' SHA-1s, sorted and concatenated.
fn verification_code(document: &Document) -> String {
    let mut sums: Vec<&str> = document.files.iter().map(|f| f.sha1.as_str()).collect();
    sums.sort_unstable();
    crate::hash::hex_sha1(sums.concat().as_bytes())
}

pub fn render(document: &Document) -> Value {
    let mut packages = vec![json!({
        "SPDXID": IMAGE_ID,
        "name": document.image,
        "versionInfo": document.digest,
        "downloadLocation": "NOASSERTION",
        // It CONTAINS its files: they were analysed, and SPDX then wants the
        // verification code over them.
        "filesAnalyzed": true,
        "packageVerificationCode": {"packageVerificationCodeValue": verification_code(document)},
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": document.digest_hex()}],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": document.purl(),
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": IMAGE_ID,
    })];
    for package in &document.packages {
        let mut references = vec![json!({
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": package.purl,
        })];
        if let Some(cpe) = &package.cpe {
            references.push(json!({
                "referenceCategory": "SECURITY",
                "referenceType": "cpe23Type",
                "referenceLocator": cpe,
            }));
        }
        let mut entry = json!({
            "SPDXID": package_id(&package.name),
            "name": package.name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": if package.kind == PackageKind::OurImage { "CONTAINER" } else { "LIBRARY" },
            "checksums": [{
                "algorithm": "SHA256",
                "checksumValue": package.digest.trim_start_matches("sha256:"),
            }],
            "externalRefs": references,
        });
        if let Some(version) = &package.version {
            entry["versionInfo"] = json!(version);
        }
        if package.kind != PackageKind::OurImage {
            entry["supplier"] = json!("Organization: StageX");
        }
        packages.push(entry);
        let (element, kind, related) = match package.kind {
            PackageKind::Contained | PackageKind::OurImage => {
                (IMAGE_ID.to_string(), "CONTAINS", package_id(&package.name))
            }
            PackageKind::BuildTool => (
                package_id(&package.name),
                "BUILD_TOOL_OF",
                IMAGE_ID.to_string(),
            ),
        };
        relationships.push(json!({
            "spdxElementId": element,
            "relationshipType": kind,
            "relatedSpdxElement": related,
        }));
    }
    let mut files = Vec::new();
    for file in &document.files {
        let id = file_id(&file.path);
        files.push(json!({
            "SPDXID": id,
            "fileName": format!("./{}", file.path),
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": file.sha1},
                {"algorithm": "SHA256", "checksumValue": file.sha256},
            ],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }));
        relationships.push(json!({
            "spdxElementId": IMAGE_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
        if let Some(from) = &file.from {
            relationships.push(json!({
                "spdxElementId": id,
                "relationshipType": "GENERATED_FROM",
                "relatedSpdxElement": package_id(from),
            }));
        }
    }
    let mut spdx = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", document.image, document.digest),
        "documentNamespace": "",
        "creationInfo": {
            "created": crate::time::rfc3339(document.created),
            "creators": [format!("Tool: cargo-xtask-{}", document.tool_version)],
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    });
    // Unique per document, as SPDX asks: the image, and the content's hash.
    let hash = super::document::content_hash(&spdx);
    spdx["documentNamespace"] = json!(format!(
        "https://stagex-base-images.invalid/spdx/{}/{}/{}",
        document.image,
        document.digest_hex(),
        &hash[..16]
    ));
    spdx
}
