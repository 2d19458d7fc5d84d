//! OCI images: references, manifests, archives and layouts on disk, and
//! registries on the network.

pub mod archive;
pub mod auth;
pub mod layout;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod rootfs;
#[cfg(test)]
pub mod stub;
pub mod tar;
pub mod transfer;
