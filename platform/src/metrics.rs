//! Prometheus metrics: one recorder per process (installed on first use, so
//! tests that build many apps in one process share it), the HTTP request
//! metrics middleware, and a `/metrics` route any service or the projector
//! can mount.
//!
//! Histograms named `*_seconds` get latency buckets (1 ms to 10 s) and
//! `*_events` count buckets (1 to 10,000); anything else renders as a
//! summary. Only one recorder can be global: a binary that installs its own
//! (the projector's `metrics_handle()` today) must call [`install`] instead,
//! or one of the two renders nothing.
//!
//! Recording elsewhere is the `metrics` crate's macros, re-exported here so
//! a crate needs no dependency of its own:
//!
//! ```no_run
//! tasklog_platform::metrics::install();
//! tasklog_platform::metrics::metrics::gauge!("projector_checkpoint", "projection" => "tasks").set(42.0);
//! let router: axum::Router = tasklog_platform::metrics::router(vec![]);
//! ```

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
pub use metrics;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::read_pool::ReadPool;

/// Seconds; from a fast cached read to the request timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Items per batch (e.g. the projector's `projector_batch_events`).
const COUNT_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// How often histogram samples are folded in when nobody scrapes, so memory
/// stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder once and returns its handle; later calls
/// return the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_events".to_owned()), COUNT_BUCKETS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "another metrics recorder is installed; /metrics will miss its data"
                );
            }
            describe();
            let upkeep = handle.clone();
            // A thread, not a task: it must outlive any one runtime (tests start many).
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method, route template and status"
    );
    metrics::describe_gauge!("db_pool_connections", "Open connections of a Postgres pool");
    metrics::describe_gauge!(
        "db_pool_idle_connections",
        "Idle connections of a Postgres pool"
    );
    metrics::describe_gauge!("db_pool_max_connections", "Size limit of a Postgres pool");
}

/// The current metrics in Prometheus text.
pub fn render() -> String {
    install().render()
}

/// A Postgres pool whose usage `/metrics` samples.
#[derive(Clone)]
pub enum MeteredPool {
    Sqlx(PgPool),
    Read(ReadPool),
}

impl From<PgPool> for MeteredPool {
    fn from(pool: PgPool) -> Self {
        Self::Sqlx(pool)
    }
}

impl From<ReadPool> for MeteredPool {
    fn from(pool: ReadPool) -> Self {
        Self::Read(pool)
    }
}

impl MeteredPool {
    /// Open, idle, and the most allowed.
    #[allow(clippy::cast_precision_loss)]
    fn usage(&self) -> (f64, f64, f64) {
        match self {
            Self::Sqlx(pool) => (
                f64::from(pool.size()),
                pool.num_idle() as f64,
                f64::from(pool.options().get_max_connections()),
            ),
            Self::Read(pool) => {
                let (size, idle, max) = pool.usage();
                (size as f64, idle as f64, max as f64)
            }
        }
    }
}

/// `GET /metrics`, sampling each named pool's usage at scrape time.
pub fn router<S: Clone + Send + Sync + 'static>(
    pools: Vec<(&'static str, MeteredPool)>,
) -> Router<S> {
    install();
    Router::new().route(
        "/metrics",
        get(move || {
            for (name, pool) in &pools {
                let name = *name;
                let (size, idle, max) = pool.usage();
                metrics::gauge!("db_pool_connections", "pool" => name).set(size);
                metrics::gauge!("db_pool_idle_connections", "pool" => name).set(idle);
                metrics::gauge!("db_pool_max_connections", "pool" => name).set(max);
            }
            let body = render();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    )
}

/// Methods outside the usual set share one label, so a client cannot make up
/// new series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every request by its route template (never the raw path,
/// which would make a series per task id); unrouted requests are `unmatched`.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
