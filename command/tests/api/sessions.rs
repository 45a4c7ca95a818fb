//! Sessions with an end: an absolute lifetime that rotation cannot extend,
//! logout-all, and the list of a user's sessions (no secrets in it).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, User, problem, spawn_app, spawn_app_with, unique_email};

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/v1/auth/refresh", &json!({"refresh_token": token}), None)
        .await
}

async fn login(app: &TestApp, user: &User, agent: &str) -> Value {
    let response = app
        .request(Method::POST, "/v1/auth/login")
        .header("user-agent", agent)
        .json(&json!({"email": user.email, "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn sessions(app: &TestApp, token: &str) -> (String, Value) {
    let response = app
        .request(Method::GET, "/v1/auth/sessions")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap();
    (text, body)
}

#[tokio::test]
async fn rotation_never_extends_a_session_past_its_absolute_end() {
    // Each token would live a day; the session only an hour.
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_TTL_SECS", "86400"),
        ("SESSION_MAX_AGE_SECS", "3600"),
    ])
    .await;
    let user = app.register(&unique_email()).await;
    let rotated: Value = refresh(&app, &user.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    let token = rotated["refresh_token"].as_str().unwrap();
    let (session_end, newest_token_end): (
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT f.expires_at, max(t.expires_at) FROM accounts.token_families f \
             JOIN accounts.refresh_tokens t ON t.family_id = f.id \
             WHERE f.user_id = $1 GROUP BY f.expires_at",
    )
    .bind(user.id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(
        newest_token_end <= session_end,
        "{newest_token_end} > {session_end}"
    );
    let created: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT created_at FROM accounts.token_families WHERE user_id = $1")
            .bind(user.id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(session_end <= created + chrono::Duration::seconds(3601));

    // The session's end passes (moved back rather than waited for): the
    // newest token, though its own day is not over, is refused.
    sqlx::query("UPDATE accounts.token_families SET expires_at = now() - interval '1 second' WHERE user_id = $1")
        .bind(user.id)
        .execute(app.pool())
        .await
        .unwrap();
    problem(refresh(&app, token).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let other = app.register(&unique_email()).await;
    let second = login(&app, &user, "phone").await;

    let response = app
        .post("/v1/auth/logout-all", &json!({}), Some(&user.token))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for token in [
        user.refresh_token.as_str(),
        second["refresh_token"].as_str().unwrap(),
    ] {
        problem(refresh(&app, token).await, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(
        refresh(&app, &other.refresh_token).await.status(),
        StatusCode::OK
    );
    let anonymous = app.post("/v1/auth/logout-all", &json!({}), None).await;
    problem(anonymous, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn sessions_lists_the_open_ones_with_their_client_and_no_secret() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let laptop = login(&app, &user, "laptop-browser/1.0").await;
    let phone = login(&app, &user, "phone-app/2.0").await;
    // The laptop's session is used once; the phone's ends.
    let rotated: Value = refresh(&app, laptop["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let logout = app
        .post(
            "/v1/auth/logout",
            &json!({"refresh_token": phone["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    let (text, body) = sessions(&app, &user.token).await;
    let list = body["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    assert_eq!(list[0]["user_agent"], "laptop-browser/1.0", "newest first");
    assert!(list[0]["last_used_at"].is_string());
    assert!(
        list[1]["last_used_at"].is_null(),
        "the registration's, never refreshed"
    );
    for session in list {
        let mut keys: Vec<&str> = session
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "created_at",
                "expires_at",
                "id",
                "last_used_at",
                "user_agent"
            ]
        );
    }
    for secret in [
        user.refresh_token.as_str(),
        rotated["refresh_token"].as_str().unwrap(),
        laptop["access_token"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret));
    }
    problem(
        app.request(Method::GET, "/v1/auth/sessions")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
