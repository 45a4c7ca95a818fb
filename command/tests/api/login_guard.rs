//! What stands between a guesser and an account: failed logins counted per
//! account (unknown emails alike), guessable passwords refused at
//! register, and look-alike emails folded into one account.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, fields, problem, spawn_app, spawn_app_with, unique_email};

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post(
        "/v1/auth/login",
        &json!({"email": email, "password": password}),
        None,
    )
    .await
}

/// The problem's fields that could tell two accounts apart.
fn shape(body: &Value) -> (Value, Value, Value) {
    (
        body["type"].clone(),
        body["title"].clone(),
        body["status"].clone(),
    )
}

#[tokio::test]
async fn failed_logins_lock_an_account_whether_or_not_it_exists() {
    let app = spawn_app_with(&[("LOGIN_MAX_FAILURES", "3"), ("LOGIN_LOCK_SECS", "600")]).await;
    let known = unique_email();
    app.register(&known).await;
    let unknown = unique_email();
    let mut locked = Vec::new();
    for email in [&known, &unknown] {
        for _ in 0..3 {
            problem(
                login(&app, email, "wrong horse").await,
                StatusCode::UNAUTHORIZED,
            )
            .await;
        }
        // Even the right password waits now: the lock does not test it.
        let response = login(&app, email, "correct horse").await;
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=600).contains(&retry), "{retry}");
        locked.push(shape(
            &problem(response, StatusCode::TOO_MANY_REQUESTS).await,
        ));
    }
    assert_eq!(
        locked[0], locked[1],
        "a lock says nothing about the account"
    );
    // Other accounts are not affected, and the count is per normalised email.
    let other = unique_email();
    app.register(&other).await;
    assert_eq!(
        login(&app, &other, "correct horse").await.status(),
        StatusCode::OK
    );
    let shouted = known.to_uppercase();
    problem(
        login(&app, &shouted, "correct horse").await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
}

#[tokio::test]
async fn a_successful_login_forgets_earlier_failures() {
    let app = spawn_app_with(&[("LOGIN_MAX_FAILURES", "3")]).await;
    let email = unique_email();
    app.register(&email).await;
    for _ in 0..3 {
        for _ in 0..2 {
            problem(
                login(&app, &email, "wrong horse").await,
                StatusCode::UNAUTHORIZED,
            )
            .await;
        }
        assert_eq!(
            login(&app, &email, "correct horse").await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn guessable_passwords_are_refused_at_register() {
    let app = spawn_app().await;
    let email = format!("grace.hopper.{}@example.com", Uuid::new_v4().simple());
    for weak in ["12345678", "password123", "qwertyuiop", "Grace Hopper"] {
        let response = app
            .post(
                "/v1/auth/register",
                &json!({"email": email, "password": weak, "name": "Grace Hopper"}),
                None,
            )
            .await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(fields(&body), ["password"], "{weak}");
    }
    // Nothing was registered: the email is still free.
    app.register(&email).await;
}

#[tokio::test]
async fn look_alike_emails_are_one_account_and_invisible_characters_are_refused() {
    let app = spawn_app().await;
    let local = format!("ann{}", Uuid::new_v4().simple());
    let email = format!("{local}@example.com");
    app.register(&email).await;
    // Full-width letters and another case: the same account.
    let wide: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                char::from_u32(c as u32 - 0x61 + 0xFF41).unwrap()
            } else {
                c
            }
        })
        .collect();
    for alike in [format!("{wide}@example.com"), email.to_uppercase()] {
        let taken = app
            .post(
                "/v1/auth/register",
                &json!({"email": alike, "password": "tidy-otter-42-lamp", "name": "N"}),
                None,
            )
            .await;
        problem(taken, StatusCode::CONFLICT).await;
        assert_eq!(
            login(&app, &alike, "correct horse").await.status(),
            StatusCode::OK,
            "{alike}"
        );
    }
    for invisible in [
        format!("a\u{200b}{email}"),
        format!("{local}\u{2066}@example.com"),
    ] {
        let response = app
            .post(
                "/v1/auth/register",
                &json!({"email": invisible, "password": "tidy-otter-42-lamp", "name": "N"}),
                None,
            )
            .await;
        assert_eq!(
            fields(&problem(response, StatusCode::UNPROCESSABLE_ENTITY).await),
            ["email"]
        );
    }
}
