//! The control API's route handlers, each with its OpenAPI operation (`#[utoipa::path]`): its
//! path, parameters, request body, reply and every error reply, which `api::openapi` gathers
//! into the API's description. `api::server` routes requests to these handlers.
//!
//! Invariants:
//! - A handler only translates HTTP to one [`NodeApi`] call and back; it holds no node state.
//! - Each operation's path is the constant of [`routes`] that the router uses, and each error
//!   status it lists is one that [`super::server::http_status`] gives an [`ApiErrorKind`] the
//!   route can answer with; every error body is [`ErrorReply`]. The tests of `api::openapi` hold
//!   the router and these operations to each other.

use std::sync::{Arc, LazyLock};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use licet_proto::{ManifestId, PublicKey};
use utoipa::{
    ToResponse, ToSchema,
    openapi::{
        Content, Ref, RefOr, ResponseBuilder,
        header::HeaderBuilder,
        schema::{ObjectBuilder, Type},
    },
};

#[cfg(doc)]
use crate::contract::ApiErrorKind;
use crate::{
    api::{
        extract::{JsonBody, PathParam, QueryParams, RawBody, require_absolute},
        openapi,
        server::{bad_request, max_catalog_request_bytes, max_manifest_request_bytes},
    },
    contract::{
        AddQuery, ApiError, CatalogInfo, CatalogListReply, ContentInfo, ContentListReply,
        ErrorReply, GetRequest, LimitsChange, LimitsReply, LogReply, NodeApi, PeersReply,
        PublishQuery, RemoveQuery, RemoveReply, StatusReply, TrustAddRequest, TrustEntry,
        TrustReply, routes,
        schemas::{ManifestIdHex, PublicKeyHex},
    },
    metrics::format,
};

/// The name of the bearer-token security scheme (`api::openapi` adds it) that every route
/// needing the token requires; the attributes below spell it out, as they take only literals.
pub(super) const BEARER: &str = "bearer_token";

/// A reusable error reply of the description (its `components.responses`): an [`ErrorReply`]
/// with `description`, and the `WWW-Authenticate` header if `challenge`.
fn error_reply(description: &str, challenge: bool) -> RefOr<utoipa::openapi::Response> {
    let mut reply = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name(ErrorReply::name()))),
    );
    if challenge {
        let www_authenticate = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some("`Bearer realm=\"licet-node\"`"))
            .build();
        reply = reply.header("WWW-Authenticate", www_authenticate);
    }
    reply.build().into()
}

/// The 401 reply of every route that needs the token.
pub(super) struct Unauthorized;

impl ToResponse<'static> for Unauthorized {
    fn response() -> (&'static str, RefOr<utoipa::openapi::Response>) {
        let description = "`unauthorized`: no `Authorization: Bearer <token>` header, or not the \
             token in `DATA_DIR/api-token` (the daemon writes a new one at each start).";
        ("Unauthorized", error_reply(description, true))
    }
}

/// The 403 reply of the `Host` check, which every route makes.
pub(super) struct NotThisHost;

impl ToResponse<'static> for NotThisHost {
    fn response() -> (&'static str, RefOr<utoipa::openapi::Response>) {
        let description = "`refused`: the request's `Host` (or an absolute target's authority) \
             is not `localhost` or a loopback address with the API's port (against DNS \
             rebinding).";
        ("NotThisHost", error_reply(description, false))
    }
}

/// The 500 reply of every route that asks the node.
pub(super) struct Internal;

impl ToResponse<'static> for Internal {
    fn response() -> (&'static str, RefOr<utoipa::openapi::Response>) {
        let description = "`internal`: the node failed (its disk or database); the message says \
             what.";
        ("Internal", error_reply(description, false))
    }
}

/// A 400 reply of a route whose path names a content item.
const NOT_A_MANIFEST_ID: &str = "`bad_request`: the path's id is not a manifest id (64 hex \
     characters); the message quotes it.";
/// A 404 reply of a route whose path names a content item.
const NOT_HELD: &str = "`not_found`: no content with this manifest id is held here.";
/// The description of a content item's id in a path.
const CONTENT_ID: &str = "The content's manifest id (64 hex characters; `licet-node ls --json` \
     shows it).";

