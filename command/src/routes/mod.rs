//! Every route of the service, merged in one place.

pub(crate) mod auth;
pub(crate) mod batch;
mod headers;
mod object;
pub(crate) mod openapi;
mod task_bodies;
pub(crate) mod task_lifecycle;
pub(crate) mod tasks;
pub(crate) mod webhooks;

use axum::Router;

use crate::state::AppState;

/// The API routes (health is added by `startup`, outside the state).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(tasks::router())
        .merge(task_lifecycle::router())
        .merge(batch::router())
        .merge(webhooks::router())
        .merge(openapi::router())
}
