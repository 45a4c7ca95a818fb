//! Access-token forgery and expiry; refresh-token rotation, reuse and logout.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasklog_platform::auth::{AUDIENCE, Claims, DEV_SECRET, ISSUER};
use uuid::Uuid;

use crate::helpers::{TestApp, problem, spawn_app, spawn_app_with, unique_email};

fn claims(sub: Uuid) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub,
        iat: now,
        exp: now + 600,
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        jti: Uuid::new_v4(),
    }
}

fn hs256(claims: &Claims, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.request(Method::GET, "/v1/auth/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_401() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    // The forging recipe is right: with the real secret it is accepted.
    assert_eq!(
        me_status(&app, &hs256(&claims(user.id), DEV_SECRET.as_bytes())).await,
        StatusCode::OK
    );

    let mut expired = claims(user.id);
    expired.iat -= 3600;
    expired.exp = chrono::Utc::now().timestamp() - 60;
    let mut wrong_audience = claims(user.id);
    wrong_audience.aud = "someone-else".into();
    let mut wrong_issuer = claims(user.id);
    wrong_issuer.iss = "evil".into();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(user.id)).unwrap());
    let unsigned = format!("{header}.{payload}.");
    let mut parts: Vec<String> = user.token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(Uuid::now_v7())).unwrap());
    let tampered = parts.join(".");

    let forged = [
        (
            "another secret",
            hs256(&claims(user.id), b"not-the-secret-not-the-secret-xx"),
        ),
        ("expired", hs256(&expired, DEV_SECRET.as_bytes())),
        (
            "wrong audience",
            hs256(&wrong_audience, DEV_SECRET.as_bytes()),
        ),
        ("wrong issuer", hs256(&wrong_issuer, DEV_SECRET.as_bytes())),
        ("alg none", unsigned),
        ("tampered payload", tampered),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in forged {
        assert_eq!(
            me_status(&app, &token).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_valid_token_for_a_user_that_does_not_exist_is_401() {
    let app = spawn_app().await;
    let token = hs256(&claims(Uuid::now_v7()), DEV_SECRET.as_bytes());
    assert_eq!(me_status(&app, &token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_key_files_an_hs256_token_made_from_the_public_key_is_refused() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../platform/tests/keys");
    let public = format!("{keys}/ed25519-public.pem");
    let private = format!("{keys}/ed25519-private.pem");
    let app = spawn_app_with(&[
        ("JWT_PUBLIC_KEY_FILE", &public),
        ("JWT_PRIVATE_KEY_FILE", &private),
    ])
    .await;
    let user = app.register(&unique_email()).await;
    assert_eq!(
        me_status(&app, &user.token).await,
        StatusCode::OK,
        "EdDSA tokens work"
    );
    let pem = std::fs::read(&public).unwrap();
    let confused = hs256(&claims(user.id), &pem);
    assert_eq!(me_status(&app, &confused).await, StatusCode::UNAUTHORIZED);
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/v1/auth/refresh", &json!({"refresh_token": token}), None)
        .await
}

#[tokio::test]
async fn refresh_rotates_and_reuse_of_a_rotated_token_ends_the_session() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let response = refresh(&app, &user.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session: Value = response.json().await.unwrap();
    let second = session["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, user.refresh_token);
    assert_eq!(session["user"]["id"], user.id.to_string());
    assert_eq!(
        me_status(&app, session["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );

    // The old token stops working, and presenting it revokes the family...
    problem(
        refresh(&app, &user.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // ...so the newest token, possibly held by a thief, is dead too.
    problem(refresh(&app, &second).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn reuse_in_one_session_leaves_other_sessions_alone() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let login: Value = app
        .post(
            "/v1/auth/login",
            &json!({"email": user.email, "password": "correct horse"}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let other_session = login["refresh_token"].as_str().unwrap();
    assert_eq!(
        refresh(&app, &user.refresh_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        refresh(&app, &user.refresh_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(refresh(&app, other_session).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_revokes_the_session_and_unknown_tokens_are_401() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let response = app
        .post(
            "/v1/auth/logout",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(
        refresh(&app, &user.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Logging out twice is harmless.
    let again = app
        .post(
            "/v1/auth/logout",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);

    let unknown = app
        .post(
            "/v1/auth/logout",
            &json!({"refresh_token": "never-issued"}),
            None,
        )
        .await;
    problem(unknown, StatusCode::UNAUTHORIZED).await;
    problem(
        refresh(&app, "never-issued").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let missing = app.post("/v1/auth/refresh", &json!({}), None).await;
    problem(missing, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let app = spawn_app_with(&[("REFRESH_TOKEN_TTL_SECS", "1")]).await;
    let user = app.register(&unique_email()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    problem(
        refresh(&app, &user.refresh_token).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
