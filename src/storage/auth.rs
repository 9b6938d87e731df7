//! Per-user secret and the keyed MAC (keyed BLAKE3) over records.
//!
//! The secret is the per-user key file `secret` (32 random bytes, see
//! `userfile.rs` for where it lives and how it is created and checked),
//! outside the cache directory, so copying or sharing a cache never carries
//! the key that makes its records trusted.
use std::path::{Path, PathBuf};

use super::userfile::{self, KEY_LEN};
use super::StorageError;

/// The secret a store is opened with.
pub struct Secret {
    pub key: MacKey,
    /// Identifies the secret without revealing it (non-zero): the index
    /// records the id of the secret its records were made with.
    pub id: u64,
    pub path: PathBuf,
}

/// The default secret locations, in order (see `userfile.rs`).
pub fn default_secret_paths() -> Vec<PathBuf> {
    userfile::default_paths("secret")
}

/// The secret at `explicit`, or at the default location for the store in
/// `store_dir` (an existing directory, canonical).
pub fn load(explicit: Option<&Path>, store_dir: &Path) -> Result<Secret, StorageError> {
    let (path, secret) = userfile::load_key("secret", explicit, store_dir.parent())?;
    let derived = blake3::derive_key("bytecache 2026-11 secret id v1", &secret);
    let mut id = [0u8; 8];
    id.copy_from_slice(&derived[..8]);
    let id = u64::from_le_bytes(id);
    Ok(Secret {
        key: MacKey::new(&secret),
        id: id.max(1),
        path,
    })
}

/// A MAC key derived from the user secret.
pub struct MacKey([u8; 32]);

impl MacKey {
    pub fn new(secret: &[u8; KEY_LEN]) -> MacKey {
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
