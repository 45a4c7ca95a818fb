//! `/v1/webhooks`: subscribe to your changes, list and delete
//! subscriptions, read a subscription's delivery log, replay from a position.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tasklog_platform::auth::AuthUser;
use tasklog_platform::http::IdPath;
use tasklog_platform::json::ApiJson;
use tasklog_platform::{ApiError, Problem};
use utoipa::ToSchema;

use super::object::JsonObject;
use crate::state::AppState;
use crate::webhooks::values::parse_description;
use crate::webhooks::{Attempt, EventTypes, Subscription, WebhookUrl};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks", post(create).get(list))
        .route("/v1/webhooks/{id}", get(show).delete(delete))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
        .route("/v1/webhooks/{id}/replay", post(replay))
        .route("/v1/webhooks/{id}/rotate-secret", post(rotate_secret))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWebhook {
    /// Where to POST deliveries: https (http too outside production), at most
    /// 2,000 characters, a host that resolves to public addresses only.
    #[schema(example = "https://hooks.example.com/tasklog")]
    url: String,
    /// Event types to send (`TaskCreated`, `TaskStatusChanged`, ...); absent
    /// or empty: all of them.
    types: Option<Vec<String>>,
    /// Up to 500 characters, for your own reference.
    description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedWebhook {
    #[serde(flatten)]
    webhook: Subscription,
    /// The signing secret: shown this once. Verify `Tasklog-Signature` with it.
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookList {
    webhooks: Vec<Subscription>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryPage {
    /// Attempts, newest first.
    deliveries: Vec<Attempt>,
    /// Pass as `cursor` for older attempts; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// A log position (an `Ack.position`, a feed's `next_after`, a delivered
    /// change's `position`): every change after it is sent again.
    after: u64,
}

#[utoipa::path(post, path = "/v1/webhooks", operation_id = "create_webhook", tag = "webhooks", request_body = NewWebhook,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "subscribed from the log's head on; the secret is shown only here", body = CreatedWebhook, headers(("Location" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a malformed or refused URL (not https in production, or resolving to a loopback, private, link-local or metadata address), an unknown type, or too many webhooks", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn create(
    user: AuthUser,
    State(app): State<AppState>,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<NewWebhook>>,
) -> Result<Response, ApiError> {
    let invalid = |f: tasklog_platform::FieldError| ApiError::invalid(&f.field, f.message);
    let url = WebhookUrl::parse(&body.url, app.webhooks.policy()).map_err(invalid)?;
    let types = EventTypes::parse(body.types).map_err(invalid)?;
    let description = parse_description(body.description).map_err(invalid)?;
    let created = app
        .webhooks
        .subscribe(user.id, url, types, description)
        .await?;
    let location = format!("/v1/webhooks/{}", created.subscription.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(CreatedWebhook {
            webhook: created.subscription,
            secret: created.secret,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = WebhookList),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list(
    user: AuthUser,
    State(app): State<AppState>,
) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(WebhookList {
        webhooks: app.webhooks.list(user.id).await?,
    }))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", operation_id = "show_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Subscription),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "absent or not yours", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn show(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(app.webhooks.get(user.id, id).await?))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted with its delivery log; nothing more is sent"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "absent or not yours", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    app.webhooks.delete(user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// `cursor` and `limit` of the delivery log, each refusal a 400 naming it.
fn page_params(raw: Option<&str>) -> Result<(Option<i64>, u32), ApiError> {
    let (mut cursor, mut limit) = (None, DEFAULT_LIMIT);
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "cursor" => {
                cursor = Some(
                    value
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c > 0)
                        .ok_or_else(|| {
                            ApiError::bad_param("cursor", "must be a next_cursor of this log")
                        })?,
                );
            }
            "limit" => {
                limit = value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_param(
                            "limit",
                            format!("must be an integer from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            other => {
                return Err(ApiError::bad_param(
                    other,
                    "is not a parameter of this endpoint",
                ));
            }
        }
    }
    Ok((cursor, limit))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", operation_id = "webhook_deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50")),
    responses((status = 200, body = DeliveryPage),
        (status = 400, description = "a bad cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "absent or not yours", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn deliveries(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeliveryPage>, ApiError> {
    let (cursor, limit) = page_params(raw.as_deref())?;
    let page = app.webhooks.attempts(user.id, id, cursor, limit).await?;
    Ok(Json(DeliveryPage {
        deliveries: page.attempts,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateSecret {
    /// How long the replaced secret keeps signing each delivery beside the
    /// new one, in seconds: 0 (it stops at once) to 604800 (7 days);
    /// absent: 86400 (a day).
    keep_previous_secs: Option<u32>,
}

/// How long a replaced secret keeps signing when the request does not say.
pub const DEFAULT_KEEP_PREVIOUS_SECS: u32 = 24 * 3600;

#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", operation_id = "rotate_webhook_secret", tag = "webhooks", request_body = RotateSecret,
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "the new secret, shown only here; until `previous_secret_expires_at` every delivery carries a `v1=` for the new secret and one for the replaced one", body = CreatedWebhook),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "absent or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "keep_previous_secs out of range", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn rotate_secret(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<RotateSecret>>,
) -> Result<Json<CreatedWebhook>, ApiError> {
    let keep = body
        .keep_previous_secs
        .unwrap_or(DEFAULT_KEEP_PREVIOUS_SECS);
    let rotated = app.webhooks.rotate_secret(user.id, id, keep).await?;
    Ok(Json(CreatedWebhook {
        webhook: rotated.subscription,
        secret: rotated.secret,
    }))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", operation_id = "replay_webhook", tag = "webhooks", request_body = ReplayRequest,
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "every change after `after` is sent again (with new delivery ids), and a failing webhook is active again", body = Subscription),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "absent or not yours", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "after is not a log position", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn replay(
    user: AuthUser,
    State(app): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<ReplayRequest>>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(app.webhooks.replay(user.id, id, body.after).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_log_parameters_are_checked_and_named() {
        assert_eq!(page_params(None).unwrap(), (None, DEFAULT_LIMIT));
        assert_eq!(
            page_params(Some("cursor=17&limit=3")).unwrap(),
            (Some(17), 3)
        );
        for (raw, name) in [
            ("cursor=abc", "cursor"),
            ("cursor=0", "cursor"),
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("after=3", "after"),
        ] {
            let e = page_params(Some(raw)).unwrap_err();
            assert_eq!(e.status_code(), 400, "{raw}");
            assert!(e.to_string().contains(name), "{raw}: {e}");
        }
    }
}
