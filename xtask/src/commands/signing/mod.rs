//! `sign`, `attest`, `verify`, `publish` and `signing-key init`: images signed
//! by digest with the project's cosign key pair, their SBOMs attested, both
//! verified against the committed `cosign.pub`.
//!
//! A tag is refused before cosign runs (signing a tag signs whatever it points
//! to now). The key's password reaches cosign only as `COSIGN_PASSWORD` in its
//! environment, a key given as PEM only as `COSIGN_KEY`; registry credentials
//! only through a docker config holding that one registry's entry.

pub mod key;
pub mod publish;
pub mod verified;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::args::JsonArg;
use crate::error::fail;
use crate::oci::auth::{CredentialSource, Role};
use crate::oci::reference::ImageRef;
use crate::oci::registry::Registry;
use crate::tools::cosign::{
    self, Generation, PredicateKind, PrivateKey, ScopedDockerConfig, Signing, Verifying,
};
use crate::tools::process::{Cmd, Env};
use crate::tools::{self, Tool};
use verified::Verified;

/// The project's public key, at the root of the checkout.
pub const PUBLIC_KEY: &str = "cosign.pub";

/// Which private key signs, and whether a transparency log is used.
#[derive(Debug, Args, Clone, Default)]
pub struct KeyArgs {
    /// The private key file (default: the key itself, as PEM, in COSIGN_KEY);
    /// its password comes from COSIGN_PASSWORD, never from the command line.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Use no transparency log, for internal registries (cosign 2:
    /// --tlog-upload=false; cosign 3: its signing config off); verifying then
    /// ignores the log too.
    #[arg(long)]
    pub no_tlog: bool,
    /// The password, when a caller has it in hand rather than in
    /// COSIGN_PASSWORD (the demo's throwaway key).
    #[arg(skip)]
    pub password: Option<String>,
}

impl KeyArgs {
    /// The private key, and the secrets cosign needs for it, from the
    /// environment; a clear error when one is missing.
    pub fn signing(&self, cosign: cosign::Installed) -> Result<(Signing, Env)> {
        self.signing_from(cosign, &|name| std::env::var(name))
    }

