//! JSON logs: the line for a finished request names its request id, route
//! template, status, latency and user.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

use crate::support::{spawn, token};

/// A writer into a shared buffer, so the test can read what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

/// This thread's log lines, as the services write them (JSON, `info`),
/// captured until the guard is dropped.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tasklog_platform::telemetry::json_layer(captured.clone()));
    (captured, tracing::subscriber::set_default(subscriber))
}

// One thread: the subscriber of capture_logs is this thread's, and the server's tasks
// must log through it.
#[tokio::test(flavor = "current_thread")]
async fn a_finished_request_is_logged_with_id_route_status_latency_and_user() {
    let (captured, _guard) = capture_logs();

    let app = spawn(&[]).await;
    let user = Uuid::new_v4();
    let response = app
        .get("/v1/items/abc")
        .bearer_auth(token(user))
        .header("x-request-id", "log-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request finished" && l["span"]["request_id"] == "log-me-1")
        .unwrap_or_else(|| panic!("no finished line in:\n{text}"));
    assert_eq!(line["span"]["route"], "/v1/items/{id}");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["user_id"], user.to_string());
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].as_f64().is_some(), "{line}");
}

// The default trusts no proxy; a gateway in front that TRUSTED_PROXIES does
// not name is said once, not on every request.
#[tokio::test(flavor = "current_thread")]
async fn forwarded_for_from_an_untrusted_peer_is_logged_once() {
    let (captured, _guard) = capture_logs();

    let app = spawn(&[]).await;
    for _ in 0..3 {
        let response = app
            .get("/v1/items/abc")
            .bearer_auth(token(Uuid::new_v4()))
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("TRUSTED_PROXIES"))
        })
        .collect();
    assert_eq!(lines.len(), 1, "once, in:\n{text}");
    assert_eq!(lines[0]["peer"], "127.0.0.1");
    let finished = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request finished")
        .unwrap_or_else(|| panic!("no finished line in:\n{text}"));
    assert_eq!(
        finished["span"]["client_ip"], "127.0.0.1",
        "the header was ignored"
    );
}
