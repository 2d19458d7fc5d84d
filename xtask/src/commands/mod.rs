//! One module per subcommand: its arguments, its plan (pure), its run.

pub mod all;
pub mod args;
pub mod build;
pub mod check_runtime;
pub mod clean;
pub mod closure;
pub mod compare;
pub mod digests;
pub mod doctor;
pub mod k8s;
pub mod keys;
pub mod lint;
pub mod malcontent;
pub mod mirror;
pub mod pins;
pub mod provenance;
pub mod push;
pub mod release_notes;
pub mod reproduce;
pub mod run_example;
pub mod sbom;
pub mod scan;
pub mod signatures;
pub mod signing;
pub mod summary;
pub mod workflows;
