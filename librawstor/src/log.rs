//! Diagnostics the library cannot return to a caller (repaired copies,
//! corruption found while serving a read, a copy that missed a write) go
//! through the `log` facade, target `rawstor`. An application that
//! installs its own logger gets them there. Otherwise the first
//! [`crate::Instance`] (or a server, at start) installs [`to_stderr`]'s
//! logger: one line each on stderr, at the level `RAWSTOR_LOG` names
//! (`error`, `warn` — the default —, `info`, `debug`, `trace`, or `quiet`
//! for none).

use std::io::Write;

/// Writes records to stderr, one line each: `rawstor: warning: ...`.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        // One write per line, so that lines of two threads do not mix.
        let line = format!("rawstor: {level}: {}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static STDERR: Stderr = Stderr;

/// The level a `RAWSTOR_LOG` value asks for (`warn` when unset or
/// unknown).
fn level_of(value: Option<&str>) -> log::LevelFilter {
    match value {
        Some("quiet" | "off") => log::LevelFilter::Off,
        Some("error") => log::LevelFilter::Error,
        Some("info") => log::LevelFilter::Info,
        Some("debug") => log::LevelFilter::Debug,
        Some("trace") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Warn,
    }
}

/// Sends the library's diagnostics to stderr at `RAWSTOR_LOG`'s level,
/// unless the process has a logger already (then nothing changes).
pub fn to_stderr() {
    if log::set_logger(&STDERR).is_ok() {
        log::set_max_level(level_of(std::env::var("RAWSTOR_LOG").ok().as_deref()));
    }
}

/// Reports something an operator should know about.
pub(crate) fn warn(message: &str) {
    log::warn!(target: "rawstor", "{message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_follows_rawstor_log() {
        assert_eq!(level_of(Some("quiet")), log::LevelFilter::Off);
        assert_eq!(level_of(Some("debug")), log::LevelFilter::Debug);
        assert_eq!(level_of(Some("loud")), log::LevelFilter::Warn);
        assert_eq!(level_of(None), log::LevelFilter::Warn);
    }
}
