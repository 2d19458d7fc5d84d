//! Repository names in the shared test registry that no other test, and no
//! other run of the suite, uses: a test's name, this process's id and the
//! time it asked (the registry keeps what earlier runs pushed).

use std::sync::atomic::{AtomicUsize, Ordering};

/// `<test>-<pid>-<hex time><n>`: unique per test, per run and per call.
pub fn unique(test: &str) -> String {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let call = CALLS.fetch_add(1, Ordering::SeqCst);
    format!("{test}-{}-{nanos:x}{call}", std::process::id())
}
