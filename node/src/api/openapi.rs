//! The control API's OpenAPI 3.1 description, generated from the code: each route's operation
//! is declared on its handler (`api::handlers`, `#[utoipa::path]`) and each body's schema is
//! derived from its type in [`crate::contract`] (`#[derive(ToSchema)]`, doc comments included).
//! `GET /v1/openapi.json` serves it (without the token: it holds no secret) and
//! `licet-node api-doc` prints it.
//!
//! Invariants, each held by a test below or in `tests/tests/control_api.rs`:
//! - the router serves exactly the (method, path) pairs described here, both ways;
//! - every `$ref` names something in `components`;
//! - every reply of every operation, and every error reply, validates against the schema the
//!   description gives for its status; a real daemon's replies too;
//! - [`description_json`] is the same text on every call, and what the daemon serves.

use serde_json::Value;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        RefOr, Required,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    api::{
        handlers::{self, BEARER},
        licence_handlers,
    },
    contract::{ApiErrorKind, ErrorReply},
};

/// The description as the `#[utoipa::path]` operations and the contract's types make it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Licet node control API",
        description = "The control API of a Licet node (`licet-node run`): HTTP/1.1 and JSON on \
            127.0.0.1, on the port written to `DATA_DIR/api-addr`.\n\n\
            Every `/v1/` route but this description needs `Authorization: Bearer <token>`, the 64 \
            hex characters in `DATA_DIR/api-token` (a new one at each daemon start). Every route \
            answers only requests whose `Host` is `localhost` or a loopback address with the \
            API's port.\n\n\
            Every error reply, including a missing token, a malformed body, a bad path parameter, \
            an unknown path (404) and a method a path does not accept (400), is an `ErrorReply`: \
            `{\"error\": {\"kind\": …, \"message\": …, \"refusal\": …}}`. Its HTTP status follows \
            from `kind` alone: `bad_request` 400, `unauthorized` 401, `refused` 403, `not_found` \
            404, `conflict` 409, `internal` 500, `unavailable` 502. Ids and keys are lowercase \
            hex; times are RFC 3339 text."
    ),
    paths(
        handlers::status,
        handlers::peers,
        handlers::log,
        handlers::trust_list,
        handlers::trust_add,
        handlers::trust_remove,
        handlers::content_list,
        handlers::content_add,
        handlers::content_get,
        handlers::content_remove,
        handlers::content_pause,
        handlers::content_resume,
        handlers::content_check,
        handlers::download_start,
        licence_handlers::content_open,
        licence_handlers::licence_list,
        licence_handlers::licence_add,
        licence_handlers::licence_remove,
        handlers::catalog_list,
        handlers::catalog_publish,
        handlers::limits,
        handlers::limits_change,
        handlers::metrics,
        handlers::description,
    ),
    components(
        schemas(ErrorReply, ApiErrorKind),
        responses(handlers::Unauthorized, handlers::NotThisHost, handlers::Internal)
    ),
    modifiers(&BearerToken, &BodiesRequired),
    tags(
        (name = "node", description = "The node itself: state, peers, limits, metrics, and this \
            description."),
        (name = "trust", description = "The publishers whose content the node serves and \
            fetches."),
        (name = "content", description = "Content seeded, downloaded, paused, checked and \
            removed."),
        (name = "catalogs", description = "Publishers' signed catalogs."),
        (name = "licences", description = "Licences for paid releases: the content key of one \
            release sealed to this node's key."),
    )
)]
struct ControlApi;

/// Adds the bearer-token scheme that the operations' `security` names.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The 64 lowercase hex characters in `DATA_DIR/api-token`, which the daemon \
                 writes anew at each start (mode 0600).",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Marks every request body required: each route that takes one refuses a request without it
/// (`#[utoipa::path]` marks only typed JSON bodies so, not raw signed bytes).
struct BodiesRequired;

impl Modify for BodiesRequired {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
                    body.required = Some(Required::True);
                }
            }
        }
    }
}

/// The control API's OpenAPI description.
pub fn description() -> utoipa::openapi::OpenApi {
    ControlApi::openapi()
}

/// The description as pretty JSON: what `GET /v1/openapi.json` serves and `licet-node api-doc`
/// prints (the same text on every call: maps keep the order the code declares).
pub fn description_json() -> String {
    // Serializing a tree of strings, numbers and maps cannot fail; were it to, the reply would
    // say so rather than the daemon stop.
    serde_json::to_string_pretty(&description()).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("cannot write the OpenAPI description: {e}") })
            .to_string()
    })
}

/// The JSON Schema of the JSON body that `method` on `path` (a path as described, with `{id}`)
/// answers with `status`, standalone: its components ride along, so a JSON Schema 2020-12
/// validator can check a reply with it. `None` if the description lists no JSON body for that
/// status, or no such operation.
pub fn reply_schema(description: &Value, method: &str, path: &str, status: u16) -> Option<Value> {
    let operation = description
        .get("paths")?
        .get(path)?
        .get(method.to_ascii_lowercase())?;
    let mut response = operation.get("responses")?.get(status.to_string())?;
    // A reply shared by many operations is a reference to `components.responses`.
    if let Some(target) = response.get("$ref").and_then(Value::as_str) {
        response = description.pointer(target.strip_prefix('#')?)?;
    }
    let schema = response
        .get("content")?
        .get("application/json")?
        .get("schema")?;
    Some(serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": description.get("components").cloned().unwrap_or(Value::Null),
        "allOf": [schema],
    }))
}

#[cfg(test)]
mod tests;
