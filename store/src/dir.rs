//! File system steps the log builds on: creating private files and directories, syncing a
//! directory so that a new name, a rename or a deletion survives a crash, and atomically putting
//! a fully written file in place.
//!
//! Log files hold session history, so they are created readable by their owner only (0600, the
//! directory 0700) where the platform has Unix permissions.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext};

/// Creates `dir` (and its parents) if it is missing, and makes its entry durable.
pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).ctx("create log directory", dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs a directory, making the creation, renaming and deletion of its entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .ctx("sync log directory", dir)?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates (or empties) `path` for writing, owner-only.
pub(crate) fn create_file(path: &Path) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).ctx("create", path)
}

/// Writes `bytes` to `temp`, fsyncs it, renames it to `path` and fsyncs the directory: after a
/// crash at any step `path` is either absent (or its old content) or the whole of `bytes`.
pub(crate) fn write_atomic(
    dir: &Path,
    temp: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), Error> {
    let mut file = create_file(temp)?;
    file.write_all(bytes).ctx("write", temp)?;
    file.sync_all().ctx("sync", temp)?;
    drop(file);
    commit_rename(dir, temp, path)
}

/// Renames a fully written and synced `temp` to `path` and fsyncs the directory.
pub(crate) fn commit_rename(dir: &Path, temp: &Path, path: &Path) -> Result<(), Error> {
    fs::rename(temp, path).ctx("rename a temporary file to", path)?;
    sync_dir(dir)
}
