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
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                crate::ids::serialize_bytes(&self.0, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                crate::ids::deserialize_bytes(deserializer).map(Self)
            }
        }

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
    /// SHA-256(`"licet/v1/catalog-part"` ‖ encoded part): how a catalog's root and pages name
    /// its parts, and how a node asks a peer for them.
    CatalogPartHash,
    32,
    "catalog part hash"
);
byte_id!(
    /// The DHT key under which a publisher's catalog head is stored:
    /// SHA-256(`"licet/v1/catalog-head"` ‖ publisher key).
    CatalogHeadKey,
    32,
    "catalog head key"
);

byte_id!(
    /// A licence's id: SHA-256(`"licet/v1/licence-id"` ‖ body). What a catalog revokes.
    LicenceId,
    32,
    "licence id"
);
byte_id!(
    /// The public name of a release's content key: SHA-256(`"licet/v1/content-key-id"` ‖ key).
    ContentKeyId,
    32,
    "content key id"
);

/// Serializes fixed bytes as raw bytes for binary formats (postcard: no length prefix) and as
/// lowercase hex for human-readable ones (JSON drafts and `--json` output).
pub(crate) fn serialize_bytes<S: serde::Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error>
where
    [u8; N]: serde::Serialize,
{
    use serde::Serialize as _;
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        bytes.serialize(serializer)
    }
}

/// The inverse of [`serialize_bytes`].
pub(crate) fn deserialize_bytes<'de, D: serde::Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error>
where
    [u8; N]: serde::Deserialize<'de>,
{
    use serde::Deserialize as _;
    if deserializer.is_human_readable() {
        let text = String::deserialize(deserializer)?;
        let mut bytes = [0u8; N];
        hex::decode_to_slice(&text, &mut bytes).map_err(|_| {
            serde::de::Error::custom(format!("expected {} hex characters, got {text:?}", N * 2))
        })?;
        Ok(bytes)
    } else {
        <[u8; N]>::deserialize(deserializer)
    }
}

/// SHA-256 over the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}
