//! Crash-safe file writing.
//!
//! Readers of the cache must never see a half-written file: every file is written to a
//! temporary file in the destination directory, flushed and fsynced, then renamed over the
//! destination (an atomic operation on POSIX file systems within one directory).

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::error::MediaError;

/// Writes `bytes` to `path` atomically: either the old content (or no file) or the whole
/// new content is visible, never a prefix.
///
/// The parent directory must exist. The temporary file lives in the same directory, so
/// the final rename never crosses a file system.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), MediaError> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Like [`atomic_write`], but the content is produced by `write`, which streams into a
/// buffered writer (useful for large files and line-oriented formats).
pub fn atomic_write_with<F>(path: &Path, write: F) -> Result<(), MediaError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| MediaError::io(dir, e))?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        write(&mut w).map_err(|e| MediaError::io(path, e))?;
        w.flush().map_err(|e| MediaError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| MediaError::io(path, e))?;
    // tempfile creates 0600 files; results and caches are meant to be shared (0644).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| MediaError::io(path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| MediaError::io(path, e.error))?;
    // Make the rename itself durable where the platform allows opening directories.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    tracing::trace!(path = %path.display(), "atomically wrote file");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        atomic_write(&p, b"hello").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode, 0o644,
                "written files are world-readable like fs::write's"
            );
        }
        atomic_write_with(&p, |w| w.write_all(b"world!")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"world!");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failing_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bin");
        let err = atomic_write_with(&p, |_| Err(io::Error::other("boom"))).unwrap_err();
        assert!(err.to_string().contains("b.bin"), "{err}");
        assert!(!p.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_dir_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("c.bin");
        let err = atomic_write(&p, b"x").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
