//! `/v1/auth/*`: register, login, refresh, logout, me, and the user's
//! sessions (list, end them all).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tasklog_events::domain::UserId;
use tasklog_platform::auth::AuthUser;
use tasklog_platform::http::RequestId;
use tasklog_platform::json::ApiJson;
use tasklog_platform::{ApiError, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use super::object::JsonObject;
use crate::accounts::{Email, Grant, NewUser, Password, SessionRecord, UserName, UserRecord};
use crate::state::AppState;
use crate::validation::Validator;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/logout-all", post(logout_all))
        .route("/v1/auth/sessions", get(sessions))
        .route("/v1/auth/me", get(me).delete(erase))
}

/// The client's `User-Agent`, kept with a new session so its user can tell
/// sessions apart.
fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|ua| !ua.is_empty())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterRequest {
    email: String,
    /// 8 to 128 characters.
    password: String,
    /// 1 to 100 characters, stored trimmed.
    name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct User {
    id: Uuid,
    email: String,
    name: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Session {
    user: User,
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until `access_token` expires.
    expires_in: u64,
    /// Single use: exchanging it returns a new one and retires it.
    refresh_token: String,
}

impl From<UserRecord> for User {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            created_at: u.created_at,
        }
    }
}

impl From<Grant> for Session {
    fn from(g: Grant) -> Self {
        Self {
            user: g.user.into(),
            access_token: g.access.token,
            token_type: "Bearer",
            expires_in: g.access.expires_in,
            refresh_token: g.refresh_token,
        }
    }
}

/// One open session: never a token or its hash.
#[derive(Serialize, ToSchema)]
pub(crate) struct SessionInfo {
    id: Uuid,
    created_at: DateTime<Utc>,
    /// When its refresh token was last exchanged; null until the first time.
    last_used_at: Option<DateTime<Utc>>,
    /// When it ends at the latest, however often it is refreshed.
    expires_at: DateTime<Utc>,
    /// The `User-Agent` of the login (at most 256 characters).
    user_agent: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionList {
    /// Newest first.
    sessions: Vec<SessionInfo>,
}

impl From<SessionRecord> for SessionInfo {
    fn from(s: SessionRecord) -> Self {
        Self {
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent,
        }
    }
}

impl TryFrom<RegisterRequest> for NewUser {
    type Error = ApiError;

    fn try_from(body: RegisterRequest) -> Result<Self, ApiError> {
        let mut v = Validator::default();
        let email = v.check(Email::parse(&body.email));
        let password = v.check(
            Password::parse(body.password)
                .and_then(|p| p.refuse_guessable(&[&body.email, &body.name]).map(|()| p)),
        );
        let name = v.check(UserName::parse(&body.name));
        v.finish(|| {
            Some(NewUser {
                email: email?,
                password: password?,
                name: name?,
            })
        })
    }
}

#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = Session), (status = 409, description = "email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn register(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<RegisterRequest>>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let new_user = NewUser::try_from(body)?;
    let grant = app
        .accounts
        .register(new_user, user_agent(&headers))
        .await?;
    Ok((StatusCode::CREATED, Json(grant.into())))
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Session),
        (status = 401, description = "unknown email or wrong password, alike", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts from this address, or too many failed logins for this email (known or not, alike)", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<LoginRequest>>,
) -> Result<Json<Session>, ApiError> {
    let grant = app
        .accounts
        .login(&body.email, body.password, user_agent(&headers))
        .await?;
    Ok(Json(grant.into()))
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Session),
        (status = 401, description = "unknown, expired, revoked or reused token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn refresh(
    State(app): State<AppState>,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<RefreshRequest>>,
) -> Result<Json<Session>, ApiError> {
    let grant = app.accounts.refresh(&body.refresh_token).await?;
    Ok(Json(grant.into()))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "the session is over"),
        (status = 401, description = "unknown token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn logout(
    State(app): State<AppState>,
    ApiJson(JsonObject(body)): ApiJson<JsonObject<RefreshRequest>>,
) -> Result<StatusCode, ApiError> {
    app.accounts.logout(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "every session of the user is over"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn logout_all(
    user: AuthUser,
    State(app): State<AppState>,
) -> Result<StatusCode, ApiError> {
    app.accounts.logout_all(user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionList),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn sessions(
    user: AuthUser,
    State(app): State<AppState>,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = app.accounts.sessions(user.id).await?;
    Ok(Json(SessionList {
        sessions: sessions.into_iter().map(SessionInfo::from).collect(),
    }))
}

/// The answer to an erasure.
#[derive(Serialize, ToSchema)]
pub(crate) struct Erased {
    /// The log position of the `UserErased` event: send it as
    /// `X-Min-Position` to read after the projections have removed
    /// everything of the account.
    position: u64,
}

#[utoipa::path(delete, path = "/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "the account, its sessions and its data key are deleted; every task of it leaves the read models once the projector reaches `position`, and its text in the log can no longer be read", body = Erased),
        (status = 401, description = "no such account (erased already)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the event log is down; the erasure is recorded and completes on a retry", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn erase(
    user: AuthUser,
    State(app): State<AppState>,
    request_id: RequestId,
) -> Result<Json<Erased>, ApiError> {
    let request_id = Some(request_id.0).filter(|r| !r.is_empty());
    let erased = app
        .accounts
        .erase(user.id, app.store.as_ref(), request_id)
        .await;
    // Even when the erasure must be retried: its key may be gone already.
    app.recent.forget_owner(UserId(user.id));
    let position = erased?;
    Ok(Json(Erased { position }))
}

#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn me(
    user: AuthUser,
    State(app): State<AppState>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(app.accounts.me(user.id).await?.into()))
}
