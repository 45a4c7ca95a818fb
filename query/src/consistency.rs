//! Read-your-writes. `Reader` authenticates the caller, then honours
//! `X-Min-Position` by waiting (bounded) for the projection; the
//! `stamp_position` middleware puts `X-Projection-Position` on every response.
//!
//! The stamped position is read before the handler runs (and raised after a
//! wait), never after: a notification arriving while the handler reads must
//! not make the response claim a position its data may not reflect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tasklog_platform::ApiError;
use tasklog_platform::auth::AuthUser;
use uuid::Uuid;

use tasklog_platform::read_pool::ReadPool;

use crate::projection::{ProjectionWatch, Route};
use crate::state::AppState;

pub static MIN_POSITION: HeaderName = HeaderName::from_static("x-min-position");
pub static PROJECTION_POSITION: HeaderName = HeaderName::from_static("x-projection-position");

/// The position this request's answer reflects at least.
#[derive(Clone)]
pub(crate) struct Observed(Arc<AtomicU64>);

impl Observed {
    /// For answers read from another projection than `tasks` (the change
    /// feed): the position that one had reached.
    pub(crate) fn set(&self, position: u64) {
        self.0.store(position, Ordering::SeqCst);
    }
}

/// Stamps `X-Projection-Position` on every response, errors included.
pub async fn stamp_position(
    State(projection): State<Arc<ProjectionWatch>>,
    mut request: Request,
    next: Next,
) -> Response {
    let observed = Observed(Arc::new(AtomicU64::new(projection.current())));
    request.extensions_mut().insert(observed.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        PROJECTION_POSITION.clone(),
        HeaderValue::from(observed.0.load(Ordering::SeqCst)),
    );
    response
}

/// The authenticated caller of a query, once the projection has reached the
/// position the caller asked for (if any), and where to read it.
#[derive(Clone)]
pub struct Reader {
    pub user: Uuid,
    route: Route,
}

impl Reader {
    /// The read model to read: a replica in the rotation (or the primary),
    /// or the one source known to have this request's position.
    pub fn db(&self, app: &AppState) -> ReadPool {
        match &self.route {
            Route::Published => app.projection.read_pool(),
            Route::Direct(pool) => pool.clone(),
        }
    }

    /// Whether the page cache may answer and keep this request's page: only
    /// when it reads where the published position holds.
    pub fn cacheable(&self) -> bool {
        matches!(self.route, Route::Published)
    }
}

/// The `X-Min-Position` a request asks for, if any.
///
/// # Errors
/// A 400 when it is not a position.
pub(crate) fn min_position(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(&MIN_POSITION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_param(
                "X-Min-Position",
                "must be a log position: a non-negative integer",
            )
        })
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Authenticate first: an anonymous caller gets a 401 at once, never a wait.
        let user = AuthUser::from_request_parts(parts, state).await?;
        let Some(min) = min_position(&parts.headers)? else {
            return Ok(Reader {
                user: user.id,
                route: Route::Published,
            });
        };
        refuse_beyond_head(state, min, state.projection.current()).await?;
        let outcome = state
            .projection
            .wait_for(min, state.min_position_timeout)
            .await;
        let reached = match &outcome {
            Ok(Route::Published) => state.projection.current(),
            // Read where `min` holds: the answer reflects at least that.
            Ok(Route::Direct(_)) => min,
            Err(p) => *p,
        };
        if let Some(observed) = parts.extensions.get::<Observed>() {
            observed.0.fetch_max(reached, Ordering::SeqCst);
        }
        match outcome {
            Ok(route) => Ok(Reader {
                user: user.id,
                route,
            }),
            Err(at) => Err(ApiError::Unavailable {
                detail: format!(
                    "the read model has not reached position {min} yet (it is at {at}); retry shortly"
                ),
                retry_after_secs: 1,
            }),
        }
    }
}

/// A 400 for a `min` past the log's head: no write produced it, so waiting
/// for it could only end in a 503. `reached` is where the caller's
/// projection is; the head is asked only beyond it, so reads without a
/// fresh write never pay for it.
///
/// # Errors
/// 400 beyond the head, 503 when the head cannot be read.
pub(crate) async fn refuse_beyond_head(
    state: &AppState,
    min: u64,
    reached: u64,
) -> Result<(), ApiError> {
    if min > reached && !log_has_reached(state, min).await? {
        return Err(ApiError::bad_param(
            "X-Min-Position",
            "is beyond the log's head: no write has produced that position",
        ));
    }
    Ok(())
}

/// Whether the log has reached `min`.
async fn log_has_reached(state: &AppState, min: u64) -> Result<bool, ApiError> {
    state.log_head.has_reached(min).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot read the log's head");
        ApiError::unavailable("the event log")
    })
}
