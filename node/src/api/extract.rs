//! The control API's request extractors: each rejection is an [`ErrorReply`] of kind
//! `bad_request` naming what was wrong, never axum's own plain-text rejection.
//!
//! Invariant: a body is bounded before it is buffered (the route's `DefaultBodyLimit`, set in
//! `api::server`), and a path the daemon acts on is absolute ([`require_absolute`]).

use std::{fmt::Display, path::Path, str::FromStr};

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

#[cfg(doc)]
use crate::contract::ErrorReply;
use crate::{
    api::server::{
        bad_request, max_catalog_request_bytes, max_licence_request_bytes,
        max_manifest_request_bytes,
    },
    contract::{ApiError, routes},
};

/// A JSON body whose rejection is an [`ErrorReply`] of kind `bad_request`.
pub(super) struct JsonBody<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(bad_request(format!(
                "bad JSON body: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// The query string, whose rejection is an [`ErrorReply`] of kind `bad_request`.
pub(super) struct QueryParams<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(bad_request(rejection.body_text())),
        }
    }
}

/// The one path parameter, parsed with `FromStr`; a bad one is a `bad_request` naming it.
pub(super) struct PathParam<T>(pub(super) T);

impl<S: Send + Sync, T: FromStr> FromRequestParts<S> for PathParam<T>
where
    T::Err: Display,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| bad_request(rejection.body_text()))?;
        // The parse errors of ids and keys quote the text they were given.
        text.parse::<T>()
            .map(PathParam)
            .map_err(|e| bad_request(e.to_string()))
    }
}

/// The raw body (bounded by the route's `DefaultBodyLimit`); a rejection is an [`ErrorReply`].
pub(super) struct RawBody(pub(super) Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let path = request.uri().path();
        let (what, limit) = if path.starts_with(routes::CATALOGS) {
            ("catalog", max_catalog_request_bytes())
        } else if path.starts_with(routes::LICENCES) {
            ("licence", max_licence_request_bytes())
        } else {
            ("manifest", max_manifest_request_bytes())
        };
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(bad_request(format!(
                    "the body is larger than the largest signed {what} ({limit} bytes)"
                )))
            }
            Err(rejection) => Err(bad_request(format!(
                "cannot read the body: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// Fails unless `path` is absolute (the daemon's working directory is not the client's).
pub(super) fn require_absolute(what: &str, path: &Path) -> Result<(), ApiError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(bad_request(format!(
            "{what} must be an absolute path, got {:?}",
            path.display().to_string()
        )))
    }
}
