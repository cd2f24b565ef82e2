//! The control API's handlers for paid releases: the licences held and writing a release's
//! plaintext. The same invariants as `handlers` (one [`NodeApi`] call each, every error status
//! one the route can answer with, held to the router by the tests of `api::openapi`).

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use licet_proto::{LicenceId, ManifestId};

use crate::{
    api::{
        extract::{JsonBody, PathParam, RawBody, require_absolute},
        handlers::{Internal, NotThisHost, Unauthorized},
        server::bad_request,
    },
    contract::{
        ApiError, ErrorReply, LicenceEntry, LicenceListReply, NodeApi, OpenReply, OpenRequest,
        routes, schemas::ManifestIdHex,
    },
};

/// The licences this node holds, and its key (`licet-node licence ls`).
///
/// Each says whether it opens its release here now, and if not, why.
#[utoipa::path(get, path = routes::LICENCES, tag = "licences", security(("bearer_token" = [])),
    responses(
        (status = 200, description = "The licences held, by id.", body = LicenceListReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn licence_list<N: NodeApi>(
    State(node): State<Arc<N>>,
) -> Result<Json<LicenceListReply>, ApiError> {
    node.licence_list().await.map(Json)
}

/// Adds a licence for a paid release (`licet-node licence add`).
///
/// The body is the licence file's bytes, as `licet-manifest licence issue` writes it. It is kept
/// only if it verifies, is for this node's key, is of a trusted publisher, has not ended, and
/// neither it nor its signer is revoked by the publisher's catalog. Adding a licence held
/// already changes nothing.
#[utoipa::path(post, path = routes::LICENCES, tag = "licences", security(("bearer_token" = [])),
    request_body(content(("application/octet-stream")), description = "The licence file's \
        bytes (a signed envelope of kind `licence`)."),
    responses(
        (status = 200, description = "The licence, held.", body = LicenceEntry),
        (status = 400, description = "`bad_request`: an empty or too large body, or not a \
            licence (bad envelope, other kind, bad signature).", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`refused`: for another node, ended, of an untrusted \
            publisher, revoked, or signed by a key that may not; or the `Host` check (see other \
            routes).", body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn licence_add<N: NodeApi>(
    State(node): State<Arc<N>>,
    RawBody(licence): RawBody,
) -> Result<Json<LicenceEntry>, ApiError> {
    if licence.is_empty() {
        return Err(bad_request(
            "the body is empty; send the licence file's bytes",
        ));
    }
    node.licence_add(licence.to_vec()).await.map(Json)
}

/// Forgets a licence (`licet-node licence rm`).
#[utoipa::path(delete, path = routes::LICENCE_ITEM, tag = "licences",
    security(("bearer_token" = [])),
    params(("id" = String, Path, description = "The licence id (64 hex characters; `licet-node \
        licence ls` shows it).")),
    responses(
        (status = 204, description = "Forgotten; no body."),
        (status = 400, description = "`bad_request`: the path's id is not a licence id; the \
            message quotes it.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = NotThisHost),
        (status = 404, description = "`not_found`: no licence with this id is held here.",
            body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn licence_remove<N: NodeApi>(
    State(node): State<Arc<N>>,
    PathParam(id): PathParam<LicenceId>,
) -> Result<StatusCode, ApiError> {
    node.licence_remove(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Writes a complete paid release's plaintext into a folder (`licet-node get` of a paid
/// release, once it is complete).
///
/// Needs a licence held that opens the release here now (asked again on every call). Every
/// file is checked before any is written: a file already holding the plaintext is kept; any
/// other file at one of the release's paths refuses the call unless `replace`.
#[utoipa::path(post, path = routes::CONTENT_OPEN, tag = "content", security(("bearer_token" = [])),
    params(("id" = ManifestIdHex, Path, description = "The release's manifest id.")),
    request_body = OpenRequest,
    responses(
        (status = 200, description = "The plaintext, written.", body = OpenReply),
        (status = 400, description = "`bad_request`: bad JSON, a path id that is not a manifest \
            id, an `output_dir` that is relative or is, holds or is inside the data directory, \
            or a release that is not encrypted.", body = ErrorReply),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`refused`: no licence held opens the release here now \
            (the message says why for each), or the trust policy refuses the release; or the \
            `Host` check (see other routes).", body = ErrorReply),
        (status = 404, description = "`not_found`: no content with this manifest id is held \
            here.", body = ErrorReply),
        (status = 409, description = "`conflict`: the release is not complete yet; a file of \
            another item at one of its paths; or a link, a folder, or (without `replace`) a \
            file that is not the plaintext at one of its paths.", body = ErrorReply),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn content_open<N: NodeApi>(
    State(node): State<Arc<N>>,
    PathParam(id): PathParam<ManifestId>,
    JsonBody(request): JsonBody<OpenRequest>,
) -> Result<Json<OpenReply>, ApiError> {
    require_absolute("output_dir", &request.output_dir)?;
    node.content_open(id, request).await.map(Json)
}
