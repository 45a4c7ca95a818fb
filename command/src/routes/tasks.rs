//! `/v1/tasks`: create, change and delete tasks.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::{Json, Router};
use tasklog_events::domain::{TaskId, UserId};
use tasklog_platform::auth::AuthUser;
use tasklog_platform::http::{IdPath, RequestId, etag};
use tasklog_platform::json::ApiJson;
use tasklog_platform::{ApiError, Problem};

use super::headers::{IfMatch, MaybeIdempotencyKey};
use super::object::JsonObject;
use super::task_bodies::{NewTaskRequest, TaskPatchRequest};
use crate::state::AppState;
use crate::tasks::{self, Ack, Change, CommandContext};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tasks", post(create))
        .route("/v1/tasks/{id}", patch(update).delete(delete))
}

/// Marks a response replayed for a repeated `Idempotency-Key`.
static REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Says `Idempotent-Replayed: true` when `replayed`: the answer is the first
/// one, given again for a repeated `Idempotency-Key`.
pub(super) fn mark_replayed(response: &mut Response, replayed: bool) {
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED.clone(), HeaderValue::from_static("true"));
    }
}

pub(super) fn ack_response(status: StatusCode, ack: Ack) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag(ack.version));
    (status, headers, Json(ack)).into_response()
}

pub(super) fn context(
    user: AuthUser,
    request_id: RequestId,
    key: MaybeIdempotencyKey,
) -> CommandContext {
    CommandContext {
        actor: UserId(user.id),
        request_id: request_id.0,
        idempotency_key: key.0,
    }
}

#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = NewTaskRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "up to 255 characters; a retry with the same body replays the first response", min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$")),
    responses(
        (status = 201, body = Ack, headers(("Location" = String), ("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid field, or Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn create(
    user: AuthUser,
    State(app): State<AppState>,
    request_id: RequestId,
    key: MaybeIdempotencyKey,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<NewTaskRequest>>,
) -> Result<Response, ApiError> {
    let task = body.parse()?;
    let ctx = context(user, request_id, key);
    let hash = tasks::body_hash(&body);
    let created = tasks::create_task(app.store.as_ref(), &app.db, &ctx, task, &hash, None).await?;
    let mut response = ack_response(StatusCode::CREATED, created.ack);
    let location = HeaderValue::from_str(&format!("/v1/tasks/{}", created.ack.id))
        .map_err(ApiError::internal)?;
    response.headers_mut().insert(header::LOCATION, location);
    mark_replayed(&mut response, created.replayed);
    Ok(response)
}

#[utoipa::path(patch, path = "/v1/tasks/{id}", tag = "tasks", request_body = TaskPatchRequest,
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = "\"<version>\": apply only at that version")),
    responses(
        (status = 200, body = Ack, headers(("ETag" = String))),
        (status = 400, description = "malformed JSON or If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "absent, deleted or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "kept losing races with other writers", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "the task moved past If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn update(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath<TaskId>,
    request_id: RequestId,
    IfMatch(precondition): IfMatch,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<TaskPatchRequest>>,
) -> Result<Response, ApiError> {
    let change = Change::Update(body.parse()?);
    let ctx = context(user, request_id, MaybeIdempotencyKey(None));
    let ack = tasks::change_task(
        app.store.as_ref(),
        &app.recent,
        id,
        &change,
        &precondition,
        &ctx,
    )
    .await?;
    Ok(ack_response(StatusCode::OK, ack))
}

#[utoipa::path(delete, path = "/v1/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 200, body = Ack),
        (status = 404, description = "absent, already deleted or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath<TaskId>,
    request_id: RequestId,
    IfMatch(precondition): IfMatch,
) -> Result<Response, ApiError> {
    let ctx = context(user, request_id, MaybeIdempotencyKey(None));
    let ack = tasks::change_task(
        app.store.as_ref(),
        &app.recent,
        id,
        &Change::Delete,
        &precondition,
        &ctx,
    )
    .await?;
    Ok(ack_response(StatusCode::OK, ack))
}
