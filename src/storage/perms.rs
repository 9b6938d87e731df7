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
use std::path::{Path, PathBuf};

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
    let meta = made_dir(path, false)?;
    if !meta.is_dir() {
        return Err(StorageError::UnsafePermissions {
            path: path.into(),
            reason: "not a directory".into(),
        });
    }
    check_owner_mode(path, &meta, 0o022)
}

/// The metadata of the directory `path` (of what a link there points to
/// with `follow`), made first (0700, with its parents) if there is none.
/// Looked at first: it exists in every opening but the first (a `mkdir`
/// that fails with EEXIST is a system call more).
pub fn made_dir(path: &Path, follow: bool) -> Result<fs::Metadata> {
    let look = |p: &Path| {
        if follow {
            fs::metadata(p)
        } else {
            fs::symlink_metadata(p)
        }
    };
    match look(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io_at(path))?;
            look(path).map_err(io_at(path))
        }
        r => r.map_err(io_at(path)),
    }
}

/// Refuses `path` (which exists) if a directory above it is writable by
/// every user without the sticky bit; returns its canonical form.
pub fn check_ancestors(path: &Path) -> Result<PathBuf> {
    if let Some(modes) = plain_modes(path) {
        check_modes(path, &modes)?;
        return Ok(path.to_path_buf());
    }
    let real = fs::canonicalize(path).map_err(io_at(path))?;
    let mut modes = Vec::new();
    for dir in real.ancestors().skip(1) {
        modes.push((dir, fs::metadata(dir).map_err(io_at(dir))?.mode()));
    }
    check_modes(path, &modes)?;
    Ok(real)
}

fn check_modes(path: &Path, modes: &[(&Path, u32)]) -> Result<()> {
    for &(dir, mode) in modes {
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

/// For a path that is already canonical (absolute, only plain components,
/// no symbolic link on the way, which `lstat` of each tells), the modes of
/// the directories above it: one `lstat` each, where canonicalizing and
/// then looking at each took two system calls. None otherwise.
fn plain_modes(path: &Path) -> Option<Vec<(&Path, u32)>> {
    use std::path::Component;
    // `components` drops `.`, repeated and trailing separators: a path it
    // gives back unchanged has none of them.
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path.components().collect::<PathBuf>().as_os_str() == path.as_os_str();
    if !plain || fs::symlink_metadata(path).ok()?.file_type().is_symlink() {
        return None;
    }
    let mut modes = Vec::new();
    for dir in path.ancestors().skip(1) {
        let m = fs::symlink_metadata(dir).ok()?;
        if m.file_type().is_symlink() {
            return None;
        }
        modes.push((dir, m.mode()));
    }
    Some(modes)
}
