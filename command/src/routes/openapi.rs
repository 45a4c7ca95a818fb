//! `/openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! annotations so it cannot drift from the code.

use axum::Router;
use tasklog_platform::openapi::{self, Link, Method};
use utoipa::OpenApi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tasklog command service",
        version = "1",
        description = "Accounts, tokens, task commands and webhook subscriptions. Errors are application/problem+json."
    ),
    paths(
        super::auth::register,
        super::auth::login,
        super::auth::refresh,
        super::auth::logout,
        super::auth::logout_all,
        super::auth::sessions,
        super::auth::me,
        super::auth::erase,
        super::tasks::create,
        super::tasks::update,
        super::tasks::delete,
        super::task_lifecycle::restore,
        super::task_lifecycle::revert,
        super::batch::batch,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::show,
        super::webhooks::delete,
        super::webhooks::deliveries,
        super::webhooks::replay,
        super::webhooks::rotate_secret,
    )
)]
struct ApiDoc;

/// Where an answer's task id is.
const ID: &str = "$response.body#/id";

/// A created task leads to its change and deletion, a change to deletion.
/// (Its detail and history are the query service's: see its document.)
const LINKS: &[Link] = &[
    Link {
        path: "/v1/tasks",
        method: Method::Post,
        status: "201",
        target: "update",
        id_from: ID,
    },
    Link {
        path: "/v1/tasks",
        method: Method::Post,
        status: "201",
        target: "delete",
        id_from: ID,
    },
    Link {
        path: "/v1/tasks/{id}",
        method: Method::Patch,
        status: "200",
        target: "delete",
        id_from: ID,
    },
];

pub fn router() -> Router<AppState> {
    openapi::router(ApiDoc::openapi, LINKS)
}
