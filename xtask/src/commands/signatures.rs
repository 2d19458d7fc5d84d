//! `cargo xtask signatures verify REPO@sha256:HEX`: StageX's quorum rule on one
//! digest, one verdict per signature file.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::args::{JsonArg, TrustArgs};
use crate::error::fail;
use crate::oci::reference::ImageRef;
use crate::oci::registry;
use crate::pgp::verify::{self, QuorumReport};

/// Verify StageX signatures of an image digest against the maintainer keys.
#[derive(Debug, Args)]
pub struct Signatures {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Verify REPO@sha256:HEX (e.g. stagex/core-musl@sha256:…); exit 0 iff the quorum is met.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// `stagex/<package>@sha256:<hex>`
    reference: String,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    json: JsonArg,
}

impl Signatures {
    pub fn run(self, root: &Path) -> Result<()> {
        let Action::Verify(args) = self.action;
        let (repository, digest_hex) = split_reference(&args.reference)?;
        let keyring = args.trust.keyring(root)?;
        let threshold = args.trust.threshold()?;
        let lookaside = args.trust.lookaside_store()?;
        let files = registry::block_on(lookaside.fetch_all(&repository, &digest_hex))??;
        let report = verify::verify_quorum(&files, &keyring, &repository, &digest_hex, threshold);
        crate::ui::say_more!("{}", render(&report, args.trust.lookaside()));
        args.json.write("signatures-verify", &[], &report)?;
        if report.met {
            Ok(())
        } else {
            fail(format!(
                "{}@{}: {} distinct maintainer key(s) signed, {threshold} required",
                report.repository,
                report.digest,
                report.signers.len()
            ))
        }
    }
}

/// `stagex/core-musl@sha256:<hex>` → (`stagex/core-musl`, `<hex>`). A tag is
/// allowed and ignored: signatures are made over the digest.
pub fn split_reference(text: &str) -> Result<(String, String)> {
    let (name, digest) = text
        .split_once("@sha256:")
        .with_context(|| format!("`{text}`: name the digest, as REPO@sha256:<hex>"))?;
    if !crate::oci::reference::is_sha256_hex(digest) {
        bail!("`{text}`: the digest must be 64 lowercase hex characters");
    }
    let repository = ImageRef::parse(name)?.signed_repository();
    Ok((repository, digest.to_string()))
}

pub fn render(report: &QuorumReport, lookaside: &str) -> String {
    let mut out = format!(
        "{}@{} ({} signature file(s) at {lookaside})\n",
        report.repository,
        report.digest,
        report.verdicts.len()
    );
    for verdict in &report.verdicts {
        let who = match (&verdict.signer, &verdict.primary) {
            (Some(signer), Some(primary)) if signer != primary => {
                format!("signer {signer} (primary {primary})")
            }
            (Some(signer), _) => format!("signer {signer}"),
            _ => "signer unknown".to_string(),
        };
        let form = verdict.form.map(|f| format!(", {f}")).unwrap_or_default();
        let created = verdict.created.as_deref().unwrap_or("?");
        match &verdict.reason {
            None => out.push_str(&format!(
                "  {}: counted: {who}, made {created}{form}\n",
                verdict.file
            )),
            Some(reason) => out.push_str(&format!(
                "  {}: not counted: {reason} ({who}, made {created}{form})\n",
                verdict.file
            )),
        }
    }
    out.push_str(&format!(
        "  quorum {}: {} distinct maintainer key(s), {} required\n",
        if report.met { "met" } else { "NOT met" },
        report.signers.len(),
        report.threshold
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let hex = "ab".repeat(32);
        assert_eq!(
            split_reference(&format!("stagex/core-musl:1.2.5@sha256:{hex}")).unwrap(),
            ("stagex/core-musl".to_string(), hex.clone())
        );
        assert_eq!(
            split_reference(&format!("docker.io/stagex/core-musl@sha256:{hex}"))
                .unwrap()
                .0,
            "stagex/core-musl"
        );
        assert!(split_reference("stagex/core-musl:1.2.5").is_err());
        assert!(split_reference("stagex/core-musl@sha256:abc").is_err());
    }
}
