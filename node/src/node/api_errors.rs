//! The one mapping of the node's domain errors to the control API's [`ApiError`] (and so to
//! HTTP statuses): the parts below the API edge return their own errors; the control API's
//! methods turn them into `ApiError` here.

use licet_proto::policy;

use crate::{
    bandwidth::RateError,
    catalogs::CatalogError,
    contract::{self, ApiError, ApiErrorKind},
    fetch::FetchError,
    node::steer::SteerError,
    policy_state::CatalogRefused,
    store::StoreError,
};

/// Runs a blocking closure on a blocking thread, mapping a panic or cancellation to an error.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| internal(format!("background task failed: {e}")))
}

/// An internal failure, with its message.
pub(crate) fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(ApiErrorKind::Internal, message)
}

/// A rate the control API was given that is out of range: a bad request naming its field.
pub(crate) fn rate_error(field: &str, e: RateError) -> ApiError {
    ApiError::new(ApiErrorKind::BadRequest, format!("{field}: {e}"))
}

/// A store failure: internal, naming the database.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        // Names the database itself, and says it recovers.
        StoreError::Unavailable(_) => internal(e.to_string()),
        e => internal(format!("node database: {e}")),
    }
}

/// A policy refusal as the API states it.
pub(crate) fn to_api_refusal(refusal: policy::Refusal) -> contract::Refusal {
    contract::Refusal {
        reason: refusal.reason,
        detail: refusal.detail,
    }
}

/// A manifest that could not be had: refused by the peers that have it, or found nowhere.
pub(crate) fn fetch_error(e: FetchError) -> ApiError {
    let message = e.to_string();
    match e {
        FetchError::Refused { reason, detail, .. } => ApiError::refused(
            ApiErrorKind::Refused,
            message,
            contract::Refusal { reason, detail },
        ),
        FetchError::Unavailable { .. } => ApiError::new(ApiErrorKind::Unavailable, message),
    }
}

/// The control API's answer to a catalog or trust change that was not taken.
pub(crate) fn catalog_error(e: CatalogError) -> ApiError {
    let kind = match &e {
        CatalogError::Refused(CatalogRefused::Rules(_)) => ApiErrorKind::Refused,
        CatalogError::Refused(_) => ApiErrorKind::BadRequest,
        CatalogError::Unavailable(_) => ApiErrorKind::Unavailable,
        CatalogError::NotTrusted(_) => ApiErrorKind::NotFound,
        CatalogError::Unsaved { .. }
        | CatalogError::DistrustUnsaved { .. }
        | CatalogError::NoLongerTrusted(_)
        | CatalogError::Internal(_) => ApiErrorKind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

/// A pause, resume or cancel that was not done: an unknown id is 404; a request the item's
/// state or origin does not allow is 409.
pub(crate) fn steer_error(e: SteerError) -> ApiError {
    let kind = match &e {
        SteerError::NotHeld { .. } => ApiErrorKind::NotFound,
        SteerError::SeededNotPausable { .. }
        | SteerError::NotFetching { .. }
        | SteerError::NotPaused { .. }
        | SteerError::OriginalsNotDeleted { .. } => ApiErrorKind::Conflict,
    };
    ApiError::new(kind, e.to_string())
}
