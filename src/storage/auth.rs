//! Per-user secret and the keyed MAC (keyed BLAKE3) over records.
//!
//! The secret lives OUTSIDE the cache directory, by default in
//! `$XDG_CONFIG_HOME/bytecache/secret` (else `~/.config/bytecache/secret`),
//! 32 random bytes, mode 0600, created atomically on first use (written to a
//! temporary file, then hard-linked into place so concurrent creators agree).
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::StorageError;

pub const SECRET_LEN: usize = 32;

pub fn default_secret_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("bytecache").join("secret"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the secret at `path`, creating it first if missing.
pub fn load_or_create_secret(path: &Path) -> Result<[u8; SECRET_LEN], StorageError> {
    if !path.exists() {
        let parent = path.parent().unwrap_or(Path::new("."));
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_err(parent))?;
        let mut secret = [0u8; SECRET_LEN];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .map_err(io_err(Path::new("/dev/urandom")))?;
        let tmp = parent.join(format!(".secret.{}.tmp", std::process::id()));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(&secret)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    let mut f = File::open(path).map_err(io_err(path))?;
    super::check_owner_mode(path, &f.metadata().map_err(io_err(path))?, 0o077)?;
    let mut secret = [0u8; SECRET_LEN];
    let mut extra = Vec::new();
    f.read_exact(&mut secret)
        .and_then(|()| f.read_to_end(&mut extra))
        .map_err(io_err(path))?;
    if !extra.is_empty() {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            reason: "secret file is not 32 bytes".into(),
        });
    }
    Ok(secret)
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
