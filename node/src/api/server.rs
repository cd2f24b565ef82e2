//! The control API's HTTP server: HTTP/1.1 + JSON on 127.0.0.1, generic over [`NodeApi`].
//!
//! `licet-node run` binds a loopback listener, writes a fresh bearer token to
//! `DATA_DIR/api-token` ([`create_token`]) and the listener's address to `DATA_DIR/api-addr`
//! ([`write_api_addr`]), then calls [`serve`]. The typed client (`api::client`, used by the CLI's
//! other subcommands) reads both files and calls the routes below. On a clean shutdown the daemon calls [`remove_api_files`].
//!
//! # Routes
//!
//! The paths and file names are written once, in [`crate::contract`]. Every `/v1/` route but
//! `/v1/openapi.json` needs `Authorization: Bearer <token>`, the 64 hex characters in
//! `DATA_DIR/api-token`. The handlers and their OpenAPI operations are in `api::handlers`;
//! `GET /v1/openapi.json` (and `licet-node api-doc`) gives the whole description
//! (`api::openapi`). Request and reply types are in [`crate::contract`]; ids and keys are
//! lowercase hex.
//!
//! | method | path | body | reply | errors |
//! |---|---|---|---|---|
//! | `GET` | `/v1/status` | — | 200 [`StatusReply`] | 401, 500 |
//! | `GET` | `/v1/peers` | — | 200 [`PeersReply`] | 401, 500 |
//! | `GET` | `/v1/log` | — | 200 [`LogReply`]: the daemon's recent log lines | 401, 500 |
//! | `GET` | `/v1/trust` | — | 200 [`TrustReply`] | 401, 500 |
//! | `POST` | `/v1/trust` | JSON [`TrustAddRequest`] | 200 [`TrustEntry`] | 400 bad JSON or key, 401, 500 |
//! | `DELETE` | `/v1/trust/{publisher}` | — | 204, empty | 400 not a public key, 401, 404 not trusted, 500 |
//! | `POST` | `/v1/content?content_dir=DIR` | the signed manifest's bytes (`application/octet-stream`, at most [`max_manifest_request_bytes`]); `DIR` absolute | 200 [`ContentInfo`] once the content on disk is verified | 400 bad manifest, relative `DIR` or content that does not match, 401, 403 refused by the trust policy, 409 already added with other content, 500 |
//! | `GET` | `/v1/content` | — | 200 [`ContentListReply`] | 401, 500 |
//! | `GET` | `/v1/content/{id}` | — | 200 [`ContentInfo`] | 400 not a manifest id, 401, 404, 500 |
//! | `DELETE` | `/v1/content/{id}?delete_files=BOOL` | — | 200 [`RemoveReply`]: forgotten; the files stay unless `delete_files` (a download's files only: each manifest path and its `.part` name, regular files beneath its folder, never through a link; then the folders beneath it left empty) | 400 not a manifest id or a bad query, 401, 404, 409 `delete_files` of content seeded with `add`, 500 |
//! | `POST` | `/v1/content/{id}/pause` | — | 200 [`ContentInfo`] (`state` paused) once its download task has ended; the chunks held stay and are served, the pause holds across a restart | 400 not a manifest id, 401, 404, 409 not a download being fetched (complete, failed, paused, or seeded with `add`), 500 |
//! | `POST` | `/v1/content/{id}/resume` | — | 200 [`ContentInfo`] (`state` downloading): fetching goes on from the chunks held | 400 not a manifest id, 401, 404, 409 not paused, 500 |
//! | `POST` | `/v1/content/{id}/check` | — | 200 [`ContentInfo`] once every file is re-verified on disk: chunks that match are served again (`state` complete if all do; else failed, with `error` and `changed_files`) | 400 not a manifest id, 401, 404, 409 being downloaded, 500 |
//! | `POST` | `/v1/downloads` | JSON [`GetRequest`] (`output_dir` absolute) | 200 [`ContentInfo`] once the manifest is accepted; the fetch goes on (poll `GET /v1/content/{id}`) | 400 bad link, relative dir, or a dir that is, holds or is inside the data directory; 401; 403 refused; 409 already held elsewhere, a file of another held item at one of its paths, or a link, a folder, or (without `replace`) a file that is not the manifest's at one of its paths; 502 no peer had it or every peer refused; 500 |
//! | `POST` | `/v1/content/{id}/open` | JSON [`OpenRequest`] (`output_dir` absolute) | 200 [`OpenReply`] once a complete paid release's plaintext is written, with a licence held that opens it here now | 400 not a manifest id, relative dir, a dir that is, holds or is inside the data directory, or a release that is not encrypted; 401; 403 no licence opens it (each one's reason) or the policy refuses it; 404; 409 not complete yet, a file of another held item, or a link, a folder, or (without `replace`) a file that is not the plaintext at one of its paths; 500 |
//! | `GET` | `/v1/licences` | — | 200 [`LicenceListReply`]: this node's key and each licence held, with why it does not open its release now, if it does not | 401, 500 |
//! | `POST` | `/v1/licences` | the licence file's bytes (`application/octet-stream`, at most [`max_licence_request_bytes`]) | 200 [`LicenceEntry`] once kept | 400 not a licence, 401, 403 for another node, ended, untrusted publisher, revoked, or a signer that may not sign it, 500 |
//! | `DELETE` | `/v1/licences/{id}` | — | 204, empty | 400 not a licence id, 401, 404 not held, 500 |
//! | `POST` | `/v1/catalogs?head=HEX` | the catalog file's bytes, as `licet-manifest catalog sign` writes it (`application/octet-stream`, at most [`max_catalog_request_bytes`]); `HEX` its signed head | 200 [`CatalogInfo`] once the catalog is the publisher's newest here; it goes on to the swarm | 400 bad catalog or head, or a head of another catalog, 401, 403 untrusted publisher, expired, or older than the catalog held (rollback), 500 |
//! | `GET` | `/v1/catalogs` | — | 200 [`CatalogListReply`]: each trusted publisher's catalog | 401, 500 |
//! | `GET` | `/v1/limits` | — | 200 [`LimitsReply`] | 401, 500 |
//! | `PUT` | `/v1/limits` | JSON [`LimitsChange`] (bytes per second, 0 none; `reset` first goes back to the configured limits) | 200 [`LimitsReply`]; the change lasts until restart | 400 a rate out of range, 401, 500 |
//! | `GET` | `/ui/`, `/ui/{file}` | — (no token; the page asks for it) | 200 the dashboard's page and modules, embedded in the binary, with a strict `Content-Security-Policy` ([`dashboard`]) | 404 |
//! | `GET` | `/metrics` | — (no token) | 200 OpenMetrics 1.0 text if `Accept` asks for `application/openmetrics-text`, else Prometheus text 0.0.4 (`crate::metrics::format`) | — |
//! | `GET` | `/v1/openapi.json` | — (no token: it holds no secret, the same for every daemon of this version) | 200 the OpenAPI 3.1 description of these routes | — |
//!
//! Every error reply, including a missing token, a malformed JSON body, a bad path parameter,
//! an unknown path and a wrong method, is [`ErrorReply`] JSON:
//! `{"error": {"kind": "bad_request", "message": "…", "refusal": null}}`, and its HTTP status is
//! decided by `kind` alone ([`http_status`]): `bad_request` 400, `unauthorized` 401, `refused`
//! 403, `not_found` 404, `conflict` 409, `internal` 500, `unavailable` 502. A refusal by the trust
//! policy carries `refusal: {"reason": "Expired", "detail": "…"}`.
//!
//! # Invariants
//!
//! - No handler runs (on any route, `/metrics` and unknown paths included) unless the request is
//!   addressed to the daemon's own loopback names: its `Host` (and an absolute-form target's
//!   authority) must be `localhost` or a loopback address (`127.0.0.1`, `[::1]`, …) with the
//!   port it listens on; anything else is a 403 `refused`. A web page that rebinds its own name to
//!   127.0.0.1 sends its own name, so it cannot read the API. No CORS headers are sent.
//! - No handler of a method other than `GET` and `HEAD` runs for a request whose `Origin` is
//!   not the daemon's own (`http://` and one of the names above): another site's page cannot
//!   make the daemon act. Programs that send no `Origin` (the CLI, curl) are not affected.
//! - No `/v1/` handler runs unless the request carried the token, but that of
//!   `/v1/openapi.json`: the description holds no secret, and tools read it before they have a
//!   token. The token is compared in constant time for its length, and never logged or echoed.
//! - Connections are bounded in number and in idle time ([`crate::api::conns`]).
//! - Request bodies are bounded before they are buffered: JSON bodies at [`MAX_JSON_BODY_BYTES`],
//!   manifests at [`max_manifest_request_bytes`], catalogs at [`max_catalog_request_bytes`].
//! - Paths the daemon acts on (`content_dir`, `output_dir`) must be absolute: the daemon's working
//!   directory is not the client's, so a relative path would silently name another place.
//! - This module only translates HTTP to [`NodeApi`] calls and back; it holds no node state.
//! - Binding is the caller's job, and the caller binds 127.0.0.1 only.

