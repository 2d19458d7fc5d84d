//! StageX's OpenPGP signatures: where they live, what they say, who made them.

pub mod keys;
pub mod lookaside;
pub mod payload;
pub mod verify;
