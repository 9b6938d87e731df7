//! Ed25519 signatures for the entries a remote tier shares (the Python
//! package's `_remote`): this user's signing key and the file listing the
//! keys whose entries they trust. Pure Rust (no pyo3).
//!
//! The signing key is the per-user key file `signing-key`: 32 random bytes
//! (an Ed25519 seed) found or created exactly like the store's secret, never
//! inside the cache directory (see `storage::userfile`). The trusted keys
//! are the text file `trusted-keys` beside it, which must be ours and
//! writable by no one else: whoever can write it decides what we unpickle.
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::storage::{load_key, read_private, write_private, StorageError};

/// Largest trusted-keys file read (a few thousand keys).
const MAX_TRUSTED_BYTES: u64 = 1 << 16;

pub struct Identity {
    key: SigningKey,
    path: PathBuf,
}

impl Identity {
    /// This user's signing key (made on first use), never inside `cache_dir`.
    pub fn load(cache_dir: Option<&Path>) -> Result<Identity, StorageError> {
        let cache_dir = cache_dir.map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.into()));
        let (path, seed) = load_key("signing-key", None, cache_dir.as_deref())?;
        Ok(Identity {
            key: SigningKey::from_bytes(&seed),
            path,
        })
    }

    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// Where the signing key is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn trusted_path(&self) -> PathBuf {
        self.path.with_file_name("trusted-keys")
    }

    /// The trusted-keys file's text (empty when there is none).
    pub fn trusted(&self) -> Result<Vec<u8>, StorageError> {
        let path = self.trusted_path();
        let text = read_private(&path, MAX_TRUSTED_BYTES + 1, 0o022)?.unwrap_or_default();
        if text.len() as u64 > MAX_TRUSTED_BYTES {
            return Err(StorageError::Corrupt {
                path,
                reason: format!("larger than {MAX_TRUSTED_BYTES} bytes"),
            });
        }
        Ok(text)
    }

    /// Replaces the trusted-keys file's text at once.
    pub fn set_trusted(&self, text: &[u8]) -> Result<(), StorageError> {
        if text.len() as u64 > MAX_TRUSTED_BYTES {
            return Err(StorageError::InvalidArgument(format!(
                "the trusted keys would exceed {MAX_TRUSTED_BYTES} bytes"
            )));
        }
        write_private(&self.trusted_path(), text)
    }
}

/// The digest that binds a chunk of an entry to its signed manifest
/// (BLAKE3-256: collision-resistant, and fast on a 100 MiB result).
pub fn content_digest(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// Whether `signature` is `public`'s over `message` (strict verification:
/// no weak keys, no malleable signatures).
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(public).is_ok_and(|k| {
        k.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(dir: &Path) -> Identity {
        let (path, seed) = load_key("signing-key", Some(&dir.join("k")), None).unwrap();
        Identity {
            key: SigningKey::from_bytes(&seed),
            path,
        }
    }

    #[test]
    fn signs_and_verifies_only_the_message_and_key_signed() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (identity(&t.path().join("a")), identity(&t.path().join("b")));
        let sig = a.sign(b"entry");
        assert!(verify(&a.public(), b"entry", &sig));
        assert!(!verify(&a.public(), b"entrY", &sig));
        assert!(!verify(&b.public(), b"entry", &sig));
        let mut bad = sig;
        bad[3] ^= 1;
        assert!(!verify(&a.public(), b"entry", &bad));
        assert!(!verify(&[0; 32], b"entry", &sig));
    }

    #[test]
    fn the_same_key_file_gives_the_same_key() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(identity(t.path()).public(), identity(t.path()).public());
    }

    #[test]
    fn trusted_keys_round_trip_and_are_refused_when_others_can_write_them() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let me = identity(t.path());
        assert_eq!(me.trusted().unwrap(), b"");
        me.set_trusted(b"ed25519:x alice\n").unwrap();
        assert_eq!(me.trusted().unwrap(), b"ed25519:x alice\n");
        let path = me.trusted_path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            me.trusted(),
            Err(StorageError::UnsafePermissions { .. })
        ));
    }
}
