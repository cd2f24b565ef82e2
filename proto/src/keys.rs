//! ed25519 keys: generation, PKCS#8 PEM files, public keys as hex.
//!
//! Secret keys on disk are unencrypted PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`), byte for byte
//! the format `openssl genpkey -algorithm ed25519` writes, so keys move between Licet and openssl
//! in both directions. Key files are written atomically (temp file in the same directory, then
//! rename) with mode 0600 on Unix, and never over an existing file unless asked.
//!
//! Invariants:
//! - A [`PublicKey`] is 32 bytes that decode to a valid curve point; it is checked when parsed
//!   from text and again when a signature is verified.
//! - Verification is strict (`verify_strict`): small-order keys and non-canonical signatures are
//!   rejected, so one message has one valid signature per key.

use std::{
    fmt,
    io::Write as _,
    path::{Path, PathBuf},
    str::FromStr,
};

use ed25519_dalek::{
    Signer as _, SigningKey, VerifyingKey,
    pkcs8::{
        DecodePrivateKey as _, EncodePrivateKey as _, KeypairBytes, spki::der::pem::LineEnding,
    },
};
use serde::{Deserialize, Serialize};

use crate::{ids::ParseIdError, text::escape_for_terminal};

/// An ed25519 public key: a publisher, a delegate, a signer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::ids::serialize_bytes(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::ids::deserialize_bytes(deserializer).map(PublicKey)
    }
}

impl PublicKey {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, as shown everywhere.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Checks `signature` over `message` strictly.
    pub(crate) fn verify(&self, message: &[u8], signature: &SignatureBytes) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// Why a public key given as text was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// Not 64 hex characters.
    #[error(transparent)]
    NotHex(#[from] ParseIdError),
    /// 32 bytes, but not a point on the curve.
    #[error("{0} is not a valid ed25519 public key")]
    NotOnCurve(String),
}

impl FromStr for PublicKey {
    type Err = PublicKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes)
            .map_err(|_| PublicKeyError::NotHex(ParseIdError::new("public key", 64, s)))?;
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| PublicKeyError::NotOnCurve(s.trim().to_owned()))?;
        Ok(PublicKey(bytes))
    }
}

/// A 64-byte ed25519 signature as carried in envelopes (raw bytes, no length prefix).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", hex::encode(self.0))
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let mut tuple = serializer.serialize_tuple(64)?;
        for byte in &self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SignatureBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut bytes = [0u8; 64];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(SignatureBytes(bytes))
            }
        }
        deserializer.deserialize_tuple(64, Visitor)
    }
}

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading the file failed (it is missing, or unreadable). The OS error is in the message
    /// (and not a separate source, so a cause chain shows it once).
    #[error("cannot read the key file {path}: {error}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Writing the file failed.
    #[error("cannot write the key file {path}: {error}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file exists and overwriting was not asked for.
    #[error("{path} already exists (pass --force to overwrite it)")]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The file is not an ed25519 PKCS#8 PEM private key.
    #[error("{path} is not an ed25519 PKCS#8 PEM private key: {reason}")]
    NotAKey {
        /// The key file.
        path: PathBuf,
        /// What the PKCS#8 parser said.
        reason: String,
    },
}

