//! The control API's contract: where the daemon's API is found (the [`files`] in its data
//! directory), its [`routes`], request and reply bodies, errors, and the [`NodeApi`] the HTTP
//! server calls. Shared by the server (`api::server`) and the typed client (`api::client`, used
//! by the CLI), so the two cannot disagree.
//!
//! The API is HTTP + JSON on 127.0.0.1 with a bearer token kept in the data directory (see
//! `api::server` for the table of routes). Ids and keys are lowercase hex; times are RFC 3339
//! strings.
//!
//! Invariant: each route's path and each file name is written once, here.

use std::{future::Future, path::PathBuf};

use licet_proto::{LicenceId, ManifestId, PublicKey, policy::RefusalReason};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

mod log_lines;
mod paid;
pub mod schemas;
mod status;

pub use log_lines::{LogLine, LogReply, MAX_LOG_LINE_BYTES, MAX_LOG_LINES};
pub use paid::{EncryptionInfo, LicenceEntry, LicenceListReply, OpenReply, OpenRequest};
pub use status::{
    ContentCounts, LimitRates, LimitsChange, LimitsReply, NetworkInfo, NodeHealth, PeerInfo,
    PeersReply, StatusReply,
};

/// The files through which clients find the daemon of a data directory. The daemon writes both
/// at start (new ones each start) and removes them on a clean shutdown.
pub mod files {
    /// The bearer token's file: 64 lowercase hex characters, mode 0600.
    pub const API_TOKEN_FILE: &str = "api-token";
    /// The API address's file: `127.0.0.1:PORT` and a newline, mode 0600.
    pub const API_ADDR_FILE: &str = "api-addr";
}

/// The control API's paths. A path with a parameter is a pattern (`{id}`), as the server's
/// router takes it; the function of the same name fills it in, for the client.
pub mod routes {
    use licet_proto::{LicenceId, ManifestId, PublicKey};

    /// `GET`: [`super::StatusReply`].
    pub const STATUS: &str = "/v1/status";
    /// `GET`: [`super::PeersReply`].
    pub const PEERS: &str = "/v1/peers";
    /// `GET`: [`super::LogReply`], the daemon's recent log lines.
    pub const LOG: &str = "/v1/log";
    /// `GET` [`super::TrustReply`]; `POST` [`super::TrustAddRequest`].
    pub const TRUST: &str = "/v1/trust";
    /// `DELETE`: one trusted publisher.
    pub const TRUST_PUBLISHER: &str = "/v1/trust/{publisher}";
    /// `GET` [`super::ContentListReply`]; `POST` a signed manifest with [`super::AddQuery`].
    pub const CONTENT: &str = "/v1/content";
    /// `GET` or `DELETE` (with [`super::RemoveQuery`]): one content item.
    pub const CONTENT_ITEM: &str = "/v1/content/{id}";
    /// `POST`: re-verify one content item's files.
    pub const CONTENT_CHECK: &str = "/v1/content/{id}/check";
    /// `POST`: pause one download.
    pub const CONTENT_PAUSE: &str = "/v1/content/{id}/pause";
    /// `POST`: resume one paused download.
    pub const CONTENT_RESUME: &str = "/v1/content/{id}/resume";
    /// `POST`: write a paid release's plaintext, [`super::OpenRequest`].
    pub const CONTENT_OPEN: &str = "/v1/content/{id}/open";
    /// `POST`: [`super::GetRequest`].
    pub const DOWNLOADS: &str = "/v1/downloads";
    /// `GET` [`super::LicenceListReply`]; `POST` a signed licence.
    pub const LICENCES: &str = "/v1/licences";
    /// `DELETE`: one licence.
    pub const LICENCE_ITEM: &str = "/v1/licences/{id}";
    /// `GET` [`super::CatalogListReply`]; `POST` a signed catalog with [`super::PublishQuery`].
    pub const CATALOGS: &str = "/v1/catalogs";
    /// `GET` [`super::LimitsReply`]; `PUT` [`super::LimitsChange`].
    pub const LIMITS: &str = "/v1/limits";
    /// `GET`, without a token: the metrics as text.
    pub const METRICS: &str = "/metrics";
    /// `GET`, without a token: the dashboard's page (it asks for the token in its URL's
    /// fragment, `#token=…`, which no request carries).
    pub const DASHBOARD: &str = "/ui/";
    /// `GET`, without a token: one of the dashboard's files (its modules and style sheet).
    pub const DASHBOARD_FILE: &str = "/ui/{file}";
    /// `GET`, without a token: the API's OpenAPI description (`api::openapi`), as JSON.
    pub const OPENAPI: &str = "/v1/openapi.json";

