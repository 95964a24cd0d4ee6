//! Errors: every failure carries a POSIX errno (what the C ABI returns,
//! negated) and a human-readable context line.

use std::ffi::CString;
use std::fmt;
use std::sync::OnceLock;

/// A failure with an errno and a context message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    context: String,
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A new error; `errno` is positive (`libc::EINVAL`, ...).
    pub fn new(errno: i32, context: impl Into<String>) -> Self {
        debug_assert!(errno > 0, "errno must be positive");
        Self {
            errno,
            context: context.into(),
        }
    }

    /// Wraps an OS error, keeping its errno (EIO when it has none).
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Self::new(err.raw_os_error().unwrap_or(libc::EIO), context)
    }

    /// Shorthand for an `EINVAL` error.
    pub fn invalid(context: impl Into<String>) -> Self {
        Self::new(libc::EINVAL, context)
    }

    /// The positive errno.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The context line, without the errno text.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, strerror(self.errno))
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        std::io::Error::new(std::io::Error::from_raw_os_error(err.errno).kind(), err)
    }
}

/// Highest errno with a cached description; larger ones get a generic text.
const ERRNO_TABLE_LEN: usize = 256;

fn errno_table() -> &'static [CString] {
    static TABLE: OnceLock<Vec<CString>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..ERRNO_TABLE_LEN as i32)
            .map(|errno| {
                let text = if errno == 0 {
                    "Success".to_string()
                } else {
                    let text = std::io::Error::from_raw_os_error(errno).to_string();
                    // std appends " (os error N)"; the C convention has no suffix.
                    match text.rfind(" (os error ") {
                        Some(cut) => text[..cut].to_string(),
                        None => text,
                    }
                };
                CString::new(text).expect("strerror text has no NUL")
            })
            .collect()
    })
}

/// The description of an errno (sign ignored), as a static C string.
pub fn strerror_c(errno: i32) -> &'static std::ffi::CStr {
    static UNKNOWN: &std::ffi::CStr = c"Unknown error";
    let index = errno.unsigned_abs() as usize;
    errno_table()
        .get(index)
        .map(|s| s.as_c_str())
        .unwrap_or(UNKNOWN)
}

/// The description of an errno (sign ignored).
pub fn strerror(errno: i32) -> &'static str {
    strerror_c(errno).to_str().unwrap_or("Unknown error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_matches_libc_text() {
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert_eq!(strerror(-libc::EIO), "Input/output error");
        assert_eq!(strerror(100_000), "Unknown error");
    }

    #[test]
    fn display_joins_context_and_errno_text() {
        let err = Error::new(libc::ENXIO, "read past the end");
        assert_eq!(
            err.to_string(),
            "read past the end: No such device or address"
        );
    }
}
