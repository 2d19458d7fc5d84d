//! Other tools' SBOMs, read for comparison with ours: the software packages an
//! SPDX (2.2, 2.3) or CycloneDX (1.4–1.7) JSON document lists, without the
//! entries that describe the scanned thing itself (the image, its OS, files).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One software package another tool found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct ForeignPackage {
    pub name: String,
    pub version: String,
    pub purl: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spdx {
    spdx_version: String,
    #[serde(default)]
    packages: Vec<SpdxPackage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    name: String,
    #[serde(default)]
    version_info: String,
    #[serde(default)]
    primary_package_purpose: Option<String>,
    #[serde(default)]
    external_refs: Vec<SpdxRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxRef {
    reference_type: String,
    reference_locator: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CycloneDx {
    spec_version: String,
    #[serde(default)]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    components: Vec<Component>,
}

/// What describes the scanned thing rather than software inside it.
const NOT_SOFTWARE: &[&str] = &[
    "CONTAINER",
    "FILE",
    "OPERATING-SYSTEM",
    "container",
    "file",
    "operating-system",
];

/// The packages of an SPDX or CycloneDX JSON document, sorted.
pub fn packages(bytes: &[u8]) -> Result<Vec<ForeignPackage>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).context("the SBOM is not JSON")?;
    let mut found = if value.get("spdxVersion").is_some() {
        let spdx: Spdx = serde_json::from_value(value).context("not an SPDX JSON document")?;
        if !spdx.spdx_version.starts_with("SPDX-2.") {
            bail!("{} is not SPDX 2.x", spdx.spdx_version);
        }
        spdx.packages
            .into_iter()
            .filter(|p| {
                !p.primary_package_purpose
                    .as_deref()
                    .is_some_and(|k| NOT_SOFTWARE.contains(&k))
            })
            .map(|p| ForeignPackage {
                purl: p
                    .external_refs
                    .iter()
                    .find(|r| r.reference_type == "purl")
                    .map(|r| r.reference_locator.clone()),
                name: p.name,
                version: p.version_info,
            })
            .collect()
    } else if value.get("bomFormat").and_then(|f| f.as_str()) == Some("CycloneDX") {
        let bom: CycloneDx =
            serde_json::from_value(value).context("not a CycloneDX JSON document")?;
        if !bom.spec_version.starts_with("1.") {
            bail!("CycloneDX {} is not 1.x", bom.spec_version);
        }
        let mut found = Vec::new();
        let mut pending = bom.components;
        while let Some(component) = pending.pop() {
            pending.extend(component.components);
            if !NOT_SOFTWARE.contains(&component.kind.as_str()) {
                found.push(ForeignPackage {
                    name: component.name,
                    version: component.version,
                    purl: component.purl,
                });
            }
        }
        found
    } else {
        bail!("neither SPDX (spdxVersion) nor CycloneDX (bomFormat) JSON");
    };
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = crate::files::project_root()
            .join("xtask/tests/testdata/scanners/syft")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn names(file: &str) -> Vec<(String, String)> {
        packages(&fixture(file))
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect()
    }

    #[test]
    fn real_syft_documents_in_every_format() {
        let image = [("package-1", "1.0.1"), ("package-2", "2.0.1")]
            .map(|(n, v)| (n.to_string(), v.to_string()));
        // The same image in SPDX 2.3 and CycloneDX 1.7: the same packages;
        // the image itself and its OS are not packages.
        assert_eq!(names("syft-spdx-image.golden.json"), image);
        assert_eq!(names("syft-cyclonedx-1.7-image.golden.json"), image);
        let alpine = names("syft-spdx-2.2-alpine-3.10.spdx.json");
        assert_eq!(alpine.len(), 3);
        assert!(alpine.contains(&("busybox".into(), "1.30.1-r5".into())));
        let gomod = packages(&fixture("syft-spdx-2.3-gomod.spdx.json")).unwrap();
        assert_eq!(gomod.len(), 1, "go.mod is a FILE: {gomod:?}");
        assert_eq!(
            gomod[0].purl.as_deref(),
            Some("pkg:golang/github.com/wagoodman/go-partybus@v0.0.0-20230516145632-8ccac152c651")
        );
        assert_eq!(
            packages(&fixture("syft-cyclonedx-1.6-gomod.cdx.json")).unwrap(),
            gomod
        );
        assert!(packages(b"{\"matches\": []}").is_err());
        assert!(packages(b"{\"spdxVersion\": \"SPDX-3.0\"}").is_err());
    }
}