    /// [`TRUST_PUBLISHER`] for `publisher`.
    pub fn trust_publisher(publisher: &PublicKey) -> String {
        TRUST_PUBLISHER.replace("{publisher}", &publisher.to_hex())
    }

    /// [`CONTENT_ITEM`] for `id`.
    pub fn content_item(id: &ManifestId) -> String {
        CONTENT_ITEM.replace("{id}", &id.to_hex())
    }

    /// [`CONTENT_CHECK`] for `id`.
    pub fn content_check(id: &ManifestId) -> String {
        CONTENT_CHECK.replace("{id}", &id.to_hex())
    }

    /// [`CONTENT_PAUSE`] for `id`.
    pub fn content_pause(id: &ManifestId) -> String {
        CONTENT_PAUSE.replace("{id}", &id.to_hex())
    }

    /// [`CONTENT_RESUME`] for `id`.
    pub fn content_resume(id: &ManifestId) -> String {
        CONTENT_RESUME.replace("{id}", &id.to_hex())
    }

    /// [`CONTENT_OPEN`] for `id`.
    pub fn content_open(id: &ManifestId) -> String {
        CONTENT_OPEN.replace("{id}", &id.to_hex())
    }

    /// [`LICENCE_ITEM`] for `id`.
    pub fn licence_item(id: &LicenceId) -> String {
        LICENCE_ITEM.replace("{id}", &id.to_hex())
    }
}

/// One trusted publisher.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustEntry {
    /// The publisher's public key.
    #[schema(value_type = schemas::PublicKeyHex)]
    pub publisher: PublicKey,
    /// A name for people.
    pub name: Option<String>,
    /// Serve only what its unexpired catalog lists.
    pub require_catalog: bool,
    /// Fetch and seed everything its catalog lists, and drop what it withdraws.
    pub mirror: bool,
}

/// `POST /v1/trust`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustAddRequest {
    /// The publisher's public key.
    #[schema(value_type = schemas::PublicKeyHex)]
    pub publisher: PublicKey,
    /// A name for people.
    pub name: Option<String>,
    /// Serve only what its unexpired catalog lists.
    #[serde(default)]
    pub require_catalog: bool,
    /// Fetch and seed everything its catalog lists (into `DATA_DIR/mirror/<manifest id>`), and
    /// drop what the catalog withdraws.
    #[serde(default)]
    pub mirror: bool,
}

/// A trusted publisher's catalog as this node holds it: `GET /v1/catalogs`, and part of
/// `status` and `ls`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogInfo {
    /// The publisher.
    #[schema(value_type = schemas::PublicKeyHex)]
    pub publisher: PublicKey,
    /// Its name in the trust store.
    pub name: Option<String>,
    /// Whether only what its unexpired catalog lists is served.
    pub require_catalog: bool,
    /// Whether this node mirrors its catalog.
    pub mirror: bool,
    /// The newest accepted catalog's sequence (`None`: no catalog yet).
    pub sequence: Option<u64>,
    /// When that catalog was issued (RFC 3339).
    pub issued_at: Option<String>,
    /// When it expires (RFC 3339).
    pub expires_at: Option<String>,
    /// The same, in Unix seconds.
    pub expires_at_unix: Option<i64>,
    /// Whether it has expired (a `require_catalog` publisher's content is then not served).
    pub expired: bool,
    /// Its hash, as its signed head names it.
    pub catalog_hash: Option<String>,
    /// Manifests it lists.
    pub entries: u64,
    /// Manifests it withdraws.
    pub revoked_manifests: u64,
    /// Delegate keys it withdraws.
    pub revoked_delegates: u64,
    /// Licences of paid releases it withdraws.
    #[serde(default)]
    pub revoked_licences: u64,
}

