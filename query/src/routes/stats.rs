//! `GET /v1/stats`: the caller's counts by status and priority, and overdue.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tasklog_platform::{ApiError, Problem};

use crate::consistency::Reader;
use crate::read_model::{self, Stats};
use crate::state::AppState;

/// Which store answered the counts: `redis` or `postgres` (when Redis is down
/// or behind). For operators; clients need not care.
static STATS_SOURCE: HeaderName = HeaderName::from_static("x-stats-source");

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/stats", get(stats))
}

#[utoipa::path(get, path = "/v1/stats", tag = "stats", security(("bearer" = [])),
    params(("X-Min-Position" = Option<u64>, Header, nullable = false, description = "answer only once the read model has reached this log position")),
    responses(
        (status = 200, body = Stats, headers(("X-Projection-Position" = u64), ("X-Stats-Source" = String, description = "redis or postgres"))),
        (status = 400, description = "bad X-Min-Position", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Postgres down, or X-Min-Position not reached in time", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn stats(
    reader: Reader,
    State(app): State<AppState>,
) -> Result<Response, ApiError> {
    let stats = read_model::stats(&reader.db(&app), &app.redis, reader.user).await?;
    let source = HeaderValue::from_static(stats.source);
    let mut response = Json(stats).into_response();
    response.headers_mut().insert(STATS_SOURCE.clone(), source);
    Ok(response)
}
