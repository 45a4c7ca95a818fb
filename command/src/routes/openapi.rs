//! `/openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! annotations so it cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tasklog command service", version = "1",
        description = "Accounts, tokens, task commands and webhook subscriptions. Errors are application/problem+json."),
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
    ),
    modifiers(&BearerAuth, &Links),
)]
struct ApiDoc;

/// A created task leads to its change and deletion, a change to deletion.
/// (Its detail and history are the query service's: see its document.)
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use tasklog_platform::openapi_links::{Link, Method, add};
        let id = "$response.body#/id";
        let missing = add(
            openapi,
            &[
                Link {
                    path: "/v1/tasks",
                    method: Method::Post,
                    status: "201",
                    target: "update",
                    id_from: id,
                },
                Link {
                    path: "/v1/tasks",
                    method: Method::Post,
                    status: "201",
                    target: "delete",
                    id_from: id,
                },
                Link {
                    path: "/v1/tasks/{id}",
                    method: Method::Patch,
                    status: "200",
                    target: "delete",
                    id_from: id,
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