/// `GET /v1/catalogs`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogListReply {
    /// Each trusted publisher's catalog, by publisher key.
    pub catalogs: Vec<CatalogInfo>,
}

/// `POST /v1/catalogs?head=HEX` with the signed catalog's bytes as the body.
#[derive(Clone, Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublishQuery {
    /// The catalog's signed head (`licet-manifest catalog sign` writes it to `OUT.head`), hex.
    pub head: String,
}

/// `GET /v1/trust`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustReply {
    /// All trusted publishers.
    pub publishers: Vec<TrustEntry>,
}

/// Where a content item stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContentState {
    /// Being fetched.
    Downloading,
    /// Every chunk is held and verified; it is served while the policy allows.
    Complete,
    /// Fetching stopped with an error, or a file changed on disk (see `error` and
    /// `changed_files`); `get` again resumes, `check` re-verifies files on disk.
    Failed,
    /// A download paused by the user: nothing is fetched until `resume` (or `get`), also after
    /// a restart; the chunks held are still served.
    Paused,
}

/// One content item: `GET /v1/content/{id}`, and the items of `GET /v1/content`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ContentInfo {
    /// The manifest id.
    #[schema(value_type = schemas::ManifestIdHex)]
    pub manifest_id: ManifestId,
    /// The share link.
    pub link: String,
    /// The manifest's title.
    pub title: String,
    /// The publisher.
    #[schema(value_type = schemas::PublicKeyHex)]
    pub publisher: PublicKey,
    /// Where the files are (seeded in place, or the download directory).
    #[schema(value_type = String)]
    pub dir: PathBuf,
    /// Where it stands.
    pub state: ContentState,
    /// `None` while the trust policy allows it now; otherwise the refusal (then it is neither
    /// served nor fetched).
    pub refused: Option<Refusal>,
    /// Bytes of all files.
    pub total_bytes: u64,
    /// Bytes of verified chunks held.
    pub have_bytes: u64,
    /// Chunks of all files.
    pub total_chunks: u64,
    /// Verified chunks held.
    pub have_chunks: u64,
    /// Chunks fetched from peers by this daemon process (a resumed download counts only what it
    /// fetched after the restart).
    pub fetched_chunks: u64,
    /// Peers currently sending chunks of it.
    pub sending_peers: usize,
    /// Distinct peers that sent at least one chunk of it to this daemon process.
    pub source_peers: usize,
    /// The error that stopped fetching or serving, if `state` is `failed` (for a file changed on
    /// disk: which file, what showed it, and that `licet-node check` re-verifies it).
    pub error: Option<String>,
    /// Files (paths in the manifest) verified once but now out of service because they changed
    /// on disk; `licet-node check` re-verifies them. Empty when every file is whole.
    #[serde(default)]
    pub changed_files: Vec<String>,
    /// Which chunks are held, for a picture: the item's chunks (of all files, in manifest
    /// order) split into at most [`CHUNK_MAP_CELLS`] runs of near-equal length, each given as
    /// the percentage of its chunks held, rounded down (100: every one).
    #[serde(default)]
    pub chunk_map: Vec<u8>,
    /// The manifest's licence (`None` only from a daemon older than this field).
    #[serde(default)]
    pub licence: Option<LicenceInfo>,
    /// For a paid release: how its files are encrypted. Its files (in `dir`, a folder of the
    /// node's) are then the ciphertext, and `POST /v1/content/{id}/open` writes the plaintext.
    #[serde(default)]
    pub encryption: Option<EncryptionInfo>,
}

/// A manifest's licence, in [`ContentInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LicenceInfo {
    /// The terms, for people.
    pub terms: String,
    /// The window opens (RFC 3339).
    pub not_before: String,
    /// The window closes (RFC 3339, exclusive); `None`: never.
    pub not_after: Option<String>,
    /// Where it may be fetched (two-letter codes); empty: worldwide.
    pub regions: Vec<String>,
}

/// Most cells in [`ContentInfo::chunk_map`]: enough for a picture, small for each poll.
pub const CHUNK_MAP_CELLS: usize = 128;

/// A trust-policy refusal, as shown to people and scripts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refusal {
    /// The machine-readable reason.
    #[schema(value_type = schemas::RefusalReasonName)]
    pub reason: RefusalReason,
    /// The particulars.
    pub detail: String,
}

