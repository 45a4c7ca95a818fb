//! `POST /v1/tasks/batch`: up to 100 task commands in one request, each
//! answered in order with its own status and `Ack` or problem.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasklog_events::domain::TaskId;
use tasklog_platform::auth::AuthUser;
use tasklog_platform::http::RequestId;
use tasklog_platform::json::ApiJson;
use tasklog_platform::{ApiError, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use super::headers::{MaybeIdempotencyKey, parse_if_match};
use super::object::JsonObject;
use super::task_bodies::{NewTaskRequest, TaskPatchRequest};
use super::tasks::{context, mark_replayed};
use crate::state::AppState;
use crate::tasks::{self, Ack, BatchCommand, Change, Done, MAX_COMMANDS, Precondition};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tasks/batch", post(batch))
}

/// `{commands: [BatchItem]}`, 1 to 100 of them (documentation only: the
/// body is read by hand so a malformed batch is a 400 and a bad command a
/// 422 of its own).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct BatchRequest {
    commands: Vec<BatchItem>,
}

/// One command: `op` is `create`, `patch`, `delete` or `restore`; `id`
/// names the task (not for `create`); `if_match` is the version it must be
/// at (a number, or an entity tag as in `If-Match`); `body` is the `NewTask`
/// or `TaskPatch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchItem {
    op: String,
    #[schema(value_type = Option<Uuid>)]
    id: Option<Value>,
    #[schema(value_type = Option<u64>)]
    if_match: Option<Value>,
    #[schema(value_type = Option<Object>)]
    body: Option<Value>,
}

/// One command's answer: the status it would have had alone, and its
/// `Ack` or problem.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BatchResult {
    status: u16,
    #[schema(value_type = Object)]
    body: Value,
}

/// The results, in the order of the commands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BatchResponse {
    results: Vec<BatchResult>,
}

/// The commands of a well-formed batch, still unparsed.
fn commands(body: Value) -> Result<Vec<Value>, ApiError> {
    let malformed = |m: &str| ApiError::bad_request(format!("malformed batch: {m}"));
    let Value::Object(mut map) = body else {
        return Err(malformed(
            "the body must be an object {\"commands\": [...]}",
        ));
    };
    if let Some(other) = map.keys().find(|k| *k != "commands") {
        return Err(malformed(&format!("unknown field {other}")));
    }
    let Some(Value::Array(commands)) = map.remove("commands") else {
        return Err(malformed("commands must be an array"));
    };
    if commands.is_empty() || commands.len() > MAX_COMMANDS {
        return Err(malformed("commands must hold 1 to 100 commands"));
    }
    Ok(commands)
}

fn field<T: serde::de::DeserializeOwned>(name: &str, value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::invalid(name, e.to_string()))
}

/// A command's body, read as the single command's body is (same 422s).
fn body<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    tasklog_platform::json::parse::<JsonObject<T>>(&bytes).map(|o| o.0)
}

fn precondition(if_match: Option<Value>) -> Result<Precondition, ApiError> {
    match if_match {
        None | Some(Value::Null) => Ok(Precondition::Latest),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|v| Precondition::AtVersion(vec![v]))
            .ok_or_else(|| ApiError::invalid("if_match", "must be a version (u64)")),
        Some(Value::String(tag)) => {
            parse_if_match(&tag).map_err(|_| ApiError::invalid("if_match", "must be \"<version>\""))
        }
        Some(_) => Err(ApiError::invalid("if_match", "must be a version")),
    }
}

