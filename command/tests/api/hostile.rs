//! Nothing a client sends is a 500: odd characters, extreme values, huge or
//! deeply nested bodies and broken headers all get a 4xx.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, unique_email};

#[tokio::test]
async fn hostile_inputs_get_a_4xx_never_a_5xx() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let task = app.create_task(&user, json!({"title": "T"})).await;
    let id = task["id"].as_str().unwrap().to_owned();
    let nul = "a\u{0}b";
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let huge = "x".repeat(30 * 1024);

    let json_posts = [
        (
            "/v1/auth/register",
            json!({"email": format!("a{nul}@example.com"), "password": "tidy-otter-42-lamp", "name": "N"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/auth/register",
            json!({"email": unique_email(), "password": "tidy-otter-42-lamp", "name": nul}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/auth/register",
            json!({"email": unique_email(), "password": format!("tidy-otter-{nul}-lamp"), "name": "N"}),
            StatusCode::CREATED,
        ),
        (
            "/v1/auth/login",
            json!({"email": format!("a{nul}@example.com"), "password": "tidy-otter-42-lamp"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/v1/auth/login",
            json!({"email": huge, "password": huge}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/v1/auth/refresh",
            json!({"refresh_token": nul}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/v1/auth/logout",
            json!({"refresh_token": huge}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/v1/tasks",
            json!({"title": nul}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/tasks",
            json!({"title": "T", "description": nul}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/tasks",
            json!({"title": "T", "tags": [nul]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/tasks",
            json!({"title": "T", "due_at": "9999-12-31T23:59:59Z"}),
            StatusCode::CREATED,
        ),
        (
            "/v1/tasks",
            json!({"title": "T", "due_at": "+10000-01-01T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/tasks",
            json!({"title": "T", "priority": 1e308}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (path, body, want) in json_posts {
        let response = app.post(path, &body, Some(&user.token)).await;
        assert_eq!(
            response.status(),
            want,
            "{path} {}",
            &body.to_string()[..body.to_string().len().min(120)]
        );
    }

    let raw_bodies = [
        (Method::POST, "/v1/tasks".to_owned(), deep.clone()),
        (
            Method::POST,
            "/v1/tasks".to_owned(),
            r#"{"title": "\ud800"}"#.to_owned(),
        ),
        (Method::POST, "/v1/tasks".to_owned(), "null".to_owned()),
        (Method::PATCH, format!("/v1/tasks/{id}"), "[]".to_owned()),
        (Method::PATCH, format!("/v1/tasks/{id}"), "123".to_owned()),
        (Method::PATCH, format!("/v1/tasks/{id}"), deep),
        (
            Method::PATCH,
            format!("/v1/tasks/{}", "9".repeat(4000)),
            "{}".to_owned(),
        ),
    ];
    for (method, path, body) in raw_bodies {
        let response = app
            .request(method.clone(), &path)
            .bearer_auth(&user.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error(),
            "{method} {path}: {}",
            response.status()
        );
    }

    let headers = [
        (
            "if-match",
            "\"99999999999999999999\"",
            StatusCode::BAD_REQUEST,
        ),
        (
            "if-match",
            "\"18446744073709551615\"",
            StatusCode::PRECONDITION_FAILED,
        ),
        ("authorization", "Bearer \u{ff}", StatusCode::UNAUTHORIZED),
        ("if-match", "\"\u{ff}\"", StatusCode::BAD_REQUEST),
        ("idempotency-key", "\u{ff}", StatusCode::OK),
        (
            "authorization",
            "Basic dXNlcjpwYXNz",
            StatusCode::UNAUTHORIZED,
        ),
        ("x-request-id", &"r".repeat(4000), StatusCode::OK),
    ];
    for (name, value, want) in headers {
        let mut request = app
            .request(Method::PATCH, &format!("/v1/tasks/{id}"))
            .header("content-type", "application/json")
            .body(r#"{"title": "changed"}"#);
        if name != "authorization" {
            request = request.bearer_auth(&user.token);
        }
        // Latin-1 bytes as they may arrive on the wire (obs-text), not UTF-8.
        let bytes: Vec<u8> = value
            .chars()
            .map(|c| u8::try_from(c as u32).unwrap())
            .collect();
        let value_bytes = reqwest::header::HeaderValue::from_bytes(&bytes).unwrap();
        let response = request.header(name, value_bytes).send().await.unwrap();
        assert_eq!(
            response.status(),
            want,
            "{name}: {}",
            &value[..value.len().min(40)]
        );
    }
}