/// `GET /v1/content`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ContentListReply {
    /// Every content item.
    pub content: Vec<ContentInfo>,
    /// Each trusted publisher's catalog, by publisher key.
    pub catalogs: Vec<CatalogInfo>,
}

/// `POST /v1/downloads`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GetRequest {
    /// A share link (`licet:<id>[?peer=…]`) or a bare manifest id.
    pub link: String,
    /// The directory to put the files in (absolute; created if missing). It may not be, hold
    /// or be inside the node's data directory.
    #[schema(value_type = String)]
    pub output_dir: PathBuf,
    /// Whether an existing regular file at one of the manifest's paths that is not the
    /// manifest's file may be overwritten. Without it such a file refuses the download (409);
    /// a file identical to the manifest's is kept as complete either way.
    #[serde(default)]
    pub replace: bool,
}

/// `DELETE /v1/content/{id}?delete_files=BOOL`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Also delete the files the download wrote (each manifest path and its `.part` name,
    /// regular files beneath its folder only), then the folders beneath it left empty. Refused
    /// (409) for content seeded with `add`.
    #[serde(default)]
    pub delete_files: bool,
}

/// The reply of `DELETE /v1/content/{id}`: what was forgotten and, with `delete_files`, deleted.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RemoveReply {
    /// The manifest id of the content forgotten.
    #[schema(value_type = schemas::ManifestIdHex)]
    pub removed: ManifestId,
    /// Its folder.
    #[schema(value_type = String)]
    pub dir: PathBuf,
    /// Files deleted (full paths); empty without `delete_files`.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub deleted_files: Vec<PathBuf>,
    /// Folders beneath `dir` deleted because they were left empty (`dir` itself stays).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub removed_folders: Vec<PathBuf>,
    /// Paths of the download that were not deleted, each with the reason (not a regular file,
    /// beneath a link, or the system refused).
    #[serde(default)]
    pub kept: Vec<KeptFile>,
}

/// A path `delete_files` left in place, and why.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KeptFile {
    /// The path (full).
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Why it was kept.
    pub reason: String,
}

/// `POST /v1/content?content_dir=DIR` with the signed manifest's bytes as the body.
#[derive(Clone, Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AddQuery {
    /// Where the content already is (absolute).
    #[param(value_type = String)]
    pub content_dir: PathBuf,
}

/// What kind of failure an API call met; decides the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    /// 400: the request is wrong (bad link, bad manifest bytes, content that does not match).
    BadRequest,
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 404: no such content or publisher.
    NotFound,
    /// 403: the trust policy refuses it (see `refusal`).
    Refused,
    /// 409: conflicts with what exists (already added with other content, …).
    Conflict,
    /// 502: no peer had it, or every peer refused it.
    Unavailable,
    /// 500: the node failed (disk, database).
    Internal,
}

/// The body of every error reply: `{"error": {...}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The kind, which also decides the HTTP status.
    pub kind: ApiErrorKind,
    /// What went wrong, for people, naming the offending id, path or peer.
    pub message: String,
    /// The trust-policy refusal, when `kind` is `refused` (or `unavailable` because peers refused).
    pub refusal: Option<Refusal>,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            refusal: None,
        }
    }

    /// A refusal by the trust policy.
    pub fn refused(kind: ApiErrorKind, message: impl Into<String>, refusal: Refusal) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            refusal: Some(refusal),
        }
    }
}

/// The error envelope on the wire.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorReply {
    /// The error.
    pub error: ApiError,
}