    /// [`KeyArgs::signing`] with the variables `var` reads (a test's own).
    fn signing_from(
        &self,
        cosign: cosign::Installed,
        var: &dyn Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<(Signing, Env)> {
        if self.no_tlog {
            let version = cosign.version;
            if cosign::ignores_no_tlog(version) {
                bail!(
                    "cosign {}.{}.{} ignores --tlog-upload=false and would upload to the public transparency log (sigstore/cosign#4503): install cosign 3.0.3 or newer, or 2.x",
                    version.map(|v| v.0).unwrap_or(0),
                    version.map(|v| v.1).unwrap_or(0),
                    version.map(|v| v.2).unwrap_or(0)
                );
            }
        }
        let mut secrets = Env::new();
        let key = match &self.key {
            Some(path) => {
                if !path.is_file() {
                    bail!(
                        "--key {}: no such file (the private key `cargo xtask signing-key init` wrote)",
                        path.display()
                    );
                }
                PrivateKey::File(path.clone())
            }
            None => match var(cosign::KEY_ENV) {
                Ok(pem) if pem.trim_start().starts_with("-----BEGIN") => {
                    secrets.insert(cosign::KEY_ENV.to_string(), pem);
                    PrivateKey::Environment
                }
                Ok(other) if !other.trim().is_empty() => bail!(
                    "{} holds no PEM key (it must hold the key itself, `-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----…`); for a key file pass --key PATH",
                    cosign::KEY_ENV
                ),
                Err(std::env::VarError::NotUnicode(_)) => {
                    bail!("{} is not valid UTF-8", cosign::KEY_ENV)
                }
                _ => bail!(
                    "no signing key: pass --key PATH, or set {} to the private key's PEM (docs/publishing-and-signing.md's `Signing keys` says where it is kept)",
                    cosign::KEY_ENV
                ),
            },
        };
        match self
            .password
            .clone()
            .ok_or(())
            .or_else(|()| var(cosign::PASSWORD_ENV))
        {
            Ok(password) => {
                secrets.insert(cosign::PASSWORD_ENV.to_string(), password);
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("{} is not valid UTF-8", cosign::PASSWORD_ENV)
            }
            Err(_) => bail!(
                "{} is not set: the signing key's password comes only from it (set it empty for a key without one)",
                cosign::PASSWORD_ENV
            ),
        }
        Ok((
            Signing {
                generation: cosign.generation,
                key,
                tlog: !self.no_tlog,
            },
            secrets,
        ))
    }
}

/// An image named by digest, and the tag written beside it (which must
/// still point at that digest).
#[derive(Debug, Clone)]
pub struct Pinned {
    pub image: ImageRef,
    pub tag: Option<String>,
}

/// `reference` as an image pinned by digest: a tag alone is refused.
pub fn by_digest(reference: &str) -> Result<Pinned> {
    let parsed = ImageRef::parse(reference)?;
    if parsed.digest.is_none() {
        bail!(
            "`{reference}` names a tag: signing or verifying a tag acts on whatever it points to now; name the image by digest, `{}@sha256:<hex>` (`cargo xtask push` prints it)",
            ImageRef {
                tag: None,
                ..parsed.clone()
            }
        );
    }
    Ok(Pinned {
        tag: parsed.tag.clone(),
        image: ImageRef {
            tag: None,
            ..parsed
        },
    })
}

/// Whether cosign only reads (verify) or writes too (sign, attest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Before cosign runs: the registry serves the image by that digest (and a
/// tag written beside it points there), and cosign gets a docker config with
/// only what may reach that registry. A read uses the docker config's entry
/// for that host alone, never the environment's push credentials.
pub fn reach(pinned: &Pinned, access: Access) -> Result<ScopedDockerConfig> {
    let image = &pinned.image;
    let digest = image.digest.clone().unwrap_or_default();
    crate::oci::registry::block_on(async {
        let source = match access {
            Access::Write => CredentialSource::from_environment(),
            Access::Read => CredentialSource::docker_config_only(),
        };
        let registry = Registry::connect(image.api_host(), Role::Target, &source).await?;
        match registry.manifest_digest(image).await? {
            Some(served) if served == digest => {}
            Some(served) => return fail(format!("{image}: the registry serves {served} for it")),
            None => {
                return fail(format!(
                    "{image}: the registry has no such manifest (push it first: `cargo xtask push`)"
                ))
            }
        }
        if let Some(tag) = &pinned.tag {
            let tagged = ImageRef {
                tag: Some(tag.clone()),
                digest: None,
                ..image.clone()
            };
            let at = registry.manifest_digest(&tagged).await?;
            if at.as_deref() != Some(digest.as_str()) {
                return fail(format!(
                    "{tagged} points at {}, not {digest}: the tag moved; name the digest alone, or the tag's current one",
                    at.as_deref().unwrap_or("nothing")
                ));
            }
        }
        let auth = registry
            .child_auth(&image.api_repository(), access == Access::Write)
            .await?;
        ScopedDockerConfig::new(image.api_host(), &auth)
    })?
}

/// Run cosign with `config` as its docker config and `secrets` in its
/// environment.
pub fn run_cosign(
    mut command: Cmd,
    config: &ScopedDockerConfig,
    secrets: &Env,
) -> Result<std::process::Output> {
    config.apply(&mut command);
    for (name, value) in secrets {
        command.secret_env(name, value.clone());
    }
    command.output()
}

/// The installed cosign's generation and version, checked first (exit 2
/// when missing).
pub fn installed_cosign() -> Result<cosign::Installed> {
    let env = Env::new();
    tools::require(&[Tool::Cosign], &env, "signing")?;
    Generation::detect(&env)
}

/// Sign an image, by digest, with the project's key.
#[derive(Debug, Args)]
pub struct Sign {
    /// `registry/repository@sha256:<hex>` (a tag is refused).
    #[arg(value_name = "REF@sha256:…")]
    pub reference: String,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

/// What `sign` and `attest` did, for `--json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Signed {
    pub reference: String,
    /// Where cosign keeps it (`cosign triangulate`).
    pub stored_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    pub tlog: bool,
}

impl Sign {
    pub fn run(self, _root: &Path) -> Result<()> {
        let pinned = by_digest(&self.reference)?;
        let (signing, secrets) = self.key.signing(installed_cosign()?)?;
        let started = Instant::now();
        let signed = sign(&pinned, &signing, &secrets)?;
        crate::ui::say!(
            "signed {} in {:.1}s; signature stored at {}{}",
            signed.reference,
            started.elapsed().as_secs_f64(),
            signed.stored_at,
            if signing.tlog {
                ""
            } else {
                " (no transparency log)"
            }
        );
        self.json.write("sign", &[], &signed)
    }
}

/// cosign's failure to sign or attest, with the likely fix where its words
/// say what went wrong.
fn signing_failed(error: anyhow::Error, what: String) -> anyhow::Error {
    let text = format!("{error:#}");
    if text.contains("decrypt") {
        return error.context(format!(
            "{what}: the key did not open: is {} its password?",
            cosign::PASSWORD_ENV
        ));
    }
    error.context(what)
}

/// Sign `pinned` (the registry must serve it).
pub fn sign(pinned: &Pinned, signing: &Signing, secrets: &Env) -> Result<Signed> {
    let text = pinned.image.to_string();
    let config = reach(pinned, Access::Write)?;
    run_cosign(signing.sign(&text), &config, secrets)
        .map_err(|e| signing_failed(e, format!("signing {text}")))?;
    Ok(Signed {
        stored_at: stored_at(&text, &config, false)?,
        reference: text,
        predicate_type: None,
        tlog: signing.tlog,
    })
}

/// Attest an SBOM or the image's SLSA provenance to an image, by digest, with the project's key.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("predicate").required(true).args(["sbom", "provenance"])))]
pub struct Attest {
    /// `registry/repository@sha256:<hex>` (a tag is refused).
    #[arg(value_name = "REF@sha256:…")]
    pub reference: String,
    /// The SBOM to attest (out/<image>/sbom.spdx.json or sbom.cdx.json).
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// The provenance to attest (out/<image>/provenance.json, `cargo xtask
    /// provenance`): its subject must be the digest; attested with
    /// --type slsaprovenance1.
    #[arg(long, value_name = "FILE", conflicts_with = "kind")]
    pub provenance: Option<PathBuf>,
    /// What the SBOM is.
    #[arg(long = "type", value_enum, default_value_t = PredicateKind::Spdxjson)]
    pub kind: PredicateKind,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub json: JsonArg,
}

impl Attest {
    pub fn run(self, _root: &Path) -> Result<()> {
        let pinned = by_digest(&self.reference)?;
        let (file, kind) = match (&self.sbom, &self.provenance) {
            (_, Some(provenance)) => {
                check_provenance_subject(provenance, &pinned)?;
                (provenance.clone(), PredicateKind::Slsaprovenance1)
            }
            (Some(sbom), None) => {
                if self.kind == PredicateKind::Slsaprovenance1 {
                    bail!(
                        "--type slsaprovenance1 attests a provenance: pass it as --provenance FILE"
                    );
                }
                check_sbom(sbom, self.kind)?;
                (sbom.clone(), self.kind)
            }
            (None, None) => bail!("name what to attest: --sbom FILE or --provenance FILE"),
        };
        let (signing, secrets) = self.key.signing(installed_cosign()?)?;
        let signed = attest(&pinned, &file, kind, &signing, &secrets)?;
        crate::ui::say!(
            "attested {} ({}) to {}; stored at {}",
            file.display(),
            kind.predicate_type(),
            signed.reference,
            signed.stored_at
        );
        self.json.write("attest", &[], &signed)
    }
}

/// A provenance file that is ours and whose subject is `pinned`'s digest
/// (attesting one image's provenance to another would be a lie we sign).
pub fn check_provenance_subject(
    file: &Path,
    pinned: &Pinned,
) -> Result<crate::commands::provenance::plan::Statement> {
    let statement = crate::commands::provenance::read(file)?;
    let digest = pinned.image.digest.clone().unwrap_or_default();
    let subject = statement.subject_digest().unwrap_or_default();
    if subject != digest {
        return fail(format!(
            "{} is the provenance of {subject}, not of {}: make the one of this image's build (`cargo xtask provenance {}`)",
            file.display(),
            pinned.image,
            statement.predicate.build_definition.external_parameters.image
        ));
    }
    Ok(statement)
}

/// What an attested predicate must equal: the SBOM file's JSON, or the
/// predicate of a provenance statement.
pub fn expected_predicate(path: &Path, kind: PredicateKind) -> Result<serde_json::Value> {
    match kind {
        PredicateKind::Slsaprovenance1 => Ok(serde_json::to_value(
            crate::commands::provenance::read(path)?.predicate,
        )?),
        _ => check_sbom(path, kind),
    }
}

/// An SBOM file that is JSON and says it is what `kind` claims.
pub fn check_sbom(path: &Path, kind: PredicateKind) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let fits = match kind {
        PredicateKind::Spdxjson => value.get("spdxVersion").is_some(),
        PredicateKind::Cyclonedx => {
            value.get("bomFormat").and_then(|f| f.as_str()) == Some("CycloneDX")
        }
        PredicateKind::Slsaprovenance1 => false,
    };
    if !fits {
        bail!(
            "{} is not a {} document: pass the matching --type (spdxjson for sbom.spdx.json, cyclonedx for sbom.cdx.json)",
            path.display(),
            kind.name()
        );
    }
    Ok(value)
}

