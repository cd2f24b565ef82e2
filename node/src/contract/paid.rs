//! The bodies of the paid-release routes: how a release is encrypted (in [`ContentInfo`]),
//! writing its plaintext (`POST /v1/content/{id}/open`) and the licences held
//! (`/v1/licences`).

use std::path::PathBuf;

use licet_proto::{ManifestId, PublicKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[cfg(doc)]
use super::ContentInfo;
use super::schemas;

/// How a paid release is encrypted, in [`ContentInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EncryptionInfo {
    /// The cipher (`chacha20-poly1305-stream`).
    pub algorithm: String,
    /// The id of the content key a licence must seal (64 hex characters).
    pub key_id: String,
    /// Bytes of all files once decrypted.
    pub plaintext_bytes: u64,
}

/// `POST /v1/content/{id}/open`: where to write a paid release's plaintext.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OpenRequest {
    /// The folder to write the files in (absolute; created if missing). It may not be, hold or
    /// be inside the node's data directory.
    #[schema(value_type = String)]
    pub output_dir: PathBuf,
    /// Whether an existing regular file at one of the release's paths whose bytes are not the
    /// plaintext may be overwritten. Without it such a file refuses the whole call (409); a
    /// file already holding the plaintext is kept either way.
    #[serde(default)]
    pub replace: bool,
}

/// What `POST /v1/content/{id}/open` wrote.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OpenReply {
    /// The release.
    #[schema(value_type = schemas::ManifestIdHex)]
    pub manifest_id: ManifestId,
    /// Where its plaintext is.
    #[schema(value_type = String)]
    pub output_dir: PathBuf,
    /// The licence that opened it (64 hex characters).
    pub licence_id: String,
    /// Files written.
    pub files_written: usize,
    /// Files already holding the plaintext, left as they were.
    pub files_kept: usize,
    /// Plaintext bytes of all files.
    pub bytes: u64,
}

/// One licence held: `GET /v1/licences`, and `POST /v1/licences`'s reply.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LicenceEntry {
    /// The licence id (64 hex characters): what a catalog revokes and `DELETE` names.
    pub id: String,
    /// The publisher.
    #[schema(value_type = schemas::PublicKeyHex)]
    pub publisher: PublicKey,
    /// The key that signed it: the publisher or one of its delegates.
    #[schema(value_type = schemas::PublicKeyHex)]
    pub signer: PublicKey,
    /// The release it opens.
    #[schema(value_type = schemas::ManifestIdHex)]
    pub manifest_id: ManifestId,
    /// The release's title, if the release is held here.
    pub title: Option<String>,
    /// Issued (RFC 3339).
    pub issued_at: String,
    /// Valid from (RFC 3339).
    pub not_before: String,
    /// Valid until (RFC 3339, exclusive); `None`: no end.
    pub not_after: Option<String>,
    /// Where the buyer's node may decrypt (two-letter codes); empty: anywhere.
    pub regions: Vec<String>,
    /// `None` if it opens its release here now (or would, once the release is held); else why
    /// not (ended, revoked, not yet valid, another region...).
    pub refused: Option<String>,
}

/// `GET /v1/licences`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LicenceListReply {
    /// This node's key, which a publisher seals licences to (64 hex characters).
    #[schema(value_type = schemas::PublicKeyHex)]
    pub node_key: PublicKey,
    /// The licences held.
    pub licences: Vec<LicenceEntry>,
}