use std::{future::Future, io, net::SocketAddr, path::Path, sync::Arc};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderValue, Method, StatusCode, Uri, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get},
};
use licet_proto::signed::SignedKind;

#[cfg(doc)]
use crate::contract::{
    CatalogInfo, CatalogListReply, ContentInfo, ContentListReply, GetRequest, LicenceEntry,
    LicenceListReply, LimitsChange, LimitsReply, OpenReply, OpenRequest, PeersReply, RemoveReply,
    StatusReply, TrustAddRequest, TrustEntry, TrustReply,
};
use crate::{
    api::{
        conns::{self, ConnectionLimits},
        dashboard,
        handlers::{
            catalog_list, catalog_publish, content_add, content_check, content_get, content_list,
            content_pause, content_remove, content_resume, description, download_start, limits,
            limits_change, log, metrics, peers, status, trust_add, trust_list, trust_remove,
        },
        licence_handlers,
    },
    contract::{
        ApiError, ApiErrorKind, ErrorReply, NodeApi,
        files::{API_ADDR_FILE, API_TOKEN_FILE},
        routes,
    },
    store::atomic_file::write_atomic,
};

/// Largest JSON request body: the requests are a key, a name, a link (at most 16 peer hints of
/// 512 bytes) and a path, far below this.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;
/// Largest `POST /v1/content` body: the largest signed manifest envelope.
pub fn max_manifest_request_bytes() -> usize {
    SignedKind::Manifest.max_envelope_bytes()
}
/// Largest `POST /v1/catalogs` body: the largest catalog file (its signed root and every part).
pub fn max_catalog_request_bytes() -> usize {
    licet_proto::catalog_parts::MAX_CATALOG_FILE_BYTES
}
/// Largest `POST /v1/licences` body: the largest signed licence envelope.
pub fn max_licence_request_bytes() -> usize {
    SignedKind::Licence.max_envelope_bytes()
}
/// Random bytes in an API token (shown as twice as many hex characters).
const TOKEN_BYTES: usize = 32;

/// The HTTP status of an error of `kind`.
pub fn http_status(kind: ApiErrorKind) -> StatusCode {
    match kind {
        ApiErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ApiErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ApiErrorKind::Refused => StatusCode::FORBIDDEN,
        ApiErrorKind::NotFound => StatusCode::NOT_FOUND,
        ApiErrorKind::Conflict => StatusCode::CONFLICT,
        ApiErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ApiErrorKind::Unavailable => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = http_status(self.kind);
        if self.kind == ApiErrorKind::Internal {
            tracing::warn!(error = %self.message, "control API call failed");
        }
        let unauthorized = self.kind == ApiErrorKind::Unauthorized;
        let mut response = (status, Json(ErrorReply { error: self })).into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"licet-node\""),
            );
        }
        response
    }
}

pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ApiErrorKind::BadRequest, message)
}

/// Serves the control API on `listener` until `shutdown` completes, then finishes the requests
/// in flight and returns.
///
/// `token` is the bearer token every `/v1/` request must carry (from [`create_token`]). The
/// caller binds `listener` to 127.0.0.1. Connections are bounded as [`crate::api::conns`] says.
pub async fn serve<N: NodeApi>(
    node: Arc<N>,
    listener: tokio::net::TcpListener,
    token: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let port = listener.local_addr()?.port();
    let routes = router(node, token, port);
    conns::serve_connections(listener, routes, ConnectionLimits::default(), shutdown).await
}

/// The control API's routes (see the module docs), for [`serve`] or for embedding; `port` is
/// the one the API listens on, the only one its `Host` check lets through.
pub fn router<N: NodeApi>(node: Arc<N>, token: String, port: u16) -> Router {
    let token: Arc<str> = Arc::from(token);
    let v1 = Router::new()
        .route(routes::STATUS, get(status::<N>))
        .route(routes::PEERS, get(peers::<N>))
        .route(routes::LOG, get(log::<N>))
        .route(routes::TRUST, get(trust_list::<N>).post(trust_add::<N>))
        .route(routes::TRUST_PUBLISHER, delete(trust_remove::<N>))
        .route(
            routes::CONTENT,
            get(content_list::<N>)
                .post(content_add::<N>)
                .layer(DefaultBodyLimit::max(max_manifest_request_bytes())),
        )
        .route(
            routes::CONTENT_ITEM,
            get(content_get::<N>).delete(content_remove::<N>),
        )
        .route(
            routes::CONTENT_CHECK,
            axum::routing::post(content_check::<N>),
        )
        .route(
            routes::CONTENT_PAUSE,
            axum::routing::post(content_pause::<N>),
        )
        .route(
            routes::CONTENT_RESUME,
            axum::routing::post(content_resume::<N>),
        )
        .route(
            routes::CONTENT_OPEN,
            axum::routing::post(licence_handlers::content_open::<N>),
        )
        .route(routes::DOWNLOADS, axum::routing::post(download_start::<N>))
        .route(
            routes::LICENCES,
            get(licence_handlers::licence_list::<N>)
                .post(licence_handlers::licence_add::<N>)
                .layer(DefaultBodyLimit::max(max_licence_request_bytes())),
        )
        .route(
            routes::LICENCE_ITEM,
            delete(licence_handlers::licence_remove::<N>),
        )
        .route(routes::LIMITS, get(limits::<N>).put(limits_change::<N>))
        .route(
            routes::CATALOGS,
            get(catalog_list::<N>)
                .post(catalog_publish::<N>)
                .layer(DefaultBodyLimit::max(max_catalog_request_bytes())),
        )
        .route_layer(middleware::from_fn_with_state(token, require_token));
    Router::new()
        .merge(v1)
        .route(routes::METRICS, get(metrics::<N>))
        .merge(dashboard::routes())
        .route(routes::OPENAPI, get(description))
        .method_not_allowed_fallback(wrong_method)
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            LoopbackHosts::for_port(port),
            require_own_origin,
        ))
        .layer(middleware::from_fn_with_state(
            LoopbackHosts::for_port(port),
            require_loopback_host,
        ))
        .with_state(node)
}

