//! OCI images: archives on disk and registries on the network.

pub mod archive;
pub mod registry;
