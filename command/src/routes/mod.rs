//! Every route of the service, merged in one place.

pub(crate) mod auth;
mod headers;
mod object;
pub(crate) mod openapi;
mod task_bodies;
pub(crate) mod tasks;

use axum::Router;

use crate::state::AppState;

/// The API routes (health is added by `startup`, outside the state).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(tasks::router())
        .merge(openapi::router())
}