/// The `Host` values the API answers to: `localhost` or a loopback address, with the port it
/// listens on.
#[derive(Clone)]
struct LoopbackHosts {
    port: u16,
}

impl LoopbackHosts {
    fn for_port(port: u16) -> LoopbackHosts {
        LoopbackHosts { port }
    }

    /// Whether `host` (a `Host` value or a target's authority) names this API. A value without
    /// a port means port 80, as in HTTP.
    fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name, port.parse::<u16>().ok()),
            _ => (host.as_str(), Some(80)),
        };
        port == Some(self.port) && is_loopback_name(name)
    }

    /// Whether `origin` (an `Origin` value) is a page this API served itself:
    /// `http://` and a name [`LoopbackHosts::allows`].
    fn allows_origin(&self, origin: &str) -> bool {
        origin
            .strip_prefix("http://")
            .is_some_and(|host| !host.contains('/') && self.allows(host))
    }

    fn expected(&self) -> String {
        let port = self.port;
        format!("127.0.0.1:{port}, localhost:{port} or [::1]:{port} (any loopback address)")
    }
}

/// `localhost`, or an IP address literal (IPv6 in brackets) of the loopback interface: names
/// only this machine's own programs use. A rebinding page's `Host` is its own domain name.
fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" {
        return true;
    }
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback()),
    }
}

/// Lets a request through only if its `Host` (and its target's authority, if the target is in
/// absolute form) is `localhost` or a loopback address with the API's port (see the module
/// docs).
async fn require_loopback_host(
    State(hosts): State<LoopbackHosts>,
    request: Request,
    next: Next,
) -> Response {
    let host = request.headers().get(header::HOST);
    let authority = request.uri().authority().map(|a| a.as_str());
    let refusal = match (host, authority) {
        (None, None) => Some("no Host header".to_owned()),
        (Some(value), _) if !value.to_str().is_ok_and(|h| hosts.allows(h)) => Some(format!(
            "Host {:?} is not this daemon",
            String::from_utf8_lossy(value.as_bytes())
        )),
        (_, Some(authority)) if !hosts.allows(authority) => Some(format!(
            "the target's host {authority:?} is not this daemon"
        )),
        _ => None,
    };
    match refusal {
        None => next.run(request).await,
        Some(what) => ApiError::new(
            ApiErrorKind::Refused,
            format!(
                "{what}: the control API answers only requests addressed to {} (against DNS \
                 rebinding)",
                hosts.expected()
            ),
        )
        .into_response(),
    }
}

