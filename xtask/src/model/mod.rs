//! What the repository says: Containerfiles, the image catalog derived from
//! them, the StageX release we pin against, and the few settings that are ours.

pub mod catalog;
pub mod containerfile;
pub mod cpes;
pub mod facts;
pub mod job_image;
pub mod release;
pub mod settings;
