//! `cargo xtask`: build, verify, scan, sign and publish StageX base images.

fn main() -> std::process::ExitCode {
    // Like any Unix tool, stop quietly when a reader closes the pipe
    // (`cargo xtask test-env env | head`) instead of panicking in println!.
    // SAFETY: set once, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    xtask::cli::main()
}