/// Lets a request that may change something (any method but `GET` and `HEAD`) through only if
/// it carries no `Origin` or the daemon's own (see the module docs): a page of another site
/// cannot make the daemon act, even where it somehow holds the token.
async fn require_own_origin(
    State(hosts): State<LoopbackHosts>,
    request: Request,
    next: Next,
) -> Response {
    let reads_only = matches!(*request.method(), Method::GET | Method::HEAD);
    match request.headers().get(header::ORIGIN) {
        Some(origin) if !reads_only && !origin.to_str().is_ok_and(|o| hosts.allows_origin(o)) => {
            ApiError::new(
                ApiErrorKind::Refused,
                format!(
                    "a {} from the page of origin {:?}: the control API takes changes only from \
                     its own dashboard (http:// and {}) or from programs that send no Origin",
                    request.method(),
                    String::from_utf8_lossy(origin.as_bytes()),
                    hosts.expected()
                ),
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Lets a request through only with `Authorization: Bearer <token>`.
async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match given {
        Some(given) if tokens_match(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(
            ApiErrorKind::Unauthorized,
            "wrong bearer token (the daemon writes a new one to DATA_DIR/api-token each start)",
        )
        .into_response(),
        None => ApiError::new(
            ApiErrorKind::Unauthorized,
            "no bearer token: send `Authorization: Bearer <the token in DATA_DIR/api-token>`",
        )
        .into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Compares two tokens in time that depends only on their lengths (the length of a token is
/// public: 64 hex characters).
fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let difference = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ApiErrorKind::NotFound,
        format!(
            "no route {method} {} (GET {} describes every route)",
            uri.path(),
            routes::OPENAPI
        ),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    bad_request(format!("{} does not accept {method}", uri.path()))
}

/// Makes a new API token (32 random bytes as 64 lowercase hex characters) and writes it to
/// `data_dir/api-token` atomically with mode 0600, replacing any older token.
pub fn create_token(data_dir: &Path) -> io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| io::Error::other(format!("the system random source failed: {e}")))?;
    let token = hex::encode(bytes);
    bytes.fill(0);
    write_atomic(&data_dir.join(API_TOKEN_FILE), token.as_bytes(), 0o600)?;
    Ok(token)
}

/// Writes `addr` (and a newline) to `data_dir/api-addr` atomically with mode 0600, replacing
/// any older one (only the daemon's user runs its clients).
pub fn write_api_addr(data_dir: &Path, addr: SocketAddr) -> io::Result<()> {
    write_atomic(
        &data_dir.join(API_ADDR_FILE),
        format!("{addr}\n").as_bytes(),
        0o600,
    )
}

/// Removes `api-addr` and `api-token` from `data_dir` (on a clean shutdown, so clients see at
/// once that no daemon is running). Files already gone are fine; other failures are logged.
pub fn remove_api_files(data_dir: &Path) {
    // The address first: a client that finds no address never reads the token.
    for name in [API_ADDR_FILE, API_TOKEN_FILE] {
        let path = data_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove API file"),
        }
    }
}

/// A fake [`NodeApi`] and a server on loopback, shared by this module's tests and the CLI's.
#[cfg(test)]
pub(crate) mod fake {
    use std::{
        collections::VecDeque,
        net::SocketAddr,
        path::PathBuf,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use licet_proto::{LicenceId, ManifestId, PublicKey, SecretKey};

    use crate::contract::{
        ApiError, CatalogInfo, CatalogListReply, ContentCounts, ContentInfo, ContentListReply,
        ContentState, GetRequest, LicenceEntry, LicenceListReply, LimitsChange, LimitsReply,
        LogLine, LogReply, NodeApi, OpenReply, OpenRequest, PeerInfo, PeersReply, RemoveQuery,
        RemoveReply, StatusReply, TrustAddRequest, TrustEntry, TrustReply,
    };

    /// Every await in tests goes through this.
    pub(crate) async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), future)
            .await
            .expect("timed out")
    }

    /// One call the fake received.
    #[derive(Clone, Debug)]
    pub(crate) enum Call {
        Status,
        Log,
        Peers,
        TrustList,
        TrustAdd(TrustAddRequest),
        TrustRemove(PublicKey),
        ContentAdd(Vec<u8>, PathBuf),
        ContentList,
        ContentGet(ManifestId),
        ContentRemove(ManifestId, bool),
        ContentCheck(ManifestId),
        ContentPause(ManifestId),
        ContentResume(ManifestId),
        DownloadStart(GetRequest),
        ContentOpen(ManifestId, OpenRequest),
        LicenceList,
        LicenceAdd(Vec<u8>),
        LicenceRemove(LicenceId),
        CatalogPublish(Vec<u8>, Vec<u8>),
        CatalogList,
        Limits,
        LimitsChange(LimitsChange),
        Metrics,
    }

    /// Records calls; answers with canned replies, or `fail_with` if set.
    #[derive(Default)]
    pub(crate) struct FakeNode {
        pub calls: Mutex<Vec<Call>>,
        pub fail_with: Mutex<Option<ApiError>>,
        /// Replies of `content_get`, in turn; the last one repeats.
        pub content_replies: Mutex<VecDeque<ContentInfo>>,
        /// The reply of `download_start`, `content_add` and `content_check`, if not the default.
        pub start_reply: Mutex<Option<ContentInfo>>,
        /// Errors of `content_open`, in turn, before it answers (for `get` of a paid release).
        pub open_errors: Mutex<VecDeque<ApiError>>,
    }

    pub(crate) fn publisher() -> PublicKey {
        SecretKey::from_seed(&[9; 32]).public_key()
    }

    pub(crate) fn content(id: ManifestId, state: ContentState, have: u64) -> ContentInfo {
        ContentInfo {
            manifest_id: id,
            link: format!("licet:{id}"),
            title: "Episode 1".to_owned(),
            publisher: publisher(),
            dir: PathBuf::from("/srv/episode-1"),
            state,
            refused: None,
            total_bytes: 4096,
            have_bytes: have,
            total_chunks: 4,
            have_chunks: have / 1024,
            fetched_chunks: have / 1024,
            sending_peers: 1,
            source_peers: 2,
            error: None,
            chunk_map: vec![100, 50, 0, 0],
            licence: None,
            changed_files: Vec::new(),
            encryption: None,
        }
    }

    pub(crate) fn licence_entry() -> LicenceEntry {
        LicenceEntry {
            id: "cd".repeat(32),
            publisher: publisher(),
            signer: publisher(),
            manifest_id: ManifestId([2; 32]),
            title: Some("Episode 1".to_owned()),
            issued_at: "2027-01-15T08:00:00Z".to_owned(),
            not_before: "2027-01-15T08:00:00Z".to_owned(),
            not_after: None,
            regions: Vec::new(),
            refused: None,
        }
    }

    pub(crate) fn catalog_info() -> CatalogInfo {
        CatalogInfo {
            publisher: publisher(),
            name: Some("Acme".to_owned()),
            require_catalog: true,
            mirror: false,
            sequence: Some(7),
            issued_at: Some("2027-01-15T08:00:00Z".to_owned()),
            expires_at: Some("2027-01-22T08:00:00Z".to_owned()),
            expires_at_unix: Some(1_800_000_000),
            expired: false,
            catalog_hash: Some("ab".repeat(32)),
            entries: 12,
            revoked_manifests: 2,
            revoked_delegates: 1,
            revoked_licences: 0,
        }
    }

    impl FakeNode {
        fn record(&self, call: Call) -> Result<(), ApiError> {
            self.calls.lock().unwrap().push(call);
            match self.fail_with.lock().unwrap().clone() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }

        pub(crate) fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        pub(crate) fn fail(&self, error: ApiError) {
            *self.fail_with.lock().unwrap() = Some(error);
        }

        fn start_reply(&self, id: ManifestId) -> ContentInfo {
            self.start_reply
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| content(id, ContentState::Downloading, 0))
        }
    }

    impl NodeApi for FakeNode {
        async fn status(&self) -> Result<StatusReply, ApiError> {
            self.record(Call::Status)?;
            Ok(StatusReply {
                peer_id: "12D3KooWFake".to_owned(),
                listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWFake".to_owned()],
                version: "0.1.0".to_owned(),
                region: Some("DE".to_owned()),
                connected_peers: 3,
                trusted_publishers: 1,
                content: ContentCounts {
                    complete: 1,
                    downloading: 2,
                    failed: 0,
                    paused: 0,
                    changed: 0,
                },
                uptime_seconds: 3725,
                catalogs: vec![catalog_info()],
                health: Default::default(),
                network: Default::default(),
                limits: Default::default(),
            })
        }

        async fn log(&self) -> Result<LogReply, ApiError> {
            self.record(Call::Log)?;
            Ok(LogReply {
                lines: vec![LogLine {
                    seq: 1,
                    time: "2026-12-03T09:00:00.000Z".to_owned(),
                    level: "INFO".to_owned(),
                    target: "licet_node::daemon::run".to_owned(),
                    message: "licet-node running".to_owned(),
                }],
            })
        }

        async fn peers(&self) -> Result<PeersReply, ApiError> {
            self.record(Call::Peers)?;
            Ok(PeersReply {
                peers: vec![PeerInfo {
                    peer_id: "12D3KooWPeer".to_owned(),
                    addrs: vec!["/ip4/10.0.0.2/tcp/4001".to_owned()],
                    relayed: false,
                    bytes_in: 2048,
                    bytes_out: 0,
                    banned: false,
                    ban_reason: None,
                    banned_until: None,
                    offences: 0,
                }],
            })
        }

        async fn trust_list(&self) -> Result<TrustReply, ApiError> {
            self.record(Call::TrustList)?;
            Ok(TrustReply {
                publishers: vec![TrustEntry {
                    publisher: publisher(),
                    name: Some("Acme".to_owned()),
                    require_catalog: true,
                    mirror: false,
                }],
            })
        }

        async fn trust_add(&self, request: TrustAddRequest) -> Result<TrustEntry, ApiError> {
            self.record(Call::TrustAdd(request.clone()))?;
            Ok(TrustEntry {
                publisher: request.publisher,
                name: request.name,
                require_catalog: request.require_catalog,
                mirror: request.mirror,
            })
        }

        async fn trust_remove(&self, publisher: PublicKey) -> Result<(), ApiError> {
            self.record(Call::TrustRemove(publisher))
        }

        async fn content_add(
            &self,
            manifest: Vec<u8>,
            content_dir: PathBuf,
        ) -> Result<ContentInfo, ApiError> {
            self.record(Call::ContentAdd(manifest, content_dir.clone()))?;
            let mut info = self.start_reply(ManifestId([1; 32]));
            info.dir = content_dir;
            Ok(info)
        }

        async fn content_list(&self) -> Result<ContentListReply, ApiError> {
            self.record(Call::ContentList)?;
            Ok(ContentListReply {
                content: vec![content(ManifestId([1; 32]), ContentState::Complete, 4096)],
                catalogs: vec![catalog_info()],
            })
        }

        async fn content_get(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
            self.record(Call::ContentGet(id))?;
            let mut replies = self.content_replies.lock().unwrap();
            let reply = if replies.len() > 1 {
                replies.pop_front()
            } else {
                replies.front().cloned()
            };
            Ok(reply.unwrap_or_else(|| content(id, ContentState::Complete, 4096)))
        }

        async fn content_remove(
            &self,
            id: ManifestId,
            query: RemoveQuery,
        ) -> Result<RemoveReply, ApiError> {
            self.record(Call::ContentRemove(id, query.delete_files))?;
            let dir = PathBuf::from("/srv/episode-1");
            let deleted = if query.delete_files {
                vec![dir.join("ep1.mkv")]
            } else {
                Vec::new()
            };
            Ok(RemoveReply {
                removed: id,
                dir,
                deleted_files: deleted,
                removed_folders: Vec::new(),
                kept: Vec::new(),
            })
        }

        async fn content_pause(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
            self.record(Call::ContentPause(id))?;
            Ok(content(id, ContentState::Paused, 1024))
        }

        async fn content_resume(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
            self.record(Call::ContentResume(id))?;
            Ok(content(id, ContentState::Downloading, 1024))
        }

        async fn content_check(&self, id: ManifestId) -> Result<ContentInfo, ApiError> {
            self.record(Call::ContentCheck(id))?;
            let reply = self.start_reply.lock().unwrap().clone();
            Ok(reply.unwrap_or_else(|| content(id, ContentState::Complete, 4096)))
        }

        async fn download_start(&self, request: GetRequest) -> Result<ContentInfo, ApiError> {
            self.record(Call::DownloadStart(request.clone()))?;
            let mut info = self.start_reply(ManifestId([2; 32]));
            info.dir = request.output_dir;
            Ok(info)
        }

        async fn content_open(
            &self,
            id: ManifestId,
            request: OpenRequest,
        ) -> Result<OpenReply, ApiError> {
            self.record(Call::ContentOpen(id, request.clone()))?;
            if let Some(error) = self.open_errors.lock().unwrap().pop_front() {
                return Err(error);
            }
            Ok(OpenReply {
                manifest_id: id,
                output_dir: request.output_dir,
                licence_id: "cd".repeat(32),
                files_written: 2,
                files_kept: 0,
                bytes: 4000,
            })
        }

        async fn licence_list(&self) -> Result<LicenceListReply, ApiError> {
            self.record(Call::LicenceList)?;
            Ok(LicenceListReply {
                node_key: publisher(),
                licences: vec![licence_entry()],
            })
        }

        async fn licence_add(&self, licence: Vec<u8>) -> Result<LicenceEntry, ApiError> {
            self.record(Call::LicenceAdd(licence))?;
            Ok(licence_entry())
        }

        async fn licence_remove(&self, id: LicenceId) -> Result<(), ApiError> {
            self.record(Call::LicenceRemove(id))
        }

        async fn catalog_publish(
            &self,
            catalog: Vec<u8>,
            head: Vec<u8>,
        ) -> Result<CatalogInfo, ApiError> {
            self.record(Call::CatalogPublish(catalog, head))?;
            Ok(catalog_info())
        }

        async fn catalog_list(&self) -> Result<CatalogListReply, ApiError> {
            self.record(Call::CatalogList)?;
            Ok(CatalogListReply {
                catalogs: vec![catalog_info()],
            })
        }

        async fn limits(&self) -> Result<LimitsReply, ApiError> {
            self.record(Call::Limits)?;
            Ok(LimitsReply::default())
        }

        async fn limits_change(&self, change: LimitsChange) -> Result<LimitsReply, ApiError> {
            self.record(Call::LimitsChange(change))?;
            let mut reply = LimitsReply::default();
            reply.in_force.upload = change.upload.unwrap_or(0);
            reply.changed = change;
            Ok(reply)
        }

        async fn metrics_text(&self) -> String {
            self.calls.lock().unwrap().push(Call::Metrics);
            "# TYPE licet_chunks_served counter\nlicet_chunks_served_total 7\n".to_owned()
        }
    }

    /// A running server; shut down when dropped.
    pub(crate) struct TestServer {
        pub addr: SocketAddr,
        pub token: String,
        pub node: Arc<FakeNode>,
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl TestServer {
        /// Starts `serve` on 127.0.0.1:0 with a fresh token.
        pub(crate) async fn start(node: Arc<FakeNode>, token: String) -> TestServer {
            Self::start_with(node, token, None).await
        }

        /// Starts `serve` on 127.0.0.1:0, or the same routes within `limits` if given.
        pub(crate) async fn start_with(
            node: Arc<FakeNode>,
            token: String,
            limits: Option<crate::api::conns::ConnectionLimits>,
        ) -> TestServer {
            let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
            let stop = async move {
                let _ = stop.await;
            };
            let task = match limits {
                None => tokio::spawn(super::serve(node.clone(), listener, token.clone(), stop)),
                Some(limits) => tokio::spawn(crate::api::conns::serve_connections(
                    listener,
                    super::router(node.clone(), token.clone(), addr.port()),
                    limits,
                    stop,
                )),
            };
            TestServer {
                addr,
                token,
                node,
                shutdown: Some(shutdown),
                task,
            }
        }

        pub(crate) fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        /// Asks for a graceful shutdown and waits for `serve` to return.
        pub(crate) async fn stop(mut self) -> std::io::Result<()> {
            if let Some(shutdown) = self.shutdown.take() {
                let _ = shutdown.send(());
            }
            within(&mut self.task).await.unwrap()
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use licet_proto::{ManifestId, policy::RefusalReason};
    use reqwest::{Method, StatusCode};

    use super::{
        fake::{Call, FakeNode, TestServer, publisher, within},
        *,
    };
    use crate::contract::{
        ContentInfo, ContentListReply, ContentState, LimitsReply, PeersReply, Refusal, RemoveReply,
        StatusReply, TrustEntry, TrustReply,
    };

    const TOKEN: &str = "5e3f0000000000000000000000000000000000000000000000000000000000aa";

    async fn server() -> TestServer {
        TestServer::start(Arc::new(FakeNode::default()), TOKEN.to_owned()).await
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    /// Sends `method path` with the right token and an optional JSON body.
    async fn call(
        server: &TestServer,
        method: Method,
        path: &str,
        json: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = client()
            .request(method, server.url(path))
            .bearer_auth(&server.token);
        if let Some(json) = json {
            request = request.json(&json);
        }
        within(request.send()).await.unwrap()
    }

    async fn error_of(response: reqwest::Response) -> ApiError {
        let bytes = within(response.bytes()).await.unwrap();
        let reply: ErrorReply = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "not an ErrorReply ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        reply.error
    }

    async fn json_of<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> T {
        assert!(response.status().is_success(), "{}", response.status());
        within(response.json()).await.unwrap()
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match(b"abcd", b"abcd"));
        assert!(!tokens_match(b"abce", b"abcd"));
        assert!(!tokens_match(b"abc", b"abcd"));
        assert!(!tokens_match(b"", b"abcd"));
        assert_eq!(bearer_token("Bearer xyz"), Some("xyz"));
        assert_eq!(bearer_token("bearer   xyz "), Some("xyz"));
        assert_eq!(bearer_token("Basic xyz"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn every_kind_has_its_status() {
        let cases = [
            (ApiErrorKind::BadRequest, 400),
            (ApiErrorKind::Unauthorized, 401),
            (ApiErrorKind::Refused, 403),
            (ApiErrorKind::NotFound, 404),
            (ApiErrorKind::Conflict, 409),
            (ApiErrorKind::Internal, 500),
            (ApiErrorKind::Unavailable, 502),
        ];
        for (kind, status) in cases {
            assert_eq!(http_status(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn v1_routes_need_the_token() {
        let server = server().await;
        let wrong_same_length = format!("{}b", &TOKEN[..TOKEN.len() - 1]);
        for (method, path) in [
            (Method::GET, "/v1/status"),
            (Method::GET, "/v1/peers"),
            (Method::GET, "/v1/trust"),
            (Method::POST, "/v1/trust"),
            (Method::DELETE, "/v1/trust/00"),
            (Method::POST, "/v1/content?content_dir=/x"),
            (Method::GET, "/v1/content"),
            (Method::GET, "/v1/content/00"),
            (Method::DELETE, "/v1/content/00"),
            (Method::POST, "/v1/downloads"),
        ] {
            for auth in [
                None,
                Some("Bearer wrong".to_owned()),
                Some(format!("Bearer {wrong_same_length}")),
                Some(format!("Basic {TOKEN}")),
            ] {
                let mut request = client().request(method.clone(), server.url(path));
                if let Some(auth) = &auth {
                    request = request.header("authorization", auth);
                }
                let response = within(request.send()).await.unwrap();
                assert_eq!(
                    response.status(),
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {auth:?}"
                );
                assert!(response.headers().contains_key("www-authenticate"));
                let error = error_of(response).await;
                assert_eq!(error.kind, ApiErrorKind::Unauthorized);
                assert!(error.message.contains("token"), "{}", error.message);
                assert!(!error.message.contains(TOKEN), "the token leaked");
            }
        }
        assert!(
            server.node.calls().is_empty(),
            "a handler ran without the token"
        );
        // The right token passes.
        let response = call(&server, Method::GET, "/v1/status", None).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_need_no_token() {
        let server = server().await;
        let response = within(client().get(server.url("/metrics")).send())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = within(response.text()).await.unwrap();
        assert!(text.contains("licet_chunks_served_total 7"), "{text}");
        assert!(matches!(server.node.calls()[..], [Call::Metrics]));
    }

    /// Regression (issue 12, item 8): OpenMetrics text was served as `text/plain; version=0.0.4`.
    #[tokio::test]
    async fn metrics_are_served_as_what_they_are_in_the_format_asked_for() {
        let server = server().await;
        // The fake node's text is OpenMetrics: a counter family named without `_total`.
        for (accept, content_type, type_line) in [
            (
                None,
                "text/plain; version=0.0.4; charset=utf-8",
                "# TYPE licet_chunks_served_total counter\n",
            ),
            (
                Some("text/plain"),
                "text/plain; version=0.0.4; charset=utf-8",
                "# TYPE licet_chunks_served_total counter\n",
            ),
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                "# TYPE licet_chunks_served counter\n",
            ),
        ] {
            let mut request = client().get(server.url("/metrics"));
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            let response = within(request.send()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers()["content-type"],
                content_type,
                "{accept:?}"
            );
            assert_eq!(response.headers()["vary"], "accept");
            let text = within(response.text()).await.unwrap();
            assert!(text.contains(type_line), "{accept:?}: {text}");
            assert!(text.contains("licet_chunks_served_total 7\n"), "{text}");
        }
    }

    /// Every route, `/metrics` and unknown paths and methods included.
    fn every_route() -> Vec<(Method, String)> {
        let id = ManifestId([0xab; 32]);
        let key = publisher();
        vec![
            (Method::GET, "/v1/status".to_owned()),
            (Method::GET, "/v1/peers".to_owned()),
            (Method::GET, "/v1/trust".to_owned()),
            (Method::POST, "/v1/trust".to_owned()),
            (Method::DELETE, format!("/v1/trust/{key}")),
            (Method::POST, "/v1/content?content_dir=/abs".to_owned()),
            (Method::GET, "/v1/content".to_owned()),
            (Method::GET, format!("/v1/content/{id}")),
            (Method::DELETE, format!("/v1/content/{id}")),
            (
                Method::DELETE,
                format!("/v1/content/{id}?delete_files=true"),
            ),
            (Method::POST, format!("/v1/content/{id}/check")),
            (Method::POST, format!("/v1/content/{id}/pause")),
            (Method::POST, format!("/v1/content/{id}/resume")),
            (Method::POST, "/v1/downloads".to_owned()),
            (Method::POST, format!("/v1/content/{id}/open")),
            (Method::GET, "/v1/licences".to_owned()),
            (Method::POST, "/v1/licences".to_owned()),
            (Method::DELETE, format!("/v1/licences/{}", "cd".repeat(32))),
            (Method::POST, "/v1/catalogs?head=00".to_owned()),
            (Method::GET, "/v1/catalogs".to_owned()),
            (Method::GET, "/v1/limits".to_owned()),
            (Method::PUT, "/v1/limits".to_owned()),
            (Method::GET, "/metrics".to_owned()),
            (Method::GET, "/ui".to_owned()),
            (Method::GET, "/ui/".to_owned()),
            (Method::GET, "/ui/app.js".to_owned()),
            (Method::GET, "/ui/nothing.js".to_owned()),
            (Method::GET, "/v1/nothing".to_owned()),
            (Method::PUT, "/v1/status".to_owned()),
        ]
    }

    /// A page of another site must not make the daemon act, even with the token.
    #[tokio::test]
    async fn a_change_from_another_origin_is_refused() {
        let server = server().await;
        let port = server.addr.port();
        let other_port = port.wrapping_add(1).max(1);
        let changes: Vec<_> = every_route()
            .into_iter()
            .filter(|(method, _)| *method != Method::GET)
            .collect();
        assert!(changes.len() >= 10, "{changes:?}");
        for origin in [
            "http://evil.example".to_owned(),
            format!("http://evil.example:{port}"),
            "null".to_owned(),
            format!("https://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{other_port}"),
            format!("http://127.0.0.1:{port}/ui"),
            String::new(),
        ] {
            for (method, path) in &changes {
                let response = within(
                    client()
                        .request(method.clone(), server.url(path))
                        .bearer_auth(TOKEN)
                        .header("origin", &origin)
                        .header("content-type", "application/json")
                        .body("{}")
                        .send(),
                )
                .await
                .unwrap();
                assert_eq!(
                    response.status(),
                    StatusCode::FORBIDDEN,
                    "Origin {origin:?}: {method} {path}"
                );
                let error = error_of(response).await;
                assert_eq!(error.kind, ApiErrorKind::Refused);
                assert!(
                    error.message.contains("origin") && error.message.contains(&origin),
                    "{}",
                    error.message
                );
            }
        }
        assert!(
            server.node.calls().is_empty(),
            "a handler ran for another origin: {:?}",
            server.node.calls()
        );
        // The dashboard's own origin, under any of the daemon's names, and reads from anywhere
        // (no CORS header lets another page see the reply).
        for origin in [
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ] {
            let body = serde_json::json!({ "upload": 5 });
            let response = within(
                client()
                    .put(server.url("/v1/limits"))
                    .bearer_auth(TOKEN)
                    .header("origin", &origin)
                    .json(&body)
                    .send(),
            )
            .await
            .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "Origin {origin}");
        }
        let response = within(
            client()
                .get(server.url("/v1/status"))
                .bearer_auth(TOKEN)
                .header("origin", "http://evil.example")
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin")
        );
    }

    /// Regression (issue 12, item 6): a page that rebinds its own name to 127.0.0.1 read
    /// `/metrics` (and, with a token, any route).
    #[tokio::test]
    async fn every_route_refuses_a_host_that_is_not_the_daemons_own() {
        let server = server().await;
        let port = server.addr.port();
        let other_port = port.wrapping_add(1).max(1);
        let hosts = [
            format!("evil.example:{port}"),
            "evil.example".to_owned(),
            format!("localhost.evil.example:{port}"),
            format!("127.0.0.1:{other_port}"),
            format!("192.168.1.10:{port}"),
            format!("0.0.0.0:{port}"),
            format!("[::2]:{port}"),
            format!("127.1:{port}"),
            "localhost".to_owned(),
            format!("localhost:{port}x"),
            String::new(),
        ];
        for host in &hosts {
            for (method, path) in every_route() {
                let response = within(
                    client()
                        .request(method.clone(), server.url(&path))
                        .bearer_auth(TOKEN)
                        .header("host", host)
                        .header("content-type", "application/json")
                        .body("{}")
                        .send(),
                )
                .await
                .unwrap();
                assert_eq!(
                    response.status(),
                    StatusCode::FORBIDDEN,
                    "Host {host:?}: {method} {path}"
                );
                assert!(
                    !response
                        .headers()
                        .contains_key("access-control-allow-origin"),
                    "a CORS header"
                );
                let error = error_of(response).await;
                assert_eq!(error.kind, ApiErrorKind::Refused);
                assert!(
                    error.message.contains(&format!("127.0.0.1:{port}")),
                    "{}",
                    error.message
                );
            }
        }
        assert!(
            server.node.calls().is_empty(),
            "a handler ran for another host: {:?}",
            server.node.calls()
        );
    }

    #[tokio::test]
    async fn the_daemons_loopback_names_are_answered() {
        let server = server().await;
        let port = server.addr.port();
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LocalHost:{port}"),
            format!("[::1]:{port}"),
            format!("127.0.0.2:{port}"),
        ] {
            for path in ["/metrics", "/v1/status"] {
                let response = within(
                    client()
                        .get(server.url(path))
                        .bearer_auth(TOKEN)
                        .header("host", &host)
                        .send(),
                )
                .await
                .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "Host {host}: {path}");
            }
        }
    }

    /// Sends `request` (raw HTTP/1.x that asks to close) and returns the reply's status line.
    async fn raw_status_line(server: &TestServer, request: &str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = within(tokio::net::TcpStream::connect(server.addr))
            .await
            .unwrap();
        within(stream.write_all(request.as_bytes())).await.unwrap();
        let mut reply = Vec::new();
        within(stream.read_to_end(&mut reply)).await.unwrap();
        let reply = String::from_utf8_lossy(&reply).into_owned();
        reply.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_request_without_a_host_or_aimed_at_another_host_is_refused() {
        let server = server().await;
        let port = server.addr.port();
        let line = raw_status_line(&server, "GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(line.contains(" 403 "), "no Host: {line}");
        let absolute = format!(
            "GET http://evil.example:{port}/metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Connection: close\r\n\r\n"
        );
        let line = raw_status_line(&server, &absolute).await;
        assert!(line.contains(" 403 "), "absolute-form target: {line}");
        let ok = format!("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        let line = raw_status_line(&server, &ok).await;
        assert!(line.contains(" 200 "), "{line}");
        assert_eq!(server.node.calls().len(), 1);
    }

    #[tokio::test]
    async fn each_route_calls_its_method() {
        let server = server().await;
        let node = server.node.clone();
        let id = ManifestId([0xab; 32]);
        let key = publisher();

        let status: StatusReply =
            json_of(call(&server, Method::GET, "/v1/status", None).await).await;
        assert_eq!(status.connected_peers, 3);
        assert!(matches!(node.calls().last(), Some(Call::Status)));

        let peers: PeersReply = json_of(call(&server, Method::GET, "/v1/peers", None).await).await;
        assert_eq!(peers.peers.len(), 1);
        assert!(matches!(node.calls().last(), Some(Call::Peers)));

        let _: LimitsReply = json_of(call(&server, Method::GET, "/v1/limits", None).await).await;
        assert!(matches!(node.calls().last(), Some(Call::Limits)));
        let body = serde_json::json!({ "upload": 262144, "reset": true });
        let limits: LimitsReply =
            json_of(call(&server, Method::PUT, "/v1/limits", Some(body)).await).await;
        assert_eq!(limits.in_force.upload, 262144);
        assert!(matches!(
            node.calls().last(),
            Some(Call::LimitsChange(change)) if change.reset && change.upload == Some(262144)
        ));

        let trust: TrustReply = json_of(call(&server, Method::GET, "/v1/trust", None).await).await;
        assert_eq!(trust.publishers[0].publisher, key);
        assert!(matches!(node.calls().last(), Some(Call::TrustList)));

        let body = serde_json::json!({ "publisher": key.to_hex(), "name": "Acme" });
        let entry: TrustEntry =
            json_of(call(&server, Method::POST, "/v1/trust", Some(body)).await).await;
        assert_eq!(entry.name.as_deref(), Some("Acme"));
        assert!(!entry.require_catalog, "require_catalog defaults to false");
        match node.calls().last() {
            Some(Call::TrustAdd(request)) => assert_eq!(request.publisher, key),
            other => panic!("{other:?}"),
        }

        let response = call(&server, Method::DELETE, &format!("/v1/trust/{key}"), None).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(matches!(node.calls().last(), Some(Call::TrustRemove(k)) if *k == key));

        let response = within(
            client()
                .post(server.url("/v1/content?content_dir=%2Fsrv%2Fmy%20release"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/octet-stream")
                .body(vec![1u8, 2, 3])
                .send(),
        )
        .await
        .unwrap();
        let added: ContentInfo = json_of(response).await;
        assert_eq!(added.dir, PathBuf::from("/srv/my release"));
        match node.calls().last() {
            Some(Call::ContentAdd(bytes, dir)) => {
                assert_eq!(bytes, &[1, 2, 3]);
                assert_eq!(dir, &PathBuf::from("/srv/my release"));
            }
            other => panic!("{other:?}"),
        }

        let list: ContentListReply =
            json_of(call(&server, Method::GET, "/v1/content", None).await).await;
        assert_eq!(list.content.len(), 1);
        assert!(matches!(node.calls().last(), Some(Call::ContentList)));

        let info: ContentInfo =
            json_of(call(&server, Method::GET, &format!("/v1/content/{id}"), None).await).await;
        assert_eq!(info.state, ContentState::Complete);
        assert!(matches!(node.calls().last(), Some(Call::ContentGet(i)) if *i == id));

        let removed: RemoveReply =
            json_of(call(&server, Method::DELETE, &format!("/v1/content/{id}"), None).await).await;
        assert_eq!(removed.removed, id);
        assert!(matches!(node.calls().last(), Some(Call::ContentRemove(i, false)) if *i == id));
        let path = format!("/v1/content/{id}?delete_files=true");
        let removed: RemoveReply = json_of(call(&server, Method::DELETE, &path, None).await).await;
        assert_eq!(removed.deleted_files.len(), 1);
        assert!(matches!(node.calls().last(), Some(Call::ContentRemove(i, true)) if *i == id));
        let path = format!("/v1/content/{id}?delete_files=maybe");
        let response = call(&server, Method::DELETE, &path, None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        for (verb, state) in [
            ("pause", ContentState::Paused),
            ("resume", ContentState::Downloading),
        ] {
            let path = format!("/v1/content/{id}/{verb}");
            let info: ContentInfo = json_of(call(&server, Method::POST, &path, None).await).await;
            assert_eq!(info.state, state, "{verb}");
            let called = match node.calls().last() {
                Some(Call::ContentPause(i)) => ("pause", *i),
                Some(Call::ContentResume(i)) => ("resume", *i),
                other => panic!("{verb}: {other:?}"),
            };
            assert_eq!(called, (verb, id));
        }

        let checked: ContentInfo = json_of(
            call(
                &server,
                Method::POST,
                &format!("/v1/content/{id}/check"),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(checked.state, ContentState::Complete);
        assert!(matches!(node.calls().last(), Some(Call::ContentCheck(i)) if *i == id));

        let body = serde_json::json!({ "link": format!("licet:{id}"), "output_dir": "/tmp/out" });
        let started: ContentInfo =
            json_of(call(&server, Method::POST, "/v1/downloads", Some(body)).await).await;
        assert_eq!(started.state, ContentState::Downloading);
        match node.calls().last() {
            Some(Call::DownloadStart(request)) => {
                assert_eq!(request.link, format!("licet:{id}"));
                assert_eq!(request.output_dir, PathBuf::from("/tmp/out"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(node.calls().len(), 16);
    }

    #[tokio::test]
    async fn errors_map_to_statuses_and_keep_the_refusal() {
        let server = server().await;
        let refusal = Refusal {
            reason: RefusalReason::Expired,
            detail: "the licence ended at 2026-01-01T00:00:00Z".to_owned(),
        };
        for (kind, status) in [
            (ApiErrorKind::BadRequest, 400),
            (ApiErrorKind::Refused, 403),
            (ApiErrorKind::NotFound, 404),
            (ApiErrorKind::Conflict, 409),
            (ApiErrorKind::Internal, 500),
            (ApiErrorKind::Unavailable, 502),
        ] {
            server.node.fail(ApiError::refused(
                kind,
                format!("failed as {kind:?}"),
                refusal.clone(),
            ));
            for (method, path) in [
                (Method::GET, "/v1/status".to_owned()),
                (Method::GET, "/v1/content".to_owned()),
                (
                    Method::DELETE,
                    format!("/v1/content/{}", ManifestId([3; 32])),
                ),
            ] {
                let response = call(&server, method.clone(), &path, None).await;
                assert_eq!(
                    response.status().as_u16(),
                    status,
                    "{kind:?} {method} {path}"
                );
                let error = error_of(response).await;
                assert_eq!(error.kind, kind);
                assert_eq!(error.message, format!("failed as {kind:?}"));
                assert_eq!(error.refusal.as_ref(), Some(&refusal));
            }
        }
    }

    #[tokio::test]
    async fn bad_path_parameters_are_named() {
        let server = server().await;
        for (method, path, value) in [
            (Method::GET, "/v1/content/not-an-id", "not-an-id"),
            (Method::DELETE, "/v1/content/abc123", "abc123"),
            (Method::DELETE, "/v1/trust/zz-not-a-key", "zz-not-a-key"),
        ] {
            let response = call(&server, method, path, None).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
            let error = error_of(response).await;
            assert_eq!(error.kind, ApiErrorKind::BadRequest);
            assert!(error.message.contains(value), "{}", error.message);
        }
        // 64 hex characters that are not a curve point.
        let not_a_point = format!("02{}", "00".repeat(31));
        let response = call(
            &server,
            Method::DELETE,
            &format!("/v1/trust/{not_a_point}"),
            None,
        )
        .await;
        if response.status() != StatusCode::NO_CONTENT {
            let error = error_of(response).await;
            assert_eq!(error.kind, ApiErrorKind::BadRequest);
            assert!(error.message.contains(&not_a_point), "{}", error.message);
        }
        assert!(
            server
                .node
                .calls()
                .iter()
                .all(|c| matches!(c, Call::TrustRemove(_))),
            "a handler ran with a bad id"
        );
    }

    #[tokio::test]
    async fn bad_bodies_are_bad_requests_in_the_error_shape() {
        let server = server().await;
        let cases: Vec<(&str, Option<&str>, Vec<u8>, &str)> = vec![
            (
                "/v1/trust",
                Some("application/json"),
                b"{not json".to_vec(),
                "JSON",
            ),
            (
                "/v1/trust",
                Some("application/json"),
                b"{}".to_vec(),
                "publisher",
            ),
            (
                "/v1/trust",
                Some("application/json"),
                br#"{"publisher":"zz"}"#.to_vec(),
                "zz",
            ),
            (
                "/v1/trust",
                None,
                br#"{"publisher":"zz"}"#.to_vec(),
                "Content-Type",
            ),
            (
                "/v1/downloads",
                Some("application/json"),
                br#"{"link":"licet:00","output_dir":"relative/dir"}"#.to_vec(),
                "relative/dir",
            ),
            (
                "/v1/content",
                Some("application/octet-stream"),
                vec![1],
                "content_dir",
            ),
            (
                "/v1/content?content_dir=rel",
                Some("application/octet-stream"),
                vec![1],
                "absolute",
            ),
            (
                "/v1/content?content_dir=/abs",
                Some("application/octet-stream"),
                vec![],
                "empty",
            ),
        ];
        for (path, content_type, body, needle) in cases {
            let mut request = client()
                .post(server.url(path))
                .bearer_auth(TOKEN)
                .body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = within(request.send()).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::BAD_REQUEST,
                "{path} {needle}"
            );
            let error = error_of(response).await;
            assert_eq!(error.kind, ApiErrorKind::BadRequest);
            assert!(error.message.contains(needle), "{path}: {}", error.message);
        }
        assert!(
            server.node.calls().is_empty(),
            "a handler ran with a bad body"
        );
    }

    #[tokio::test]
    async fn manifest_bodies_are_bounded() {
        let server = server().await;
        let at_limit = vec![0u8; max_manifest_request_bytes()];
        let response = within(
            client()
                .post(server.url("/v1/content?content_dir=/abs"))
                .bearer_auth(TOKEN)
                .body(at_limit)
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        let over = vec![0u8; max_manifest_request_bytes() + 1];
        let response = within(
            client()
                .post(server.url("/v1/content?content_dir=/abs"))
                .bearer_auth(TOKEN)
                .body(over)
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let error = error_of(response).await;
        assert!(error.message.contains("larger"), "{}", error.message);
        assert_eq!(server.node.calls().len(), 1);

        // A JSON body far above its bound.
        let big =
            serde_json::json!({ "link": "x".repeat(MAX_JSON_BODY_BYTES), "output_dir": "/a" });
        let response = call(&server, Method::POST, "/v1/downloads", Some(big)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_of(response).await.kind, ApiErrorKind::BadRequest);
        assert_eq!(server.node.calls().len(), 1);
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_in_the_error_shape() {
        let server = server().await;
        let response = call(&server, Method::GET, "/v1/nothing", None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_of(response).await.kind, ApiErrorKind::NotFound);

        let response = call(&server, Method::PUT, "/v1/status", None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let error = error_of(response).await;
        assert!(error.message.contains("PUT"), "{}", error.message);
    }

    #[tokio::test]
    async fn serve_returns_after_shutdown() {
        let server = server().await;
        let response = call(&server, Method::GET, "/v1/status", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let addr = server.addr;
        server.stop().await.unwrap();
        let after = within(client().get(format!("http://{addr}/metrics")).send()).await;
        assert!(after.is_err(), "still serving after shutdown");
    }

    #[test]
    fn token_file_is_private_fresh_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = create_token(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let path = dir.path().join(API_TOKEN_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = create_token(dir.path()).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), second);

        let addr: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        write_api_addr(dir.path(), addr).unwrap();
        let addr_path = dir.path().join(API_ADDR_FILE);
        let text = std::fs::read_to_string(&addr_path).unwrap();
        assert_eq!(text.trim().parse::<SocketAddr>().unwrap(), addr);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&addr_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "api-addr");
        }

        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "temporary files left behind: {names:?}");

        remove_api_files(dir.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Removing again is fine.
        remove_api_files(dir.path());
    }

    #[test]
    fn token_in_a_missing_dir_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = create_token(&missing).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