/// What the HTTP server needs from the node. Implemented by `node::Node`; each method is one
/// route.
pub trait NodeApi: Send + Sync + 'static {
    /// `GET /v1/status`.
    fn status(&self) -> impl Future<Output = Result<StatusReply, ApiError>> + Send;
    /// `GET /v1/peers`.
    fn peers(&self) -> impl Future<Output = Result<PeersReply, ApiError>> + Send;
    /// `GET /v1/log`.
    fn log(&self) -> impl Future<Output = Result<LogReply, ApiError>> + Send;
    /// `GET /v1/trust`.
    fn trust_list(&self) -> impl Future<Output = Result<TrustReply, ApiError>> + Send;
    /// `POST /v1/trust`.
    fn trust_add(
        &self,
        request: TrustAddRequest,
    ) -> impl Future<Output = Result<TrustEntry, ApiError>> + Send;
    /// `DELETE /v1/trust/{publisher}`.
    fn trust_remove(
        &self,
        publisher: PublicKey,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// `POST /v1/content?content_dir=DIR`, body = signed manifest bytes. Verifies the content
    /// on disk against the manifest (all cores) before it returns.
    fn content_add(
        &self,
        manifest: Vec<u8>,
        content_dir: PathBuf,
    ) -> impl Future<Output = Result<ContentInfo, ApiError>> + Send;
    /// `GET /v1/content`.
    fn content_list(&self) -> impl Future<Output = Result<ContentListReply, ApiError>> + Send;
    /// `GET /v1/content/{id}`.
    fn content_get(
        &self,
        id: ManifestId,
    ) -> impl Future<Output = Result<ContentInfo, ApiError>> + Send;
    /// `DELETE /v1/content/{id}`: stop serving and fetching it and forget it; its files stay
    /// unless `query.delete_files` (a download's files only).
    fn content_remove(
        &self,
        id: ManifestId,
        query: RemoveQuery,
    ) -> impl Future<Output = Result<RemoveReply, ApiError>> + Send;
    /// `POST /v1/content/{id}/pause`: stop fetching a download (its chunks stay and are
    /// served), also across a restart. Returns once its download task has ended.
    fn content_pause(
        &self,
        id: ManifestId,
    ) -> impl Future<Output = Result<ContentInfo, ApiError>> + Send;
    /// `POST /v1/content/{id}/resume`: fetch a paused download again from what it holds.
    fn content_resume(
        &self,
        id: ManifestId,
    ) -> impl Future<Output = Result<ContentInfo, ApiError>> + Send;
    /// `POST /v1/content/{id}/check`: re-verify its files on disk (all cores) and serve again
    /// every chunk that matches; complete again if all do. Returns once done.
    fn content_check(
        &self,
        id: ManifestId,
    ) -> impl Future<Output = Result<ContentInfo, ApiError>> + Send;
    /// `POST /v1/downloads`: find the manifest, check the policy, start fetching; returns once
    /// the manifest is accepted (or with the refusal), while the fetch goes on.
    fn download_start(
        &self,
        request: GetRequest,
    ) -> impl Future<Output = Result<ContentInfo, ApiError>> + Send;
    /// `POST /v1/content/{id}/open`: write the plaintext of a complete paid release, with the
    /// content key of a licence held that opens it here now.
    fn content_open(
        &self,
        id: ManifestId,
        request: OpenRequest,
    ) -> impl Future<Output = Result<OpenReply, ApiError>> + Send;
    /// `GET /v1/licences`.
    fn licence_list(&self) -> impl Future<Output = Result<LicenceListReply, ApiError>> + Send;
    /// `POST /v1/licences`, body = the licence file's bytes: verify and keep it.
    fn licence_add(
        &self,
        licence: Vec<u8>,
    ) -> impl Future<Output = Result<LicenceEntry, ApiError>> + Send;
    /// `DELETE /v1/licences/{id}`: forget a licence.
    fn licence_remove(&self, id: LicenceId) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// `POST /v1/catalogs?head=HEX`, body = signed catalog bytes: accept it as its
    /// publisher's newest catalog (the publisher must be trusted) and pass it on to the swarm.
    fn catalog_publish(
        &self,
        catalog: Vec<u8>,
        head: Vec<u8>,
    ) -> impl Future<Output = Result<CatalogInfo, ApiError>> + Send;
    /// `GET /v1/catalogs`.
    fn catalog_list(&self) -> impl Future<Output = Result<CatalogListReply, ApiError>> + Send;
    /// `GET /v1/limits`.
    fn limits(&self) -> impl Future<Output = Result<LimitsReply, ApiError>> + Send;
    /// `PUT /v1/limits`: change the limits in force until restart (or back to the configured).
    fn limits_change(
        &self,
        change: LimitsChange,
    ) -> impl Future<Output = Result<LimitsReply, ApiError>> + Send;
    /// `GET /metrics` (no token needed): Prometheus text.
    fn metrics_text(&self) -> impl Future<Output = String> + Send;
}
