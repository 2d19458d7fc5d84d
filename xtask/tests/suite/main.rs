//! The integration tests, one binary: each file of this folder is a module.
//! One binary links once, and prepares the stand-in StageX images once for
//! every test that needs them (`common::demo_checkout`), where a binary per
//! file linked nineteen times and prepared them in each.

mod act_runs;
mod archives;
mod common;
mod compare;
mod engine;
mod gates;
mod hostile;
mod k8s;
mod keys;
mod mirror;
#[path = "common/names.rs"]
mod names;
mod pins;
mod pipeline;
mod provenance;
mod publish_order;
mod repo_checks;
mod runtime;
mod sbom;
mod services;
mod signatures;
mod signing;
mod workflows;
