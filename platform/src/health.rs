//! `/health/live` and `/health/ready`. Readiness runs every dependency check
//! at once, bounded, and turns 503 as soon as shutdown begins so load
//! balancers stop sending before the listener closes.
//!
//! Which dependency failed, and why, is for the inside: it is logged, and
//! answered on the service's own port, but a request that came through the
//! public gateway (which sets `X-Tasklog-Gateway` on everything it forwards,
//! overwriting whatever the client sent) gets only `ok` or `down`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use sqlx::PgPool;

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;
type ReportFn = Arc<dyn Fn() -> Value + Send + Sync>;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Set by the public gateway on every request it forwards (`deploy/nginx`,
/// the Kubernetes HTTPRoute): such a request is from the outside.
pub static VIA_GATEWAY: HeaderName = HeaderName::from_static("x-tasklog-gateway");

#[derive(Clone, Default)]
pub struct Health {
    checks: Vec<(&'static str, CheckFn)>,
    reports: Vec<(&'static str, ReportFn)>,
    draining: Arc<AtomicBool>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a named dependency check; an `Err` carries the reason.
    #[must_use]
    pub fn check<F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(f()))));
        self
    }

    /// Adds a named check that asks `handle` (a pool, an `Arc` of a store)
    /// with `ping`; the error's text is the reason.
    #[must_use]
    pub fn ping<D, F, Fut, E>(self, name: &'static str, handle: D, ping: F) -> Self
    where
        D: Clone + Send + Sync + 'static,
        F: Fn(D) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.check(name, move || {
            let reply = ping(handle.clone());
            async move { reply.await.map_err(|e| e.to_string()) }
        })
    }

    /// `postgres`: whether `db` answers a `SELECT 1`.
    #[must_use]
    pub fn postgres(self, db: PgPool) -> Self {
        self.ping("postgres", db, |db| async move {
            sqlx::query("SELECT 1").execute(&db).await.map(|_| ())
        })
    }

    /// Adds a named part of the readiness answer that never makes it fail
    /// (e.g. each read replica's state: reads move elsewhere without one).
    #[must_use]
    pub fn report<F>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> Value + Send + Sync + 'static,
    {
        self.reports.push((name, Arc::new(f)));
        self
    }

    /// Marks the service as shutting down: readiness answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let health = self.clone();
        Router::new()
            .route(
                "/health/live",
                get(|| async { Json(json!({"status": "live"})) }),
            )
            .route(
                "/health/ready",
                get(move |headers: HeaderMap| {
                    let health = health.clone();
                    async move { health.ready(headers.contains_key(&VIA_GATEWAY)).await }
                }),
            )
    }

    async fn ready(&self, public: bool) -> Response {
        let results = futures_util::future::join_all(self.checks.iter().map(|(name, f)| {
            let f = f.clone();
            async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, f()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                };
                (*name, outcome)
            }
        }))
        .await;
        let mut checks = Map::new();
        let mut ok = !self.is_draining();
        for (name, outcome) in results {
            let text = match outcome {
                Ok(()) => "ok".to_owned(),
                Err(reason) => {
                    ok = false;
                    tracing::warn!(dependency = name, %reason, "readiness check failed");
                    format!("down: {reason}")
                }
            };
            checks.insert(name.to_owned(), Value::String(text));
        }
        let status = if self.is_draining() {
            "draining"
        } else if ok {
            "ready"
        } else {
            "unavailable"
        };
        let code = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        if public {
            let plain = if ok { "ok" } else { "down" };
            return (code, Json(json!({"status": plain}))).into_response();
        }
        let mut body = json!({"status": status, "checks": checks});
        for (name, report) in &self.reports {
            body[*name] = report();
        }
        (code, Json(body)).into_response()
    }
}
