//! `cargo xtask`: build, verify, scan, sign and publish StageX base images.

fn main() -> std::process::ExitCode {
    xtask::cli::main()
}
