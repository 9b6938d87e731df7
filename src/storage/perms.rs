//! Who may touch the store's files: ownership and mode checks on the store
//! directory, its files and the secret's directory.
//!
//! Everything the store trusts must be writable only by the current user:
//! anyone else able to write it could swap a record's bytes after its checks
//! or plant a secret. That covers the path to it too: a directory on the way
//! that every user can write, without the sticky bit, lets any of them
//! rename the next component and put their own directory (or a symlink) in
//! its place.
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use super::{io_at, lock, Result, StorageError};

/// `meta` (of `path`) must be owned by us, with none of the `forbidden`
/// mode bits set.
pub fn check_owner_mode(path: &Path, meta: &fs::Metadata, forbidden: u32) -> Result<()> {
    let uid = lock::euid();
    let reason = if meta.uid() != uid {
        format!("owned by uid {} but we are uid {uid}", meta.uid())
    } else if meta.mode() & forbidden != 0 {
        format!(
            "mode {:o} gives access to group/others",
            meta.mode() & 0o777
        )
    } else {
        return Ok(());
    };
    Err(StorageError::UnsafePermissions {
        path: path.to_path_buf(),
        reason,
    })
}

/// Creates `path` (mode 0700) if needed; it must be a directory of ours
/// that group and others cannot write.
pub fn ensure_dir(path: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_at(path))?;
    let meta = fs::symlink_metadata(path).map_err(io_at(path))?;
    if !meta.is_dir() {
        return Err(StorageError::UnsafePermissions {
            path: path.into(),
            reason: "not a directory".into(),
        });
    }
    check_owner_mode(path, &meta, 0o022)
}

/// Refuses `path` (which exists) if a directory above it is writable by
/// every user without the sticky bit.
pub fn check_ancestors(path: &Path) -> Result<()> {
    let real = fs::canonicalize(path).map_err(io_at(path))?;
    for dir in real.ancestors().skip(1) {
        let mode = fs::metadata(dir).map_err(io_at(dir))?.mode();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(StorageError::UnsafePermissions {
                path: path.to_path_buf(),
                reason: format!(
                    "{} (mode {:o}) lets every user replace what is inside it (no sticky bit)",
                    dir.display(),
                    mode & 0o7777
                ),
            });
        }
    }
    Ok(())
}
