//! Register, login and me, with every refusal the contract names.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use tasklog_command::accounts::{Accounts, Passwords};

use crate::helpers::{fields, problem, settings, spawn_app, unique_email};

#[tokio::test]
async fn register_returns_a_session_with_the_trimmed_name() {
    let app = spawn_app().await;
    let email = unique_email();
    let response = app
        .post(
            "/v1/auth/register",
            &json!({"email": format!("  {email} "), "password": "tidy-otter-42-lamp", "name": "  Ann Lee "}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let session: Value = response.json().await.unwrap();
    assert_eq!(session["user"]["name"], "Ann Lee");
    assert_eq!(session["user"]["email"], email);
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert!(session["access_token"].as_str().unwrap().split('.').count() == 3);
    assert_eq!(session["refresh_token"].as_str().unwrap().len(), 43);
    let created_at = session["user"]["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z'), "UTC RFC 3339: {created_at}");
}

#[tokio::test]
async fn register_names_every_invalid_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "nope", "password": "tidy-otter-42-lamp", "name": "A"}),
            vec!["email"],
        ),
        (
            json!({"email": unique_email(), "password": "1234567", "name": "A"}),
            vec!["password"],
        ),
        (
            json!({"email": unique_email(), "password": "x".repeat(129), "name": "A"}),
            vec!["password"],
        ),
        (
            json!({"email": unique_email(), "password": "tidy-otter-42-lamp", "name": "   "}),
            vec!["name"],
        ),
        (
            json!({"email": unique_email(), "password": "tidy-otter-42-lamp", "name": "n".repeat(101)}),
            vec!["name"],
        ),
        (
            json!({"email": "x", "password": "short", "name": ""}),
            vec!["email", "password", "name"],
        ),
        (
            json!({"email": unique_email(), "password": "tidy-otter-42-lamp"}),
            vec!["name"],
        ),
        (
            json!({"email": unique_email(), "password": "tidy-otter-42-lamp", "name": "A", "admin": true}),
            vec!["admin"],
        ),
        (
            json!({"email": unique_email(), "password": 12345678, "name": "A"}),
            vec!["password"],
        ),
    ];
    for (body, want) in cases {
        let response = app.post("/v1/auth/register", &body, None).await;
        let p = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(fields(&p), want, "{body}");
    }
}

#[tokio::test]
async fn an_email_is_taken_whatever_its_case() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let response = app
        .post(
            "/v1/auth/register",
            &json!({"email": email.to_uppercase(), "password": "other password", "name": "B"}),
            None,
        )
        .await;
    problem(response, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn two_racing_registrations_of_one_email_give_one_account_and_one_409() {
    let app = spawn_app().await;
    let email = unique_email();
    let body = |e: String| json!({"email": e, "password": "tidy-otter-42-lamp", "name": "N"});
    let (first, second) = (body(email.clone()), body(email.to_uppercase()));
    let (a, b) = tokio::join!(
        app.post("/v1/auth/register", &first, None),
        app.post("/v1/auth/register", &second, None),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
}

#[tokio::test]
async fn login_works_with_any_case_of_the_email() {
    let app = spawn_app().await;
    let email = unique_email();
    let user = app.register(&email).await;
    let response = app
        .post(
            "/v1/auth/login",
            &json!({"email": email.to_uppercase(), "password": "correct horse"}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let session: Value = response.json().await.unwrap();
    assert_eq!(session["user"]["id"], user.id.to_string());
    assert_ne!(session["refresh_token"], user.refresh_token.as_str());
}

#[tokio::test]
async fn a_bad_login_looks_the_same_whether_or_not_the_email_exists() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let wrong_password = json!({"email": email, "password": "wrong horse"});
    let unknown_email = json!({"email": unique_email(), "password": "wrong horse"});
    let known = app.post("/v1/auth/login", &wrong_password, None).await;
    let unknown = app.post("/v1/auth/login", &unknown_email, None).await;
    assert_eq!(known.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let (known, unknown): (Value, Value) =
        (known.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(known, unknown, "the same body");
}

/// Equal cost without timing anything: each bad login runs exactly one
/// Argon2 verification, the unknown email against a dummy hash.
#[tokio::test]
async fn a_bad_login_costs_one_argon2_verification_whether_or_not_the_email_exists() {
    let app = spawn_app().await;
    let email = unique_email();
    app.register(&email).await;
    let settings = settings("postgres://postgres@127.0.0.1:5432/unused", &[]);
    let passwords = Passwords::new(1).await.unwrap();
    let accounts = Accounts::new(
        app.pool().clone(),
        passwords.clone(),
        settings.jwt.signer.clone().unwrap(),
        Duration::from_secs(60),
    );

    let before = passwords.verifications();
    assert!(
        accounts
            .login(&email, "wrong horse".into(), None)
            .await
            .is_err()
    );
    assert_eq!(passwords.verifications(), before + 1, "known email");
    assert!(
        accounts
            .login(&unique_email(), "wrong horse".into(), None)
            .await
            .is_err()
    );
    assert_eq!(passwords.verifications(), before + 2, "unknown email");
}

#[tokio::test]
async fn me_returns_the_caller_and_needs_a_token() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let response = app
        .request(Method::GET, "/v1/auth/me")
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["id"], user.id.to_string());
    assert_eq!(me["email"], user.email);
    assert_eq!(me["name"], "Test User");

    let response = app
        .request(Method::GET, "/v1/auth/me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn auth_bodies_refuse_the_wrong_media_type_and_malformed_json() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/auth/login")
        .header("content-type", "text/plain")
        .body(r#"{"email":"a@b.co","password":"x"}"#)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let response = app
        .request(Method::POST, "/v1/auth/login")
        .header("content-type", "application/json")
        .body(r#"{"email":"#)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;
}
