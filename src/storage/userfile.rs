//! Per-user files kept OUTSIDE the cache directory, so copying or sharing a
//! cache never carries them: the store's MAC secret (`auth.rs`), the remote
//! tier's signing key and its list of trusted keys (`crate::sign`).
//!
//! A key file holds 32 random bytes, mode 0600, in a directory of mode 0700
//! (a directory other users can write is refused: they could put their own
//! key there), created atomically on first use (written to a temporary
//! file, then hard-linked into place so concurrent creators agree). Unless
//! the caller names a path, it is the first of these that exists, else the
//! first that can be created:
//!
//! 1. `$XDG_CONFIG_HOME/bytecache/<name>`
//! 2. `~/.config/bytecache/<name>` (`$HOME`, else the account's home
//!    directory from the password database)
//! 3. `$TMPDIR/bytecache-<uid>/<name>` (`/tmp` without `TMPDIR`): for
//!    accounts with no usable home (services, containers). A temporary
//!    directory may be cleaned: a new key is then made (the store notices
//!    its new secret and starts afresh, see `auth::Secret::id`).
//!
//! A candidate inside the cache directory is skipped.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::perms::{check_ancestors, check_owner_mode, made_dir};
use super::{io_at, StorageError};

pub const KEY_LEN: usize = 32;

/// The default locations of the per-user file `name`, in order (see the
/// module docs).
pub fn default_paths(name: &str) -> Vec<PathBuf> {
    let absolute = |p: PathBuf| p.is_absolute().then_some(p);
    let mut out = Vec::new();
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").and_then(|d| absolute(d.into())) {
        out.push(d.join("bytecache").join(name));
    }
    if let Some(h) = std::env::home_dir().and_then(absolute) {
        out.push(h.join(".config").join("bytecache").join(name));
    }
    let tmp = std::env::temp_dir().join(format!("bytecache-{}", super::lock::euid()));
    out.push(tmp.join(name));
    out
}

/// The key file `name` and its 32 bytes: at `explicit`, else at the first
/// default location outside `cache_dir` (canonical) where it exists, else at
/// the first where it can be created (with fresh random bytes).
pub fn load_key(
    name: &str,
    explicit: Option<&Path>,
    cache_dir: Option<&Path>,
) -> Result<(PathBuf, [u8; KEY_LEN]), StorageError> {
    if let Some(p) = explicit {
        return Ok((p.to_path_buf(), read_key(p)?));
    }
    let candidates: Vec<PathBuf> = default_paths(name)
        .into_iter()
        .filter(|p| cache_dir.is_none_or(|c| !p.starts_with(c)))
        .collect();
    if let Some(p) = candidates.iter().find(|p| fs::symlink_metadata(p).is_ok()) {
        return Ok((p.clone(), read_existing_key(p)?));
    }
    let mut last = None;
    for p in &candidates {
        match read_key(p) {
            // This one cannot be created (no such home, read-only): next.
            Err(e @ StorageError::Io { .. }) => last = Some(e),
            other => return other.map(|k| (p.clone(), k)),
        }
    }
    Err(last.unwrap_or_else(|| {
        StorageError::InvalidArgument(format!("no location for the {name} outside the cache"))
    }))
}

/// Reads the key file at `path`, creating it first if missing.
fn read_key(path: &Path) -> Result<[u8; KEY_LEN], StorageError> {
    let parent = private_dir(path)?;
    if fs::symlink_metadata(path).is_err() {
        create(path, &parent)?;
    }
    read_key_file(path)
}

/// Reads the key file at `path`, which was just found to exist (its
/// directory checked as in `read_key`).
fn read_existing_key(path: &Path) -> Result<[u8; KEY_LEN], StorageError> {
    private_dir(path)?;
    read_key_file(path)
}

fn read_key_file(path: &Path) -> Result<[u8; KEY_LEN], StorageError> {
    let corrupt = |reason: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    let bytes = read_private(path, KEY_LEN as u64 + 1, 0o077)?
        .ok_or_else(|| corrupt("the key file vanished while it was read"))?;
    bytes
        .try_into()
        .map_err(|_| corrupt("the key file is not 32 bytes; delete it to start afresh"))
}

/// The directory of `path`: created 0700 if missing, refused if someone
/// else could write it (or a directory above it).
fn private_dir(path: &Path) -> Result<PathBuf, StorageError> {
    let parent = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    check_owner_mode(&parent, &made_dir(&parent, true)?, 0o022)?;
    check_ancestors(&parent)?;
    Ok(parent)
}

/// The bytes of the regular file `path` (at most `max`), or None when there
/// is none. It must be ours, with none of the `forbidden` mode bits set.
pub fn read_private(
    path: &Path,
    max: u64,
    forbidden: u32,
) -> Result<Option<Vec<u8>>, StorageError> {
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    let meta = f.metadata().map_err(io_at(path))?;
    if !meta.is_file() {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    check_owner_mode(path, &meta, forbidden)?;
    let mut out = Vec::new();
    (&mut f)
        .take(max)
        .read_to_end(&mut out)
        .map_err(io_at(path))?;
    Ok(Some(out))
}

/// Replaces the file `path` (mode 0600, in a private directory) with
/// `bytes` at once: readers see the old content or the new, never a part.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let parent = private_dir(path)?;
    let (tmp, mut f) = temp_beside(path, &parent)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    let renamed = written.and_then(|()| fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    renamed.map_err(io_at(path))
}

/// A new temporary file (0600) in `parent`, named after `path`.
fn temp_beside(path: &Path, parent: &Path) -> Result<(PathBuf, File), StorageError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp); // left by a crashed process with our pid
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    Ok((tmp, f))
}

fn create(path: &Path, parent: &Path) -> Result<(), StorageError> {
    let mut key = [0u8; KEY_LEN];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(io_at(Path::new("/dev/urandom")))?;
    let (tmp, mut f) = temp_beside(path, parent)?;
    let written = f.write_all(&key).and_then(|()| f.sync_all());
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}
