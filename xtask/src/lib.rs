//! The StageX base images toolkit behind `cargo xtask`. A library so that the
//! integration tests use the same typed records and reports as the commands.
//! The map of folders and what may import what: `xtask/README.md`.

pub mod cli;
pub mod commands;
pub mod dev;
pub mod error;
pub mod files;
pub mod hash;
pub mod http;
pub mod model;
pub mod oci;
pub mod pgp;
pub mod pipeline;
pub mod records;
pub mod report;
pub mod time;
pub mod tools;
pub mod ui;
