//! Security headers, CORS, compression, body limit, timeout, panics and
//! request ids, each on real answers.

use reqwest::StatusCode;
use tasklog_platform::config::Environment;
use uuid::Uuid;

use tasklog_platform::testing::problem;

use crate::support::{Options, header, spawn, spawn_with, token};

fn assert_security_headers(response: &reqwest::Response, hsts: bool) {
    let path = response.url().path().to_owned();
    assert_eq!(
        header(response, "x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(header(response, "x-frame-options"), Some("DENY"), "{path}");
    assert_eq!(
        header(response, "referrer-policy"),
        Some("no-referrer"),
        "{path}"
    );
    assert_eq!(
        header(response, "content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'"),
        "{path}"
    );
    assert_eq!(
        header(response, "strict-transport-security").is_some(),
        hsts,
        "{path}"
    );
    assert_eq!(
        header(response, "cache-control"),
        Some("no-store"),
        "{path}"
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn(&[("RATE_LIMIT_AUTH", "1"), ("REQUEST_TIMEOUT_MS", "100")]).await;
    let ok = app.get("/v1/small").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_security_headers(&ok, false);
    let missing = app.get("/no/such/route").send().await.unwrap();
    assert_security_headers(&missing, false);
    problem(missing, StatusCode::NOT_FOUND).await;
    for (response, status) in [
        (app.get("/v1/me").send().await.unwrap(), 401),
        (app.post("/v1/small").send().await.unwrap(), 405),
        (app.get("/v1/slow").send().await.unwrap(), 504),
        (app.get("/v1/panic").send().await.unwrap(), 500),
        (app.login().await, 200),
        (app.login().await, 429),
    ] {
        assert_eq!(response.status(), status);
        assert_security_headers(&response, false);
    }
}

#[tokio::test]
async fn strict_transport_security_only_in_production() {
    let app = spawn_with(Options {
        environment: Environment::Production,
        ..Options::default()
    })
    .await;
    let response = app.get("/v1/small").send().await.unwrap();
    assert_security_headers(&response, true);
    assert!(
        header(&response, "strict-transport-security")
            .unwrap()
            .starts_with("max-age=")
    );
}

#[tokio::test]
async fn cors_preflight_allows_listed_origins_only() {
    let app = spawn(&[("CORS_ORIGINS", "https://app.example, http://localhost:5173")]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/v1/me", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization, x-min-position",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        Some("https://app.example")
    );
    let allow_headers = header(&allowed, "access-control-allow-headers")
        .unwrap()
        .to_owned();
    assert!(allow_headers.contains("authorization") && allow_headers.contains("x-min-position"));
    assert!(
        header(&allowed, "access-control-allow-methods")
            .unwrap()
            .contains("PATCH")
    );

    let refused = preflight("https://evil.example").await.unwrap();
    assert!(header(&refused, "access-control-allow-origin").is_none());

    let simple = app
        .get("/v1/small")
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&simple, "access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    let exposed = header(&simple, "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "etag",
        "location",
        "x-projection-position",
        "ratelimit-remaining",
        "retry-after",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
}

#[tokio::test]
async fn large_answers_are_compressed_when_asked_small_ones_never() {
    let app = spawn(&[]).await;
    for encoding in ["gzip", "br"] {
        let big = app
            .get("/v1/big")
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&big, "content-encoding"), Some(encoding));
        let compressed = big.bytes().await.unwrap();
        assert!(
            compressed.len() < 4096 / 2,
            "{encoding}: {} bytes",
            compressed.len()
        );
    }
    let small = app
        .get("/v1/small")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(header(&small, "content-encoding").is_none());
    let unasked = app.get("/v1/big").send().await.unwrap();
    assert!(header(&unasked, "content-encoding").is_none());
    assert!(unasked.bytes().await.unwrap().len() > 4096);
}

#[tokio::test]
async fn a_body_over_64_kib_is_a_413_problem() {
    let app = spawn(&[]).await;
    let body = serde_json::json!({"text": "x".repeat(70 * 1024)});
    let response = app.post("/v1/echo").json(&body).send().await.unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    let fits = serde_json::json!({"text": "x".repeat(60 * 1024)});
    assert_eq!(
        app.post("/v1/echo")
            .json(&fits)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_request_over_the_timeout_is_a_504_problem() {
    let app = spawn(&[("REQUEST_TIMEOUT_MS", "100")]).await;
    let body = problem(
        app.get("/v1/slow").send().await.unwrap(),
        StatusCode::GATEWAY_TIMEOUT,
    )
    .await;
    assert_eq!(body["type"], "/problems/timeout");
    assert_eq!(app.get("/v1/small").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_that_tells_nothing() {
    let app = spawn(&[]).await;
    let response = app
        .get("/v1/panic")
        .header("x-request-id", "panic-42")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-request-id"), Some("panic-42"));
    let body = problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
    let text = body.to_string();
    assert!(!text.contains("secret"), "{text}");
    assert!(body.get("detail").is_none(), "{text}");
    // The service lives on.
    assert_eq!(app.get("/v1/small").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_request_id_is_kept_when_sent_and_made_when_not() {
    let app = spawn(&[]).await;
    let kept = app
        .get("/v1/small")
        .header("x-request-id", "req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&kept, "x-request-id"), Some("req-1"));
    let made = app.get("/nowhere").send().await.unwrap();
    let id = header(&made, "x-request-id").unwrap();
    assert!(id.parse::<Uuid>().is_ok(), "{id}");
    let authed = app
        .get("/v1/me")
        .bearer_auth(token(Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert!(header(&authed, "x-request-id").is_some());
}

#[tokio::test]
async fn a_request_id_unfit_to_store_is_replaced_by_a_fresh_one() {
    let app = spawn(&[]).await;
    let longest = "a".repeat(64);
    for fit in ["A-z.0_9", longest.as_str()] {
        let kept = app
            .get("/v1/small")
            .header("x-request-id", fit)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&kept, "x-request-id"), Some(fit));
    }
    let too_long = "a".repeat(65);
    for unfit in [
        too_long.as_str(),
        "has space",
        "semi;colon",
        "quote\"",
        "slash/",
        "é",
    ] {
        let replaced = app
            .get("/v1/small")
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(unfit.as_bytes()).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let id = header(&replaced, "x-request-id").unwrap();
        assert!(id.parse::<Uuid>().is_ok(), "{unfit:?} gave {id}");
    }
}