/// Parses one command; every fault is a 422 for this command alone.
fn parse(item: Value) -> Result<BatchCommand, ApiError> {
    if !item.is_object() {
        return Err(ApiError::invalid("op", "each command must be an object"));
    }
    let item: BatchItem =
        serde_json::from_value(item).map_err(|e| ApiError::invalid("command", e.to_string()))?;
    let id = |id: Option<Value>| -> Result<TaskId, ApiError> {
        let raw = id.ok_or_else(|| ApiError::invalid("id", "is required"))?;
        field::<Uuid>("id", raw).map(TaskId)
    };
    let no_body = |body: &Option<Value>| match body {
        Some(_) => Err(ApiError::invalid("body", "is not taken by this op")),
        None => Ok(()),
    };
    match item.op.as_str() {
        "create" => {
            if item.id.is_some() || item.if_match.is_some() {
                return Err(ApiError::invalid("id", "a create names no task"));
            }
            let raw = item
                .body
                .ok_or_else(|| ApiError::invalid("body", "is required"))?;
            let request: NewTaskRequest = body(raw)?;
            Ok(BatchCommand::Create(request.parse()?))
        }
        op @ ("patch" | "delete" | "restore") => {
            let change = match op {
                "patch" => {
                    let raw = item
                        .body
                        .ok_or_else(|| ApiError::invalid("body", "is required"))?;
                    let request: TaskPatchRequest = body(raw)?;
                    Change::Update(request.parse()?)
                }
                "delete" => no_body(&item.body).map(|()| Change::Delete)?,
                _ => no_body(&item.body).map(|()| Change::Restore)?,
            };
            Ok(BatchCommand::Change {
                id: id(item.id)?,
                change,
                precondition: precondition(item.if_match)?,
            })
        }
        _ => Err(ApiError::invalid(
            "op",
            "must be create, patch, delete or restore",
        )),
    }
}

fn result(outcome: Result<(StatusCode, Ack), ApiError>) -> BatchResult {
    match outcome {
        Ok((status, ack)) => BatchResult {
            status: status.as_u16(),
            body: serde_json::to_value(ack).unwrap_or(Value::Null),
        },
        Err(e) => {
            if let ApiError::Internal(cause) = &e {
                tracing::error!(error = %tasklog_platform::causes::of(cause), "internal error in a batch");
            }
            let problem: Problem = e.into_problem();
            BatchResult {
                status: problem.status,
                body: serde_json::to_value(problem).unwrap_or(Value::Null),
            }
        }
    }
}

#[utoipa::path(post, path = "/v1/tasks/batch", tag = "tasks", request_body = BatchRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "covers the whole batch: a retry with the same body replays the first response", min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$")),
    responses(
        (status = 200, description = "every command's result, in order: 201 or 200 with an Ack, or its problem (404, 409, 412, 422, 503)", body = BatchResponse),
        (status = 400, description = "malformed JSON, or not {commands: [...]} with 1 to 100 commands", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn batch(
    user: AuthUser,
    State(app): State<AppState>,
    request_id: RequestId,
    key: MaybeIdempotencyKey,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let hash = tasks::body_hash(&("batch", &body));
    let items = commands(body)?;
    let ctx = context(user, request_id, key);
    let (app, ctx) = (&app, &ctx);
    let run = |ids| async move {
        let mut results: Vec<Option<Result<(StatusCode, Ack), ApiError>>> =
            (0..items.len()).map(|_| None).collect();
        let mut parsed = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match parse(item) {
                Ok(command) => parsed.push((index, command)),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        for (index, outcome) in
            tasks::run_batch(app.store.as_ref(), &app.recent, &app.db, ctx, parsed, ids).await
        {
            results[index] = Some(match outcome {
                Ok(Done::Created(ack)) => Ok((StatusCode::CREATED, ack)),
                Ok(Done::Changed(ack)) => Ok((StatusCode::OK, ack)),
                Err(e) => Err(e.into()),
            });
        }
        BatchResponse {
            results: results
                .into_iter()
                .map(|r| {
                    result(r.unwrap_or_else(|| {
                        Err(ApiError::internal(anyhow::anyhow!(
                            "a command got no result"
                        )))
                    }))
                })
                .collect(),
        }
    };
    let (response, replayed) = tasks::idempotent(&app.db, ctx, &hash, run).await?;
    let mut response = (StatusCode::OK, Json(response)).into_response();
    mark_replayed(&mut response, replayed);
    Ok(response)
}
