//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `avfuse-media`.
///
/// Every variant that concerns a file names that file in its message, so a user reading
/// the error knows which file to look at.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// An I/O operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// The file at `path` exists but its content is not what the format requires.
    #[error("{}: {detail}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong, naming the tensor, field or line at fault.
        detail: String,
    },
    /// A configuration value or an argument is invalid; the message names it.
    #[error("{0}")]
    Invalid(String),
}

impl MediaError {
    /// Wraps an [`io::Error`] with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error about the file at `path`.
    pub fn format(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
