//! Every route of the service, merged in one place.

pub(crate) mod changes;
pub(crate) mod openapi;
pub(crate) mod stats;
pub(crate) mod tasks;
pub(crate) mod trash;

use axum::Router;

use crate::state::AppState;

/// The API routes (health is added by `startup`, outside the state).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(tasks::router())
        .merge(stats::router())
        .merge(changes::router())
        .merge(trash::router())
        .merge(openapi::router())
}