/// An ed25519 signing key. Its bytes are zeroed on drop (ed25519-dalek's `zeroize` feature).
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key())
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        let key = SecretKey(SigningKey::from_bytes(&seed));
        seed.fill(0);
        Ok(key)
    }

    /// The key whose 32-byte seed is `seed` (for tests and deterministic fixtures).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The X25519 secret scalar of this key (RFC 8032's clamped hash of the seed), the secret
    /// of [`PublicKey`]'s Montgomery form: what opens a licence sealed to this key.
    pub(crate) fn x25519_scalar(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }

    /// Signs `message` (callers build messages through [`crate::signed`], never by hand).
    pub(crate) fn sign(&self, message: &[u8]) -> SignatureBytes {
        SignatureBytes(self.0.sign(message).to_bytes())
    }

    /// Parses PKCS#8 PEM text (v1 as openssl writes it, or v2 with the public key); an error
    /// says in words what the text holds instead.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        SigningKey::from_pkcs8_pem(pem).map(SecretKey).map_err(|_| {
            let label = pem
                .lines()
                .map(str::trim)
                .find_map(|line| line.strip_prefix("-----BEGIN "))
                .and_then(|rest| rest.strip_suffix("-----"));
            match label {
                None => "it has no \"-----BEGIN PRIVATE KEY-----\" line".to_owned(),
                Some("PRIVATE KEY") => {
                    "the PRIVATE KEY in it is not an ed25519 key, or is damaged".to_owned()
                }
                Some(other) => format!(
                    "it holds a {}, not a PRIVATE KEY (an unencrypted PKCS#8 key)",
                    escape_for_terminal(other)
                ),
            }
        })
    }

    /// PKCS#8 v1 PEM text, the same bytes `openssl genpkey -algorithm ed25519` would write.
    pub fn to_pem(&self) -> String {
        let keypair = KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        match keypair.to_pkcs8_pem(LineEnding::LF) {
            Ok(pem) => pem.to_string(),
            // Encoding a 32-byte seed into a fixed DER template cannot fail.
            Err(e) => unreachable!("PKCS#8 encoding of an ed25519 seed failed: {e}"),
        }
    }

    /// Reads a PEM key file.
    pub fn read_pem_file(path: &Path) -> Result<Self, KeyFileError> {
        const MAX_KEY_FILE: u64 = 64 * 1024;
        let io = |error| KeyFileError::Read {
            path: path.to_owned(),
            error,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_KEY_FILE {
            return Err(KeyFileError::NotAKey {
                path: path.to_owned(),
                reason: format!("the file is {len} bytes, far larger than a key"),
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let not_a_key = |reason| KeyFileError::NotAKey {
            path: path.to_owned(),
            reason,
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| not_a_key("it is a binary file, while a PEM key is text".to_owned()))?;
        Self::from_pem(&text).map_err(not_a_key)
    }

    /// Writes the key as PEM to `path` atomically with mode 0600; refuses to replace an existing
    /// file unless `overwrite`.
    pub fn write_pem_file(&self, path: &Path, overwrite: bool) -> Result<(), KeyFileError> {
        if !overwrite && path.exists() {
            return Err(KeyFileError::Exists {
                path: path.to_owned(),
            });
        }
        let io = |error| KeyFileError::Write {
            path: path.to_owned(),
            error,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // NamedTempFile is created 0600 on Unix and removed if anything below fails.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.write_all(self.to_pem().as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        let persisted = if overwrite {
            tmp.persist(path).map(drop)
        } else {
            // Fails if the target appeared meanwhile, so an existing key is never replaced.
            tmp.persist_noclobber(path).map(drop)
        };
        persisted.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io(e.error)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let key = SecretKey::from_seed(&[7; 32]);
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let back = SecretKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), key.public_key());
    }

    #[test]
    fn pem_matches_openssl_layout() {
        // openssl genpkey -algorithm ed25519 writes 48 DER bytes: a fixed 16-byte prefix + seed.
        let key = SecretKey::from_seed(&[0x11; 32]);
        let pem = key.to_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        // 302e020100300506032b657004220420 ‖ seed, in base64: 64 characters.
        assert_eq!(body.len(), 64, "{pem}");
        assert!(body.starts_with("MC4CAQAwBQYDK2VwBCIEI"), "{pem}");
    }

    #[test]
    fn public_key_text_must_be_a_curve_point() {
        let key = SecretKey::from_seed(&[1; 32]).public_key();
        assert_eq!(key.to_hex().parse::<PublicKey>().unwrap(), key);
        assert!(matches!(
            "zz".parse::<PublicKey>(),
            Err(PublicKeyError::NotHex(_))
        ));
    }

    #[test]
    fn key_file_is_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.pem");
        let key = SecretKey::from_seed(&[3; 32]);
        key.write_pem_file(&path, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = SecretKey::from_seed(&[4; 32]);
        assert!(matches!(
            other.write_pem_file(&path, false),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(
            SecretKey::read_pem_file(&path).unwrap().public_key(),
            key.public_key()
        );
        other.write_pem_file(&path, true).unwrap();
        assert_eq!(
            SecretKey::read_pem_file(&path).unwrap().public_key(),
            other.public_key()
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind");
    }

    #[test]
    fn garbage_key_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, "not a key").unwrap();
        let err = SecretKey::read_pem_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.pem") && err.contains("not an ed25519"),
            "{err}"
        );
    }
}
