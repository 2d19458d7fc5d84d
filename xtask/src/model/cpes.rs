//! Which CPE names NVD files each StageX package under (`sbom/cpe-map.tsv`),
//! and the CPE of a pinned package version.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const CPE_MAP: &str = "sbom/cpe-map.tsv";

#[derive(Debug, Clone, Default)]
pub struct CpeMap {
    /// package → (vendor, product)
    products: BTreeMap<String, (String, String)>,
}

impl CpeMap {
    pub fn load(root: &Path) -> Result<CpeMap> {
        let path = root.join(CPE_MAP);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut products = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let columns: Vec<&str> = line.split('\t').collect();
            let [package, vendor, product] = columns.as_slice() else {
                bail!(
                    "{}:{}: expected `package<TAB>vendor<TAB>product`",
                    path.display(),
                    index + 1
                );
            };
            let field_ok = |f: &str| {
                !f.is_empty()
                    && f.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            };
            if !field_ok(vendor) || !field_ok(product) {
                bail!(
                    "{}:{}: vendor and product are CPE words (letters, digits, `.`, `_`, `-`)",
                    path.display(),
                    index + 1
                );
            }
            products.insert(
                package.to_string(),
                (vendor.to_string(), product.to_string()),
            );
        }
        Ok(CpeMap { products })
    }

    /// `cpe:2.3:a:<vendor>:<product>:<version>:*:*:*:*:*:*:*`, when the package
    /// is mapped and its version is known.
    pub fn cpe(&self, package: &str, version: Option<&str>) -> Option<String> {
        let (vendor, product) = self.products.get(package)?;
        let version = version?;
        // A version is one CPE field: escape what CPE 2.3 reserves.
        let version: String = version
            .chars()
            .flat_map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                    vec![c]
                } else {
                    vec!['\\', c]
                }
            })
            .collect();
        Some(format!(
            "cpe:2.3:a:{vendor}:{product}:{version}:*:*:*:*:*:*:*"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_map_loads_and_makes_cpes() {
        let map = CpeMap::load(&crate::files::project_root()).unwrap();
        assert_eq!(
            map.cpe("core-musl", Some("1.2.5")).as_deref(),
            Some("cpe:2.3:a:musl-libc:musl:1.2.5:*:*:*:*:*:*:*")
        );
        assert_eq!(map.cpe("core-musl", None), None, "no version, no CPE");
        assert_eq!(map.cpe("core-ca-certificates", Some("1")), None);
        assert_eq!(
            map.cpe("core-openssl", Some("3.5.2+x")).as_deref(),
            Some("cpe:2.3:a:openssl:openssl:3.5.2\\+x:*:*:*:*:*:*:*")
        );
    }
}