/// Attest `sbom` (an SBOM, or a provenance statement whose predicate is
/// attested) to `pinned`, replacing an earlier attestation of its type (one
/// per type and digest, never a pile to choose from).
pub fn attest(
    pinned: &Pinned,
    sbom: &Path,
    kind: PredicateKind,
    signing: &Signing,
    secrets: &Env,
) -> Result<Signed> {
    let text = pinned.image.to_string();
    // cosign takes the predicate alone and writes the statement around it.
    let scratch = tempfile::tempdir().context("a scratch folder for the predicate")?;
    let predicate = if kind == PredicateKind::Slsaprovenance1 {
        let statement = check_provenance_subject(sbom, pinned)?;
        let path = scratch.path().join("provenance.predicate.json");
        std::fs::write(&path, serde_json::to_vec(&statement.predicate)?)
            .with_context(|| format!("writing {}", path.display()))?;
        path
    } else {
        sbom.to_path_buf()
    };
    let config = reach(pinned, Access::Write)?;
    run_cosign(signing.attest(&text, &predicate, kind), &config, secrets)
        .map_err(|e| signing_failed(e, format!("attesting {} to {text}", sbom.display())))?;
    Ok(Signed {
        stored_at: stored_at(&text, &config, true)?,
        reference: text,
        predicate_type: Some(kind.predicate_type().to_string()),
        tlog: signing.tlog,
    })
}

