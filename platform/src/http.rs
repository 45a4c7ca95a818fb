//! The HTTP pieces every service shares: the middleware every router gets
//! (request ids kept from the client when fit to store, else made; a
//! tracing span per request with route, status, latency and user; the body
//! limit; problem+json for unknown routes and methods), and what both
//! services agree on of `/v1/tasks/{id}`: its id in the path and its ETag.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;
use uuid::Uuid;

use crate::json::MAX_BODY_BYTES;
use crate::problem::ApiError;
use crate::telemetry;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request (from `X-Request-Id`, or made by the layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(
            parts
                .headers
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

/// The `{id}` of `/v1/tasks/{id}` or `/v1/webhooks/{id}`, as a `Uuid` or a
/// newtype of one (`IdPath<TaskId>`). An id that is not a UUID names
/// nothing: 404.
#[derive(Debug)]
pub struct IdPath<T = Uuid>(pub T);

impl<S: Send + Sync, T: From<Uuid>> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        Uuid::parse_str(&raw)
            .map(|id| IdPath(T::from(id)))
            .map_err(|_| ApiError::NotFound)
    }
}

/// A task version's entity tag, `"<version>"`: digits in quotes, always a
/// valid header value. Both services send it (`ETag`) and read it back
/// (`If-Match`, `If-None-Match`).
pub fn etag(version: impl Into<i128>) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", version.into()))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

pub(crate) fn request_span<B>(request: &Request<B>) -> Span {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
        user_id = tracing::field::Empty,
        // Recorded by `client_ip::record_client_ip` where the proxies are known.
        client_ip = tracing::field::Empty,
        status = tracing::field::Empty,
        // Read by the OpenTelemetry layer only; left empty (and so out of the
        // logs) unless spans are exported.
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if telemetry::exporting() {
        span.record("otel.name", format!("{} {route}", request.method()));
        span.record("otel.kind", "server");
        telemetry::continue_remote_trace(&span, request.headers());
    }
    span
}

pub(crate) fn on_response<B>(response: &Response<B>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    // For a server span only a 5xx is the server's failure; a 4xx is the
    // client's (OpenTelemetry's HTTP conventions).
    if response.status().is_server_error() && telemetry::exporting() {
        span.record("otel.status_code", "ERROR");
    }
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request finished"
    );
}

/// Wraps a service's router in the shared layers. Apply last, so the layers
/// see every route. Services in production use
/// `hardening::ProductionLayers::apply`, which includes these.
pub fn with_common_layers(router: Router) -> Router {
    router
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(on_response),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unfit_request_id))
}

/// Whether a client's request id may be kept: it lands in every log line
/// and in every event's metadata, so only 1 to 64 of `[A-Za-z0-9._-]`.
pub fn is_fit_request_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Removes an `X-Request-Id` that is not fit to keep (or sent twice), so the
/// next layer makes a fresh one.
pub(crate) async fn drop_unfit_request_id(
    mut request: axum::extract::Request,
) -> axum::extract::Request {
    let headers = request.headers();
    let fit = headers.get_all(&REQUEST_ID).iter().count() == 1
        && headers
            .get(&REQUEST_ID)
            .is_some_and(|v| is_fit_request_id(v.as_bytes()));
    if !fit {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_quote_the_version() {
        assert_eq!(etag(0_u64), "\"0\"");
        assert_eq!(etag(u64::MAX), format!("\"{}\"", u64::MAX));
        assert_eq!(etag(7_i64), "\"7\"");
    }
}
