//! Error tracking with Sentry, only when `SENTRY_DSN` is set: panics and 5xx
//! responses are reported with the request id, route, method, status,
//! release, environment and the user's id, and nothing else about the user
//! (no email, no address, no headers, no body). Unset, no client exists and
//! nothing is sent or even built per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use sentry::protocol::{Event, Level, User};
use sentry::{Hub, SentryFutureExt};
use uuid::Uuid;

use crate::config::{ConfigError, Env};
use crate::http::REQUEST_ID;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process reports to Sentry.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Marks a response made from a panic, which the panic hook has reported
/// already: it is not reported a second time as a 5xx.
#[derive(Debug, Clone, Copy)]
pub struct PanicReported;

/// What `init` found in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentrySettings {
    pub dsn: sentry::types::Dsn,
    pub release: String,
    pub environment: String,
}

impl SentrySettings {
    /// `SENTRY_DSN` (unset: `None`), `SENTRY_RELEASE` (default
    /// `<service>@<version>`) and `SENTRY_ENVIRONMENT` (default `TASKLOG_ENV`,
    /// and `production` when that is unset too).
    ///
    /// # Errors
    /// When `SENTRY_DSN` is not a DSN.
    pub fn from_env(env: &Env, service_name: &str) -> Result<Option<Self>, ConfigError> {
        let Some(raw) = env.get("SENTRY_DSN") else {
            return Ok(None);
        };
        let dsn = raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::new("SENTRY_DSN", format!("is not a Sentry DSN: {e}")))?;
        Ok(Some(Self {
            dsn,
            release: env.string(
                "SENTRY_RELEASE",
                &format!("{service_name}@{}", env!("CARGO_PKG_VERSION")),
            ),
            environment: env
                .get("SENTRY_ENVIRONMENT")
                .or_else(|| env.get("TASKLOG_ENV"))
                .unwrap_or("production")
                .to_owned(),
        }))
    }
}

/// Starts the client when `SENTRY_DSN` is set. Keep the guard until the
/// process ends: dropping it sends what is queued (waiting at most 2 s).
///
/// # Errors
/// When `SENTRY_DSN` is not a DSN.
pub fn init(env: &Env, service_name: &str) -> Result<Option<sentry::ClientInitGuard>, ConfigError> {
    let Some(settings) = SentrySettings::from_env(env, service_name)? else {
        return Ok(None);
    };
    let guard = sentry::init(sentry::ClientOptions {
        dsn: Some(settings.dsn),
        release: Some(settings.release.into()),
        environment: Some(settings.environment.into()),
        // Never the client's address, headers or cookies.
        send_default_pii: false,
        ..Default::default()
    });
    ENABLED.store(guard.is_enabled(), Ordering::Relaxed);
    Ok(Some(guard))
}

/// Names the request's user (by id only) in what it may report.
pub fn set_user(id: Uuid) {
    if enabled() {
        sentry::configure_scope(|scope| {
            scope.set_user(Some(User {
                id: Some(id.to_string()),
                ..Default::default()
            }));
        });
    }
}

/// Gives each request a scope of its own (request id, route, method; the
/// user once authenticated) that a panic in it is reported with, and
/// reports a 5xx answer. Runs inside the trace span, outside the panic
/// catcher.
pub async fn report_server_errors(request: Request, next: Next) -> Response {
    if !enabled() {
        return next.run(request).await;
    }
    let hub = Arc::new(Hub::new_from_top(Hub::current()));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    hub.configure_scope(|scope| {
        scope.set_tag("request_id", &request_id);
        scope.set_tag("route", &route);
        scope.set_tag("method", &method);
    });
    let response = next.run(request).bind_hub(hub.clone()).await;
    let status = response.status();
    if status.is_server_error() && response.extensions().get::<PanicReported>().is_none() {
        hub.configure_scope(|scope| scope.set_tag("status", status.as_u16()));
        hub.capture_event(Event {
            level: Level::Error,
            message: Some(format!("{method} {route} answered {status}")),
            logger: Some("tasklog.http".into()),
            ..Default::default()
        });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_dsn_nothing_is_set_up() {
        assert_eq!(
            SentrySettings::from_env(&Env::default(), "svc").unwrap(),
            None
        );
        assert!(init(&Env::default(), "svc").unwrap().is_none());
        assert!(!enabled());
    }

    #[test]
    fn release_and_environment_default_to_the_build_and_tasklog_env() {
        let env = Env::from_pairs([
            ("SENTRY_DSN", "https://public@errors.example.com/42"),
            ("TASKLOG_ENV", "development"),
        ]);
        let s = SentrySettings::from_env(&env, "tasklog-query")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.release,
            format!("tasklog-query@{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(s.environment, "development");
        let env = Env::from_pairs([
            ("SENTRY_DSN", "https://public@errors.example.com/42"),
            ("SENTRY_RELEASE", "r1"),
            ("SENTRY_ENVIRONMENT", "staging"),
        ]);
        let s = SentrySettings::from_env(&env, "tasklog-query")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.release.as_str(), s.environment.as_str()),
            ("r1", "staging")
        );
        let bad = Env::from_pairs([("SENTRY_DSN", "not a dsn")]);
        assert_eq!(
            SentrySettings::from_env(&bad, "x").unwrap_err().name,
            "SENTRY_DSN"
        );
    }
}
