//! Diagnostics the library cannot return to a caller (repaired copies,
//! corruption found while serving a read) go to stderr, one line each.
//! `RAWSTOR_LOG=quiet` silences them.

use std::sync::OnceLock;

fn quiet() -> bool {
    static QUIET: OnceLock<bool> = OnceLock::new();
    *QUIET.get_or_init(|| std::env::var("RAWSTOR_LOG").is_ok_and(|v| v == "quiet"))
}

/// Reports something an operator should know about.
pub fn warn(message: &str) {
    if !quiet() {
        eprintln!("rawstor: warning: {message}");
    }
}