fn manifest_body() -> String {
    format!(
        "The signed manifest's bytes, as `licet-manifest create` writes them: at most {} bytes.",
        max_manifest_request_bytes()
    )
}

fn catalog_body() -> String {
    format!(
        "The signed catalog's bytes, as `licet-manifest catalog sign` writes them: at most {} \
         bytes.",
        max_catalog_request_bytes()
    )
}

/// The node's state.
///
/// Its peer id and addresses, version, region, counts of peers and content, catalogs, health,
/// reachability and bandwidth limits (`licet-node status`).
#[utoipa::path(get, path = routes::STATUS, tag = "node", security(("bearer_token" = [])),
    responses(
        (status = 200, description = "The node's state.", body = StatusReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn status<N: NodeApi>(
    State(node): State<Arc<N>>,
) -> Result<Json<StatusReply>, ApiError> {
    node.status().await.map(Json)
}

/// The daemon's most recent log lines, oldest first, as they passed its log filter (the
/// dashboard's log page).
#[utoipa::path(get, path = routes::LOG, tag = "node", security(("bearer_token" = [])),
    responses(
        (status = 200, description = "At most 500 lines, oldest first.", body = LogReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn log<N: NodeApi>(
    State(node): State<Arc<N>>,
) -> Result<Json<LogReply>, ApiError> {
    node.log().await.map(Json)
}

/// The peers: connected ones, then banned ones not connected.
///
/// Bytes exchanged, whether each is relayed, and bans with their reasons and ends
/// (`licet-node peers`).
#[utoipa::path(get, path = routes::PEERS, tag = "node", security(("bearer_token" = [])),
    responses(
        (status = 200, description = "Connected peers, then banned ones.", body = PeersReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn peers<N: NodeApi>(
    State(node): State<Arc<N>>,
) -> Result<Json<PeersReply>, ApiError> {
    node.peers().await.map(Json)
}

/// The bandwidth limits.
///
/// Those in force, the configured ones, the changes made while running, and the schedule
/// (`licet-node limits`).
#[utoipa::path(get, path = routes::LIMITS, tag = "node", security(("bearer_token" = [])),
    responses(
        (status = 200, description = "The limits.", body = LimitsReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn limits<N: NodeApi>(
    State(node): State<Arc<N>>,
) -> Result<Json<LimitsReply>, ApiError> {
    node.limits().await.map(Json)
}

/// Changes the bandwidth limits until the daemon stops.
///
/// With `reset`, first goes back to the configured limits; then sets the rates given, in bytes
/// per second (0: no limit; absent: unchanged) (`licet-node limits set` and `reset`).
#[utoipa::path(put, path = routes::LIMITS, tag = "node", security(("bearer_token" = [])),
    request_body = LimitsChange,
    responses(
        (status = 200, description = "The limits after the change.", body = LimitsReply),
        (status = 400, description = "`bad_request`: bad JSON, an unknown field, or a rate out \
            of range.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn limits_change<N: NodeApi>(
    State(node): State<Arc<N>>,
    JsonBody(change): JsonBody<LimitsChange>,
) -> Result<Json<LimitsReply>, ApiError> {
    node.limits_change(change).await.map(Json)
}

/// The trusted publishers (`licet-node trust ls`).
#[utoipa::path(get, path = routes::TRUST, tag = "trust", security(("bearer_token" = [])),
    responses(
        (status = 200, description = "Every trusted publisher.", body = TrustReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn trust_list<N: NodeApi>(
    State(node): State<Arc<N>>,
) -> Result<Json<TrustReply>, ApiError> {
    node.trust_list().await.map(Json)
}

/// Trusts a publisher, or changes how it is trusted.
///
/// Its content is served and fetched from then on; a publisher trusted again without a name
/// keeps the name it has (`licet-node trust add`).
#[utoipa::path(post, path = routes::TRUST, tag = "trust", security(("bearer_token" = [])),
    request_body = TrustAddRequest,
    responses(
        (status = 200, description = "The publisher as now trusted.", body = TrustEntry),
        (status = 400, description = "`bad_request`: bad JSON, or `publisher` is not a public \
            key.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn trust_add<N: NodeApi>(
    State(node): State<Arc<N>>,
    JsonBody(request): JsonBody<TrustAddRequest>,
) -> Result<Json<TrustEntry>, ApiError> {
    node.trust_add(request).await.map(Json)
}

/// Stops trusting a publisher (`licet-node trust rm`).
///
/// Its content is no longer served nor fetched.
#[utoipa::path(delete, path = routes::TRUST_PUBLISHER, tag = "trust", security(("bearer_token" = [])),
    params(("publisher" = PublicKeyHex, Path, description = "The publisher's public key.")),
    responses(
        (status = 204, description = "No longer trusted; no body."),
        (status = 400, description = "`bad_request`: the path's key is not a public key; the \
            message quotes it.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 404, description = "`not_found`: the publisher is not trusted.",
            body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn trust_remove<N: NodeApi>(
    State(node): State<Arc<N>>,
    PathParam(publisher): PathParam<PublicKey>,
) -> Result<StatusCode, ApiError> {
    node.trust_remove(publisher).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Seeds content already on disk (`licet-node add`).
///
/// Verifies every file in `content_dir` against the signed manifest (on all cores) before it
/// answers, then serves it in place: nothing is copied.
#[utoipa::path(post, path = routes::CONTENT, tag = "content", security(("bearer_token" = [])),
    params(AddQuery),
    request_body(content(("application/octet-stream")), description = manifest_body()),
    responses(
        (status = 200, description = "The content, verified and served.", body = ContentInfo),
        (status = 400, description = "`bad_request`: no or a relative `content_dir`, an empty \
            or too large body, or content that does not match the manifest.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`refused`: the manifest is not valid or the trust policy \
            refuses it (`refusal` says why); or the `Host` check (see other routes).",
            body = ErrorReply),
        (status = 409, description = "`conflict`: the manifest is already held with content in \
            another folder.", body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn content_add<N: NodeApi>(
    State(node): State<Arc<N>>,
    QueryParams(query): QueryParams<AddQuery>,
    RawBody(manifest): RawBody,
) -> Result<Json<ContentInfo>, ApiError> {
    require_absolute("content_dir", &query.content_dir)?;
    if manifest.is_empty() {
        return Err(bad_request(
            "the body is empty; send the signed manifest's bytes",
        ));
    }
    node.content_add(manifest.to_vec(), query.content_dir)
        .await
        .map(Json)
}

/// Publishes a publisher's signed catalog (`licet-node catalog publish`).
///
/// Takes it as the publisher's newest catalog here, then passes it on to the swarm.
#[utoipa::path(post, path = routes::CATALOGS, tag = "catalogs", security(("bearer_token" = [])),
    params(PublishQuery),
    request_body(content(("application/octet-stream")), description = catalog_body()),
    responses(
        (status = 200, description = "The catalog, now the publisher's newest here.",
            body = CatalogInfo),
        (status = 400, description = "`bad_request`: a bad catalog or head, a head of another \
            catalog, or an empty or too large body.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`refused`: the publisher is not trusted, the catalog has \
            expired, or it is older than the one held (rollback); or the `Host` check (see \
            other routes).", body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn catalog_publish<N: NodeApi>(
    State(node): State<Arc<N>>,
    QueryParams(query): QueryParams<PublishQuery>,
    RawBody(catalog): RawBody,
) -> Result<Json<CatalogInfo>, ApiError> {
    if catalog.is_empty() {
        return Err(bad_request(
            "the body is empty; send the signed catalog's bytes",
        ));
    }
    let head =
        hex::decode(query.head.trim()).map_err(|e| bad_request(format!("head is not hex: {e}")))?;
    node.catalog_publish(catalog.to_vec(), head).await.map(Json)
}

/// Each trusted publisher's catalog as held here (`licet-node catalog ls`).
#[utoipa::path(get, path = routes::CATALOGS, tag = "catalogs", security(("bearer_token" = [])),
    responses(
        (status = 200, description = "The catalogs.", body = CatalogListReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn catalog_list<N: NodeApi>(
    State(node): State<Arc<N>>,
) -> Result<Json<CatalogListReply>, ApiError> {
    node.catalog_list().await.map(Json)
}

/// Every content item held, and the catalogs (`licet-node ls`).
#[utoipa::path(get, path = routes::CONTENT, tag = "content", security(("bearer_token" = [])),
    responses(
        (status = 200, description = "The content items, by title.", body = ContentListReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn content_list<N: NodeApi>(
    State(node): State<Arc<N>>,
) -> Result<Json<ContentListReply>, ApiError> {
    node.content_list().await.map(Json)
}

/// One content item: its state and progress.
///
/// A download is followed by asking this until its `state` is no longer `downloading`.
#[utoipa::path(get, path = routes::CONTENT_ITEM, tag = "content", security(("bearer_token" = [])),
    params(("id" = ManifestIdHex, Path, description = CONTENT_ID)),
    responses(
        (status = 200, description = "The content item.", body = ContentInfo),
        (status = 400, description = NOT_A_MANIFEST_ID, body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 404, description = NOT_HELD, body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn content_get<N: NodeApi>(
    State(node): State<Arc<N>>,
    PathParam(id): PathParam<ManifestId>,
) -> Result<Json<ContentInfo>, ApiError> {
    node.content_get(id).await.map(Json)
}

/// Forgets a content item: stops serving and fetching it (`licet-node rm`, `cancel`).
///
/// Its files stay unless `delete_files`, which deletes a download's files only: each manifest
/// path and its `.part` name, regular files beneath its folder, never through a link; then the
/// folders beneath it left empty.
#[utoipa::path(delete, path = routes::CONTENT_ITEM, tag = "content", security(("bearer_token" = [])),
    params(("id" = ManifestIdHex, Path, description = CONTENT_ID), RemoveQuery),
    responses(
        (status = 200, description = "What was forgotten and deleted.", body = RemoveReply),
        (status = 400, description = "`bad_request`: the path's id is not a manifest id, or a \
            bad query.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 404, description = NOT_HELD, body = ErrorReply),
        (status = 409, description = "`conflict`: `delete_files` of content seeded with `add` \
            (its files are the publisher's originals).", body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn content_remove<N: NodeApi>(
    State(node): State<Arc<N>>,
    PathParam(id): PathParam<ManifestId>,
    QueryParams(query): QueryParams<RemoveQuery>,
) -> Result<Json<RemoveReply>, ApiError> {
    node.content_remove(id, query).await.map(Json)
}

/// Pauses a download (`licet-node pause`).
///
/// Answers once its download task has ended; the chunks held stay and are served, and the pause
/// holds across a restart.
#[utoipa::path(post, path = routes::CONTENT_PAUSE, tag = "content", security(("bearer_token" = [])),
    params(("id" = ManifestIdHex, Path, description = CONTENT_ID)),
    responses(
        (status = 200, description = "The content, `state` paused.", body = ContentInfo),
        (status = 400, description = NOT_A_MANIFEST_ID, body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 404, description = NOT_HELD, body = ErrorReply),
        (status = 409, description = "`conflict`: not a download being fetched (complete, \
            failed, paused, or seeded with `add`).", body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn content_pause<N: NodeApi>(
    State(node): State<Arc<N>>,
    PathParam(id): PathParam<ManifestId>,
) -> Result<Json<ContentInfo>, ApiError> {
    node.content_pause(id).await.map(Json)
}

/// Resumes a paused download from the chunks it holds (`licet-node resume`).
#[utoipa::path(post, path = routes::CONTENT_RESUME, tag = "content", security(("bearer_token" = [])),
    params(("id" = ManifestIdHex, Path, description = CONTENT_ID)),
    responses(
        (status = 200, description = "The content, `state` downloading.", body = ContentInfo),
        (status = 400, description = NOT_A_MANIFEST_ID, body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 404, description = NOT_HELD, body = ErrorReply),
        (status = 409, description = "`conflict`: not paused.", body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn content_resume<N: NodeApi>(
    State(node): State<Arc<N>>,
    PathParam(id): PathParam<ManifestId>,
) -> Result<Json<ContentInfo>, ApiError> {
    node.content_resume(id).await.map(Json)
}

/// Re-verifies a content item's files on disk (`licet-node check`).
///
/// Answers once every file is hashed again (on all cores): chunks that match are served again;
/// `state` is complete if all do, else failed, with `error` and `changed_files`.
#[utoipa::path(post, path = routes::CONTENT_CHECK, tag = "content", security(("bearer_token" = [])),
    params(("id" = ManifestIdHex, Path, description = CONTENT_ID)),
    responses(
        (status = 200, description = "The content after the check.", body = ContentInfo),
        (status = 400, description = NOT_A_MANIFEST_ID, body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 404, description = NOT_HELD, body = ErrorReply),
        (status = 409, description = "`conflict`: it is being downloaded.", body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn content_check<N: NodeApi>(
    State(node): State<Arc<N>>,
    PathParam(id): PathParam<ManifestId>,
) -> Result<Json<ContentInfo>, ApiError> {
    node.content_check(id).await.map(Json)
}

/// Starts fetching content by its share link (`licet-node get`).
///
/// Answers once the manifest is found and accepted by the trust policy; the fetch goes on (ask
/// `GET /v1/content/{id}`). A `get` of a paused download resumes it.
#[utoipa::path(post, path = routes::DOWNLOADS, tag = "content", security(("bearer_token" = [])),
    request_body = GetRequest,
    responses(
        (status = 200, description = "The download, started.", body = ContentInfo),
        (status = 400, description = "`bad_request`: bad JSON, a bad link, or an `output_dir` \
            that is relative, or is, holds or is inside the data directory.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`refused`: the trust policy refuses the manifest \
            (`refusal` says why); or the `Host` check (see other routes).", body = ErrorReply),
        (status = 409, description = "`conflict`: already held in another folder; a file of \
            another item at one of its paths; or a link, a folder, or (without `replace`) a file \
            that is not the manifest's at one of its paths.", body = ErrorReply),
        (status = 500, response = Internal),
        (status = 502, description = "`unavailable`: no peer had the manifest, or every peer \
            refused it (then `refusal` says why).", body = ErrorReply),
    )
)]
pub(super) async fn download_start<N: NodeApi>(
    State(node): State<Arc<N>>,
    JsonBody(request): JsonBody<GetRequest>,
) -> Result<Json<ContentInfo>, ApiError> {
    require_absolute("output_dir", &request.output_dir)?;
    node.download_start(request).await.map(Json)
}

/// The node's metrics, for Prometheus (no token).
///
/// OpenMetrics 1.0 text if `Accept` asks for `application/openmetrics-text`, else the
/// Prometheus text format 0.0.4.
#[utoipa::path(get, path = routes::METRICS, tag = "node",
    responses(
        (status = 200, description = "The metrics as text.", content(
            (String = format::PROMETHEUS_TEXT_CONTENT_TYPE),
            (String = format::OPENMETRICS_CONTENT_TYPE),
        )),
        (status = 403, response = NotThisHost),
    )
)]
pub(super) async fn metrics<N: NodeApi>(
    State(node): State<Arc<N>>,
    headers: HeaderMap,
) -> Response {
    let openmetrics = node.metrics_text().await;
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(format::accepts_openmetrics);
    let (content_type, body) = if wants_openmetrics {
        (format::OPENMETRICS_CONTENT_TYPE, openmetrics)
    } else {
        (
            format::PROMETHEUS_TEXT_CONTENT_TYPE,
            format::to_prometheus_text(&openmetrics),
        )
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "accept"),
        ],
        body,
    )
        .into_response()
}

/// This description of the control API, OpenAPI 3.1 (no token).
///
/// The same for every daemon of this version, and the same as `licet-node api-doc` prints: it
/// holds no secret, so tools can read it before they have the token.
#[utoipa::path(get, path = routes::OPENAPI, tag = "node",
    responses(
        (status = 200, description = "The OpenAPI description.",
            content((serde_json::Value = "application/json"))),
        (status = 403, response = NotThisHost),
    )
)]
pub(super) async fn description() -> Response {
    /// Made once: the description does not change while the daemon runs.
    static DESCRIPTION: LazyLock<String> = LazyLock::new(openapi::description_json);
    (
        [(header::CONTENT_TYPE, "application/json")],
        DESCRIPTION.as_str(),
    )
        .into_response()
}
