//! `/openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! annotations so it cannot drift from the code.

use axum::Router;
use tasklog_platform::openapi::{self, Link, Method};
use utoipa::OpenApi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tasklog query service",
        version = "1",
        description = "Task lists, search, detail, history, as-of, the trash, stats, and the change feed (pages and Server-Sent Events). Errors are application/problem+json. \
            Every response carries X-Projection-Position, the log position the read model had reached (at least) when it was read."
    ),
    paths(
        super::tasks::list,
        super::tasks::show,
        super::tasks::history,
        super::trash::list,
        super::stats::stats,
        super::changes::feed,
        super::changes::stream,
    )
)]
struct ApiDoc;

/// Where a list's first task id is.
const FIRST: &str = "$response.body#/tasks/0/id";

/// A list's tasks lead to their detail and history, a detail to its history.
const LINKS: &[Link] = &[
    Link {
        path: "/v1/tasks",
        method: Method::Get,
        status: "200",
        target: "show",
        id_from: FIRST,
    },
    Link {
        path: "/v1/tasks",
        method: Method::Get,
        status: "200",
        target: "history",
        id_from: FIRST,
    },
    Link {
        path: "/v1/tasks/{id}",
        method: Method::Get,
        status: "200",
        target: "history",
        id_from: "$response.body#/id",
    },
];

pub fn router() -> Router<AppState> {
    openapi::router(ApiDoc::openapi, LINKS)
}
