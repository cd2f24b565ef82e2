//! Fixed-size byte identifiers: public keys, manifest ids, merkle hashes, catalog hashes.
//!
//! Each is a distinct type so a manifest id can never be passed where a merkle root is meant.
//! All are shown and parsed as lowercase hex (parsing also accepts uppercase); all encode on the
//! wire as their raw bytes (a fixed-size array, no length prefix).

use std::{fmt, str::FromStr};

use sha2::{Digest as _, Sha256};

/// The hex text given for an id was not the right length or not hex.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{what} must be {expected} hex characters, got {got:?}")]
pub struct ParseIdError {
    what: &'static str,
    expected: usize,
    got: String,
}

impl ParseIdError {
    pub(crate) fn new(what: &'static str, expected: usize, got: &str) -> Self {
        ParseIdError {
            what,
            expected,
            got: got.chars().take(200).collect(),
        }
    }
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0u8; $len];
                match hex::decode_to_slice(s.trim(), &mut bytes) {
                    Ok(()) => Ok(Self(bytes)),
                    Err(_) => Err(ParseIdError::new($what, $len * 2, s)),
                }
            }
        }
    };
}

byte_id!(
    /// A manifest's id: SHA-256(`"licet/v1/manifest-id"` ‖ body). Stable for the exact signed
    /// body, whoever signed it.
    ManifestId,
    32,
    "manifest id"
);
byte_id!(
    /// A node of a file's merkle tree (a leaf, an inner node or the root).
    MerkleHash,
    32,
    "merkle hash"
);
byte_id!(
    /// SHA-256(`"licet/v1/catalog"` ‖ encoded catalog envelope): what a catalog head commits to.
    CatalogHash,
    32,
    "catalog hash"
);
byte_id!(
    /// The DHT key under which a publisher's catalog head is stored:
    /// SHA-256(`"licet/v1/catalog-head"` ‖ publisher key).
    CatalogHeadKey,
    32,
    "catalog head key"
);

/// SHA-256 over the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}