/// Where cosign keeps an image's signatures or attestations.
fn stored_at(reference: &str, config: &ScopedDockerConfig, attestations: bool) -> Result<String> {
    let output = run_cosign(
        cosign::triangulate(reference, attestations),
        config,
        &Env::new(),
    )?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Verify an image's signature (and its SBOM and provenance attestations) against the project's public key.
#[derive(Debug, Args)]
pub struct Verify {
    /// `registry/repository@sha256:<hex>` (a tag is refused).
    #[arg(value_name = "REF@sha256:…")]
    pub reference: String,
    /// Verify the attestations too.
    #[arg(long)]
    pub attestations: bool,
    /// Which attestations (default: spdxjson); a slsaprovenance1 one must be
    /// of this digest and name exactly the StageX pins of its image's
    /// Containerfile in this checkout.
    #[arg(long = "type", value_enum, requires = "attestations")]
    pub kinds: Vec<PredicateKind>,
    /// The SBOM the attested predicate must equal (for the first SBOM --type).
    #[arg(long, value_name = "FILE", requires = "attestations")]
    pub sbom: Option<PathBuf>,
    /// The provenance (out/<image>/provenance.json) the attested one must
    /// equal; implies --type slsaprovenance1.
    #[arg(long, value_name = "FILE", requires = "attestations")]
    pub provenance: Option<PathBuf>,
    /// The public key (default: cosign.pub at the root).
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Do not require transparency log entries (images signed with --no-tlog).
    #[arg(long)]
    pub no_tlog: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

impl Verify {
    pub fn run(self, root: &Path) -> Result<()> {
        let pinned = by_digest(&self.reference)?;
        let public_key = self.key.clone().unwrap_or_else(|| root.join(PUBLIC_KEY));
        let generation = installed_cosign()?.generation;
        let verifying = verifying(generation, &public_key, !self.no_tlog)?;
        let expected = self.expected_attestations();
        let catalog = crate::model::catalog::Catalog::load(root)?;
        // Anyone's check: the docker config's entry for that host, if any.
        let verified = verify(&pinned, &verifying, &expected, Access::Read, Some(&catalog))?;
        crate::ui::say_more!("{}", verified.render());
        self.json.write("verify", &[], &verified)
    }
}

impl Verify {
    /// The attestations to verify, each with the file its predicate must
    /// equal: the kinds asked for (an SPDX SBOM when `--attestations` names
    /// none), provenance added when its file is given; `--sbom` is compared
    /// with the first SBOM kind.
    fn expected_attestations(&self) -> Vec<(PredicateKind, Option<&Path>)> {
        let mut kinds = self.kinds.clone();
        if self.attestations && kinds.is_empty() {
            kinds.push(PredicateKind::Spdxjson);
        }
        if self.provenance.is_some() && !kinds.contains(&PredicateKind::Slsaprovenance1) {
            kinds.push(PredicateKind::Slsaprovenance1);
        }
        let first_sbom = kinds
            .iter()
            .position(|k| *k != PredicateKind::Slsaprovenance1);
        kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| match kind {
                PredicateKind::Slsaprovenance1 => (*kind, self.provenance.as_deref()),
                _ if Some(i) == first_sbom => (*kind, self.sbom.as_deref()),
                _ => (*kind, None),
            })
            .collect()
    }
}

/// How to verify with `public_key`, which must be there.
pub fn verifying(generation: Generation, public_key: &Path, tlog: bool) -> Result<Verifying> {
    if !public_key.is_file() {
        return fail(format!(
            "no public key at {}: the project's key pair is made with `cargo xtask signing-key init`",
            public_key.display()
        ));
    }
    Ok(Verifying {
        generation,
        public_key: public_key.to_path_buf(),
        tlog,
    })
}

/// cosign refusing to verify, as a failed check, with the likely fix when
/// it complains about the transparency log.
fn not_verified(what: String, error: anyhow::Error, verifying: &Verifying) -> anyhow::Error {
    let text = format!("{error:#}");
    let hint = if verifying.tlog
        && [
            "tlog",
            "rekor",
            "Rekor",
            "transparency",
            "TUF",
            "trusted root",
        ]
        .iter()
        .any(|word| text.contains(word))
    {
        " (signed with --no-tlog? then verify with --no-tlog)"
    } else {
        ""
    };
    crate::error::Failure(format!("{what}{hint}: {text}")).into()
}

/// Verify the signature of `pinned`, and each attestation kind in
/// `expected` (its predicate equal to the SBOM file when one is named), with
/// the credentials `access` allows (publish checks what it pushed with the
/// credentials it pushed with). Any failure is a failed check (exit 1)
/// naming what did not hold; a registry that cannot be reached is not (exit 2).
pub fn verify(
    pinned: &Pinned,
    verifying: &Verifying,
    expected: &[(PredicateKind, Option<&Path>)],
    access: Access,
    catalog: Option<&crate::model::catalog::Catalog>,
) -> Result<Verified> {
    let text = pinned.image.to_string();
    let digest = pinned.image.digest.clone().unwrap_or_default();
    let key_bytes = std::fs::read(&verifying.public_key)
        .with_context(|| format!("reading {}", verifying.public_key.display()))?;
    let config = reach(pinned, access)?;
    let mut result = Verified {
        reference: text.clone(),
        digest: digest.clone(),
        public_key: verifying.public_key.display().to_string(),
        key_sha256: verified::key_fingerprint(&key_bytes)?,
        signatures: 0,
        attestations: Vec::new(),
        tlog: verifying.tlog,
    };
    let output = run_cosign(verifying.verify(&text), &config, &Env::new()).map_err(|error| {
        not_verified(
            format!(
                "{text}: no signature verifies against {}",
                verifying.public_key.display()
            ),
            error,
            verifying,
        )
    })?;
    result.signatures = match verified::signatures(&output.stdout, &digest) {
        Ok(count) => count,
        Err(error) => return fail(format!("{text}: {error:#}")),
    };
    for (kind, sbom) in expected {
        let output = run_cosign(
            verifying.verify_attestation(&text, *kind),
            &config,
            &Env::new(),
        )
        .map_err(|error| {
            not_verified(
                format!(
                    "{text}: no {} attestation verifies against {}",
                    kind.name(),
                    verifying.public_key.display()
                ),
                error,
                verifying,
            )
        })?;
        let expected_sbom = match sbom {
            Some(path) => Some((path.display().to_string(), expected_predicate(path, *kind)?)),
            None => None,
        };
        let mut attestation =
            match verified::attestation(&output.stdout, &digest, *kind, expected_sbom.as_ref()) {
                Ok(attestation) => attestation,
                Err(error) => return fail(format!("{text}: {error:#}")),
            };
        if *kind == PredicateKind::Slsaprovenance1 {
            match check_provenance(&attestation.predicate, catalog) {
                Ok(checked) => attestation.provenance = Some(checked),
                Err(error) => {
                    return fail(format!("{text}: the provenance attestation: {error:#}"))
                }
            }
        }
        result.attestations.push(attestation);
    }
    Ok(result)
}

/// An attested provenance predicate (its statement's subject already
/// checked to be the digest), read strictly as ours: our build type, and,
/// with a `catalog`, naming exactly the StageX digests its image's
/// Containerfile pins there (without one, e.g. an earlier release's, its
/// pins are reported, not compared).
pub fn check_provenance(
    predicate: &serde_json::Value,
    catalog: Option<&crate::model::catalog::Catalog>,
) -> Result<String> {
    use crate::commands::provenance::{self, plan};
    if serde_json::to_vec(predicate)?.len() > provenance::MAX_BYTES {
        bail!(
            "its predicate is larger than {} bytes: not a provenance of ours",
            provenance::MAX_BYTES
        );
    }
    let predicate: plan::Provenance = serde_json::from_value(predicate.clone())
        .context("its predicate is not our SLSA provenance")?;
    let build = &predicate.build_definition;
    if build.build_type != crate::model::settings::PROVENANCE_BUILD_TYPE {
        bail!(
            "its buildType is `{}`, not ours ({})",
            build.build_type,
            crate::model::settings::PROVENANCE_BUILD_TYPE
        );
    }
    let image = &build.external_parameters.image;
    let named: std::collections::BTreeSet<String> = build
        .resolved_dependencies
        .iter()
        .filter(|d| d.kind() == plan::KIND_STAGEX)
        .filter_map(|d| d.digest.get("sha256"))
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    let Some(catalog) = catalog else {
        return Ok(format!(
            "of `{image}`, {} StageX dependencies (not compared with a checkout)",
            named.len()
        ));
    };
    let pinned = provenance::pinned_digests(catalog, image)?;
    if let Err(why) = plan::compare_pins(&named, &pinned) {
        bail!(
            "its StageX dependencies are not the pins of {}: {why}",
            build.external_parameters.containerfile.path
        );
    }
    Ok(format!(
        "of `{image}`, its {} StageX dependencies the pins of {}",
        named.len(),
        build.external_parameters.containerfile.path
    ))
}

/// The tag beside an image where cosign's legacy format keeps its
/// signatures (`sig`) or attestations (`att`): `sha256-<hex>.<suffix>`.
pub fn legacy_tag(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// One layer of a legacy signature or attestation manifest.
#[derive(serde::Deserialize)]
struct LegacyLayer {
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct LegacyManifest {
    layers: Vec<LegacyLayer>,
}

/// The annotation cosign puts on every legacy signature layer.
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Where Kyverno's `type: Cosign` verifier reads them, the signature and an
/// attestation of each predicate type are there: the tags
/// `sha256-<hex>.sig` and `.att` in the image's own repository. cosign's own
/// verify finds signatures wherever it stored them (another repository,
/// OCI referrers), so it cannot tell; this can. Returns the two tags.
pub fn check_where_kyverno_reads(pinned: &Pinned, predicate_types: &[&str]) -> Result<[String; 2]> {
    let image = &pinned.image;
    let digest = image.digest.clone().unwrap_or_default();
    let tag = |suffix: &str| ImageRef {
        tag: Some(legacy_tag(&digest, suffix)),
        digest: None,
        ..image.clone()
    };
    let (signatures, attestations) = (tag("sig"), tag("att"));
    let why = "Kyverno's `type: Cosign` verifier reads only these tags, so the policy would refuse the image (did cosign store Sigstore bundles as OCI referrers, or is COSIGN_REPOSITORY set?)";
    crate::oci::registry::block_on(async {
        let registry = Registry::connect(
            image.api_host(),
            Role::Target,
            &CredentialSource::from_environment(),
        )
        .await?;
        let read = |reference: ImageRef| {
            let registry = &registry;
            async move {
                if registry.manifest_digest(&reference).await?.is_none() {
                    return Ok::<_, anyhow::Error>(None);
                }
                let bytes = registry.pull_manifest(&reference).await?;
                let manifest: LegacyManifest = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{reference} is not a cosign signature manifest"))?;
                Ok(Some(manifest))
            }
        };
        let signed = read(signatures.clone()).await?.is_some_and(|manifest| {
            manifest
                .layers
                .iter()
                .any(|layer| layer.annotations.contains_key(SIGNATURE_ANNOTATION))
        });
        if !signed {
            return fail(format!("{image}: no signature at {signatures}: {why}"));
        }
        let attested: Vec<String> = read(attestations.clone())
            .await?
            .map(|manifest| {
                manifest
                    .layers
                    .iter()
                    .filter_map(|layer| layer.annotations.get("predicateType").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let missing: Vec<&str> = predicate_types
            .iter()
            .filter(|kind| !attested.iter().any(|found| found == *kind))
            .copied()
            .collect();
        if !missing.is_empty() {
            return fail(format!(
                "{image}: no {} attestation at {attestations}: {why}",
                missing.join(", ")
            ));
        }
        Ok([signatures.to_string(), attestations.to_string()])
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the version check of KeyArgs::signing: cosign 3.0.0 to 3.0.2
    /// would upload to the public transparency log despite
    /// `--tlog-upload=false`, so `--no-tlog` with them is refused before any
    /// key is read; 3.0.3, and those versions with the log wanted, are not.
    #[test]
    fn no_tlog_is_refused_with_a_cosign_that_ignores_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("cosign.key");
        std::fs::write(&key, "not read here").unwrap();
        let args = |no_tlog| KeyArgs {
            key: Some(key.clone()),
            no_tlog,
            password: Some(String::new()),
        };
        let cosign = |version| cosign::Installed {
            generation: Generation::SigningConfig,
            version: Some(version),
        };
        for patch in 0..=2 {
            let error = args(true).signing(cosign((3, 0, patch))).err().unwrap();
            assert_eq!(
                error.to_string(),
                format!("cosign 3.0.{patch} ignores --tlog-upload=false and would upload to the public transparency log (sigstore/cosign#4503): install cosign 3.0.3 or newer, or 2.x")
            );
        }
        let (signing, _) = args(true).signing(cosign((3, 0, 3))).unwrap();
        assert!(!signing.tlog);
        let (signing, _) = args(false).signing(cosign((3, 0, 1))).unwrap();
        assert!(signing.tlog);
    }

    /// The key from COSIGN_KEY only when it holds a PEM block; anything else
    /// there, or nothing, or bytes that are not UTF-8, is refused, named; the
    /// password only from COSIGN_PASSWORD (empty allowed), and both reach
    /// cosign's environment and nowhere else.
    #[test]
    fn the_key_and_its_password_come_from_the_environment_strictly() {
        use std::env::VarError;
        let pem = "\n -----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n";
        let cosign = cosign::Installed {
            generation: Generation::SigningConfig,
            version: Some((3, 0, 3)),
        };
        let sign = |key: Result<&str, VarError>, password: Result<&str, VarError>| {
            let lookup = move |name: &str| -> Result<String, VarError> {
                let value = if name == cosign::KEY_ENV {
                    key.clone()
                } else if name == cosign::PASSWORD_ENV {
                    password.clone()
                } else {
                    Err(VarError::NotPresent)
                };
                value.map(str::to_string)
            };
            KeyArgs::default().signing_from(cosign, &lookup)
        };
        let (signing, secrets) = sign(Ok(pem), Ok("")).unwrap();
        assert!(matches!(signing.key, PrivateKey::Environment));
        assert_eq!(secrets.get(cosign::KEY_ENV).map(String::as_str), Some(pem));
        assert_eq!(
            secrets.get(cosign::PASSWORD_ENV).map(String::as_str),
            Some("")
        );
        let not_unicode = || Err(VarError::NotUnicode(std::ffi::OsString::from("x")));
        for (key, password, expected) in [
            (
                Ok("a path/cosign.key"),
                Ok(""),
                "COSIGN_KEY holds no PEM key",
            ),
            (Ok("  \n"), Ok(""), "no signing key: pass --key PATH"),
            (
                Err(VarError::NotPresent),
                Ok(""),
                "no signing key: pass --key PATH",
            ),
            (not_unicode(), Ok(""), "COSIGN_KEY is not valid UTF-8"),
            (
                Ok(pem),
                Err(VarError::NotPresent),
                "COSIGN_PASSWORD is not set",
            ),
            (Ok(pem), not_unicode(), "COSIGN_PASSWORD is not valid UTF-8"),
        ] {
            let error = sign(key, password).err().unwrap().to_string();
            assert!(error.starts_with(expected), "{expected}: {error}");
        }
    }

    /// Only a reference by digest is signed or verified; the tag written
    /// beside it is kept apart, and the refusal of a tag names the form.
    #[test]
    fn only_references_by_digest_are_taken() {
        let hex = "b".repeat(64);
        let pinned = by_digest(&format!("registry.example/x:1@sha256:{hex}")).unwrap();
        assert_eq!(pinned.tag.as_deref(), Some("1"));
        assert_eq!(pinned.image.tag, None);
        assert_eq!(pinned.image.digest, Some(format!("sha256:{hex}")));
        let error = by_digest("registry.example/x:1").err().unwrap().to_string();
        assert!(
            error.starts_with("`registry.example/x:1` names a tag: ")
                && error.contains("name the image by digest, `registry.example/x@sha256:<hex>`"),
            "{error}"
        );
    }

    /// Before cosign runs, the registry must serve the digest, and a tag
    /// written beside it must still point there.
    #[test]
    fn reach_refuses_a_missing_or_other_manifest_and_a_moved_tag() {
        use crate::oci::stub::{answer, serve};
        let digest = format!("sha256:{}", "c".repeat(64));
        let other = format!("sha256:{}", "d".repeat(64));
        let (ours, theirs) = (digest.clone(), other.clone());
        let stub = serve(move |asked, _| {
            let served = |digest: &str| answer("200 OK", &[("docker-content-digest", digest)], "");
            match asked.target.as_str() {
                "/v2/" => answer("200 OK", &[], ""),
                "/v2/x/manifests/good" => served(&ours),
                "/v2/x/manifests/moved" => served(&theirs),
                target if target == format!("/v2/x/manifests/{ours}") => served(&ours),
                target if target == format!("/v2/x/manifests/{theirs}") => served(&ours),
                _ => answer("404 Not Found", &[], ""),
            }
        });
        let host = stub.host.clone();
        let pinned =
            |name: &str, digest: &str| by_digest(&format!("{host}/{name}@{digest}")).unwrap();
        reach(&pinned("x:good", &digest), Access::Read).unwrap();
        reach(&pinned("x", &digest), Access::Read).unwrap();
        let error = |pinned: Pinned| reach(&pinned, Access::Read).err().unwrap().to_string();
        let moved = error(pinned("x:moved", &digest));
        assert!(
            moved.ends_with(&format!("points at {other}, not {digest}: the tag moved; name the digest alone, or the tag's current one")),
            "{moved}"
        );
        let gone = error(pinned("x:gone", &digest));
        assert!(gone.contains("points at nothing"), "{gone}");
        let missing = error(pinned("y", &digest));
        assert!(
            missing
                .ends_with("the registry has no such manifest (push it first: `cargo xtask push`)"),
            "{missing}"
        );
        let lying = error(pinned("x", &other));
        assert!(
            lying.ends_with(&format!("the registry serves {digest} for it")),
            "{lying}"
        );
    }

    /// `--attestations` alone checks an SPDX SBOM; provenance is added when
    /// its file is given; `--sbom` is compared with the first SBOM kind
    /// only.
    #[test]
    fn verify_expects_the_attestations_asked_for_with_their_files() {
        let (sbom, provenance) = (Path::new("sbom.cdx.json"), Path::new("p.json"));
        let verify = |attestations: bool, kinds: Vec<PredicateKind>, with_files: bool| Verify {
            reference: String::new(),
            attestations,
            kinds,
            sbom: with_files.then(|| sbom.to_path_buf()),
            provenance: with_files.then(|| provenance.to_path_buf()),
            key: None,
            no_tlog: false,
            json: Default::default(),
        };
        use PredicateKind::{Cyclonedx, Slsaprovenance1, Spdxjson};
        assert!(verify(false, vec![], false)
            .expected_attestations()
            .is_empty());
        assert_eq!(
            verify(true, vec![], false).expected_attestations(),
            [(Spdxjson, None)]
        );
        assert_eq!(
            verify(true, vec![], true).expected_attestations(),
            [(Spdxjson, Some(sbom)), (Slsaprovenance1, Some(provenance))]
        );
        assert_eq!(
            verify(true, vec![Slsaprovenance1, Cyclonedx, Spdxjson], true).expected_attestations(),
            [
                (Slsaprovenance1, Some(provenance)),
                (Cyclonedx, Some(sbom)),
                (Spdxjson, None)
            ]
        );
    }

    /// A missing public key is named with the command that makes one; a
    /// cosign complaint about the log gets the `--no-tlog` hint only when
    /// the log was wanted.
    #[test]
    fn verifying_needs_the_key_and_log_failures_get_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("cosign.pub");
        let error = verifying(Generation::SigningConfig, &key, true)
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .ends_with("`cargo xtask signing-key init`"),
            "{error}"
        );
        std::fs::write(&key, "key").unwrap();
        let with_log = verifying(Generation::SigningConfig, &key, true).unwrap();
        let without = verifying(Generation::SigningConfig, &key, false).unwrap();
        let complaint = || anyhow::anyhow!("no matching tlog entries found");
        assert_eq!(
            not_verified("x".into(), complaint(), &with_log).to_string(),
            "x (signed with --no-tlog? then verify with --no-tlog): no matching tlog entries found"
        );
        assert_eq!(
            not_verified("x".into(), complaint(), &without).to_string(),
            "x: no matching tlog entries found"
        );
        assert_eq!(
            not_verified("x".into(), anyhow::anyhow!("wrong key"), &with_log).to_string(),
            "x: wrong key"
        );
    }

    /// A provenance is attested only to the image it is the provenance of;
    /// what is attested is its predicate.
    #[test]
    fn a_provenance_is_attested_only_to_its_own_image() {
        use crate::commands::provenance::plan::{render, statement};
        let mut record = crate::records::build::BuildRecord::example("base", &"a".repeat(64));
        record.manifest_digest = format!("sha256:{}", "1".repeat(64));
        record.builder = Some(crate::records::build::BuilderVersions {
            engine: "28.5.2".into(),
            buildx: "0.13.1".into(),
        });
        record.checkout_commit = Some("5".repeat(40));
        let statement = statement(&record, "0.1.0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("provenance.json");
        std::fs::write(&file, render(&statement).unwrap()).unwrap();
        let ours = by_digest(&format!("registry.example/base@{}", record.manifest_digest)).unwrap();
        assert_eq!(check_provenance_subject(&file, &ours).unwrap(), statement);
        assert_eq!(
            expected_predicate(&file, PredicateKind::Slsaprovenance1).unwrap(),
            serde_json::to_value(&statement.predicate).unwrap()
        );
        let other = format!("registry.example/base@sha256:{}", "2".repeat(64));
        let error = check_provenance_subject(&file, &by_digest(&other).unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains(&format!(
                "is the provenance of {}, not of {other}",
                record.manifest_digest
            )),
            "{error}"
        );
    }

    /// An attested provenance is read strictly as ours: our build type,
    /// within the size limit, and naming exactly the StageX pins of its
    /// image in the checkout (reported, not compared, without one).
    #[test]
    fn an_attested_provenance_is_ours_and_names_the_checkouts_pins() {
        use crate::commands::provenance::{self, plan};
        let catalog = crate::model::catalog::Catalog::load(&crate::files::project_root()).unwrap();
        let pins = provenance::pinned_digests(&catalog, "base").unwrap();
        assert!(pins.len() > 1, "{pins:?}");
        let mut record = crate::records::build::BuildRecord::example("base", &"a".repeat(64));
        record.manifest_digest = format!("sha256:{}", "1".repeat(64));
        record.builder = Some(crate::records::build::BuilderVersions {
            engine: "28.5.2".into(),
            buildx: "0.13.1".into(),
        });
        record.stagex_inputs = pins
            .iter()
            .enumerate()
            .map(|(i, digest)| format!("stagex/input-{i}:1@{digest}"))
            .collect();
        let predicate = |record: &crate::records::build::BuildRecord| {
            serde_json::to_value(plan::statement(record, "0.1.0").unwrap().predicate).unwrap()
        };
        let ours = predicate(&record);
        let checked = check_provenance(&ours, Some(&catalog)).unwrap();
        assert!(
            checked.starts_with(&format!(
                "of `base`, its {} StageX dependencies the pins of",
                pins.len()
            )),
            "{checked}"
        );
        assert_eq!(
            check_provenance(&ours, None).unwrap(),
            format!(
                "of `base`, {} StageX dependencies (not compared with a checkout)",
                pins.len()
            )
        );
        let mut fewer = record.clone();
        fewer.stagex_inputs.pop();
        let error = check_provenance(&predicate(&fewer), Some(&catalog)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("its StageX dependencies are not the pins of"),
            "{error}"
        );
        let mut foreign = ours.clone();
        foreign["buildDefinition"]["buildType"] = "https://example.com/other".into();
        let error = check_provenance(&foreign, None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("its buildType is `https://example.com/other`"),
            "{error}"
        );
        let mut padded = ours.clone();
        padded["runDetails"]["padding"] = "x".repeat(provenance::MAX_BYTES).into();
        let error = check_provenance(&padded, None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("its predicate is larger than 1048576 bytes"),
            "{error}"
        );
    }

    /// Kyverno reads the legacy tags only: a signature layer at `.sig` and
    /// an attestation of each predicate type at `.att`, each missing one
    /// named.
    #[test]
    fn signatures_and_attestations_must_be_where_kyverno_reads() {
        use crate::oci::stub::{answer, serve};
        let digest = format!("sha256:{}", "e".repeat(64));
        let hex = "e".repeat(64);
        let manifest = |annotations: &str| {
            format!(r#"{{"schemaVersion":2,"layers":[{{"annotations":{{{annotations}}}}}]}}"#)
        };
        let (signature, attestation) = (
            manifest(&format!(r#""{SIGNATURE_ANNOTATION}":"MEUC""#)),
            manifest(r#""predicateType":"https://spdx.dev/Document""#),
        );
        let stub = serve(move |asked, _| {
            let (image, tag) = match asked.target.strip_prefix("/v2/") {
                Some("") => return answer("200 OK", &[], ""),
                Some(rest) => rest.split_once("/manifests/").unwrap_or((rest, "")),
                None => ("", ""),
            };
            let body = match (image, tag.rsplit('.').next()) {
                ("signed", Some("sig")) | ("sig-only", Some("sig")) => signature.clone(),
                ("signed", Some("att")) => attestation.clone(),
                ("unannotated", Some("sig")) => manifest(""),
                _ => return answer("404 Not Found", &[], ""),
            };
            let served = format!("sha256:{}", crate::hash::hex_sha256(body.as_bytes()));
            match asked.method.as_str() {
                "HEAD" => answer("200 OK", &[("docker-content-digest", &served)], ""),
                _ => answer("200 OK", &[], &body),
            }
        });
        let pinned = |name: &str| by_digest(&format!("{}/{name}@{digest}", stub.host)).unwrap();
        let spdx = ["https://spdx.dev/Document"];
        let tags = check_where_kyverno_reads(&pinned("signed"), &spdx).unwrap();
        assert_eq!(
            tags,
            [
                format!("{}/signed:sha256-{hex}.sig", stub.host),
                format!("{}/signed:sha256-{hex}.att", stub.host)
            ]
        );
        check_where_kyverno_reads(&pinned("sig-only"), &[]).unwrap();
        for (name, expected) in [
            ("unsigned", "no signature at"),
            ("unannotated", "no signature at"),
            ("sig-only", "no https://spdx.dev/Document attestation at"),
        ] {
            let error = check_where_kyverno_reads(&pinned(name), &spdx)
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains(expected), "{name}: {error}");
            assert!(error.ends_with("is COSIGN_REPOSITORY set?)"), "{error}");
        }
    }

    #[test]
    fn legacy_tags_sit_beside_the_digest() {
        assert_eq!(legacy_tag("sha256:abc", "sig"), "sha256-abc.sig");
        assert_eq!(legacy_tag("sha256:abc", "att"), "sha256-abc.att");
    }

    /// An SBOM must say it is the kind it is attested as; what is attested
    /// is its JSON as it is.
    #[test]
    fn an_sbom_is_attested_only_as_its_own_kind() {
        let dir = tempfile::tempdir().unwrap();
        let spdx = dir.path().join("sbom.spdx.json");
        std::fs::write(&spdx, r#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
        let cdx = dir.path().join("sbom.cdx.json");
        std::fs::write(&cdx, r#"{"bomFormat":"CycloneDX"}"#).unwrap();
        let other = dir.path().join("other.json");
        std::fs::write(&other, r#"{"bomFormat":"Other"}"#).unwrap();
        assert_eq!(
            expected_predicate(&spdx, PredicateKind::Spdxjson).unwrap(),
            serde_json::json!({"spdxVersion": "SPDX-2.3"})
        );
        assert_eq!(
            check_sbom(&cdx, PredicateKind::Cyclonedx).unwrap()["bomFormat"],
            "CycloneDX"
        );
        for (path, kind) in [
            (&spdx, PredicateKind::Cyclonedx),
            (&cdx, PredicateKind::Spdxjson),
            (&other, PredicateKind::Cyclonedx),
            (&spdx, PredicateKind::Slsaprovenance1),
        ] {
            let error = check_sbom(path, kind).err().unwrap().to_string();
            assert!(
                error.contains(&format!("is not a {} document", kind.name())),
                "{error}"
            );
        }
    }
}
