//! Per-user secret and the keyed MAC (keyed BLAKE3) over records.
//!
//! The secret is 32 random bytes in a file of mode 0600, in a directory of
//! mode 0700 (a directory other users can write is refused: they could put
//! their own secret there), created atomically on first use (written to a
//! temporary file, then hard-linked into place so concurrent creators
//! agree). It lives OUTSIDE the cache directory, so copying or sharing a
//! cache never carries the key that makes its records trusted. Unless the
//! caller names a path, it is the first of these that exists, else the
//! first that can be created:
//!
//! 1. `$XDG_CONFIG_HOME/bytecache/secret`
//! 2. `~/.config/bytecache/secret` (`$HOME`, else the account's home
//!    directory from the password database)
//! 3. `$TMPDIR/bytecache-<uid>/secret` (`/tmp` without `TMPDIR`): for
//!    accounts with no usable home (services, containers). A temporary
//!    directory may be cleaned: the store then notices the new secret and
//!    starts afresh (see `Secret::id`).
//!
//! A candidate inside the store's parent directory (the cache directory) is
//! skipped.
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::perms::{check_ancestors, check_owner_mode};
use super::{io_at, StorageError};

pub const SECRET_LEN: usize = 32;

/// The secret a store is opened with.
pub struct Secret {
    pub key: MacKey,
    /// Identifies the secret without revealing it (non-zero): the index
    /// records the id of the secret its records were made with.
    pub id: u64,
    pub path: PathBuf,
}

/// The default secret locations, in order (see the module docs).
pub fn default_secret_paths() -> Vec<PathBuf> {
    let absolute = |p: PathBuf| p.is_absolute().then_some(p);
    let mut out = Vec::new();
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").and_then(|d| absolute(d.into())) {
        out.push(d.join("bytecache").join("secret"));
    }
    if let Some(h) = std::env::home_dir().and_then(absolute) {
        out.push(h.join(".config").join("bytecache").join("secret"));
    }
    let tmp = std::env::temp_dir().join(format!("bytecache-{}", super::lock::euid()));
    out.push(tmp.join("secret"));
    out
}

/// The secret at `explicit`, or at the default location for the store in
/// `store_dir` (an existing directory).
pub fn load(explicit: Option<&Path>, store_dir: &Path) -> Result<Secret, StorageError> {
    if let Some(p) = explicit {
        return Secret::from_file(p);
    }
    let cache_dir = fs::canonicalize(store_dir)
        .map_err(io_at(store_dir))?
        .parent()
        .map(Path::to_path_buf);
    let candidates: Vec<PathBuf> = default_secret_paths()
        .into_iter()
        .filter(|p| cache_dir.as_ref().is_none_or(|c| !p.starts_with(c)))
        .collect();
    if let Some(p) = candidates.iter().find(|p| fs::symlink_metadata(p).is_ok()) {
        return Secret::from_file(p);
    }
    let mut last = None;
    for p in &candidates {
        match Secret::from_file(p) {
            // This one cannot be created (no such home, read-only): next.
            Err(e @ StorageError::Io { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| {
        StorageError::InvalidArgument("no location for the secret outside the cache".into())
    }))
}

impl Secret {
    /// Reads the secret at `path`, creating it first if missing.
    fn from_file(path: &Path) -> Result<Secret, StorageError> {
        let parent = path.parent().unwrap_or(Path::new("."));
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_at(parent))?;
        check_owner_mode(parent, &fs::metadata(parent).map_err(io_at(parent))?, 0o022)?;
        check_ancestors(parent)?;
        if fs::symlink_metadata(path).is_err() {
            create(path, parent)?;
        }
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(io_at(path))?;
        let meta = f.metadata().map_err(io_at(path))?;
        let corrupt = |reason: &str| StorageError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        if !meta.is_file() {
            return Err(corrupt("the secret is not a regular file"));
        }
        check_owner_mode(path, &meta, 0o077)?;
        let mut secret = Vec::with_capacity(SECRET_LEN + 1);
        (&mut f)
            .take(SECRET_LEN as u64 + 1)
            .read_to_end(&mut secret)
            .map_err(io_at(path))?;
        let secret: [u8; SECRET_LEN] = secret
            .try_into()
            .map_err(|_| corrupt("secret file is not 32 bytes; delete it to start afresh"))?;
        let derived = blake3::derive_key("bytecache 2026-11 secret id v1", &secret);
        let mut id = [0u8; 8];
        id.copy_from_slice(&derived[..8]);
        let id = u64::from_le_bytes(id);
        Ok(Secret {
            key: MacKey::new(&secret),
            id: id.max(1),
            path: path.to_path_buf(),
        })
    }
}

fn create(path: &Path, parent: &Path) -> Result<(), StorageError> {
    let mut secret = [0u8; SECRET_LEN];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(io_at(Path::new("/dev/urandom")))?;
    let tmp = parent.join(format!(".secret.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp); // left by a crashed process with our pid
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    let written = f.write_all(&secret).and_then(|()| f.sync_all());
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// A MAC key derived from the user secret.
pub struct MacKey([u8; 32]);

impl MacKey {
    pub fn new(secret: &[u8; SECRET_LEN]) -> MacKey {
        MacKey(blake3::derive_key(
            "bytecache 2026-11 record MAC v1",
            secret,
        ))
    }

    pub fn mac(&self, parts: &[&[u8]]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        for p in parts {
            h.update(p);
        }
        h.finalize()
    }
}
