//! `/openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! annotations so it cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tasklog query service", version = "1",
        description = "Task lists, search, detail, history, as-of, the trash, stats, and the change feed (pages and Server-Sent Events). Errors are application/problem+json. \
            Every response carries X-Projection-Position, the log position the read model had reached (at least) when it was read."),
    paths(
        super::tasks::list,
        super::tasks::show,
        super::tasks::history,
        super::trash::list,
        super::stats::stats,
        super::changes::feed,
        super::changes::stream,
    ),
    modifiers(&BearerAuth, &Links),
)]
struct ApiDoc;

/// A list's tasks lead to their detail and history, a detail to its history.
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use tasklog_platform::openapi_links::{Link, Method, add};
        let first = "$response.body#/tasks/0/id";
        let missing = add(
            openapi,
            &[
                Link {
                    path: "/v1/tasks",
                    method: Method::Get,
                    status: "200",
                    target: "show",
                    id_from: first,
                },
                Link {
                    path: "/v1/tasks",
                    method: Method::Get,
                    status: "200",
                    target: "history",
                    id_from: first,
                },
                Link {
                    path: "/v1/tasks/{id}",
                    method: Method::Get,
                    status: "200",
                    target: "history",
                    id_from: "$response.body#/id",
                },
            ],
        );
        debug_assert!(
            missing.is_empty(),
            "links from absent operations: {missing:?}"
        );
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document, built once per call (cheap, and rarely asked for).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn router() -> Router<AppState> {
    // Links need OpenAPI's spelling, which utoipa 5.5 does not write.
    Router::new().route(
        "/openapi.json",
        get(|| async { Json(tasklog_platform::openapi_links::to_json(&document())) }),
    )
}
