//! The Postgres pool every service uses, and start-up that waits for its
//! dependencies instead of crashing while they come up.

use std::future::Future;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::config::{ConfigError, DatabaseSettings};

/// A lazily connecting pool: the service starts (and reports not-ready) while
/// Postgres is down, and requests fail fast with 503 instead of queueing.
///
/// # Errors
/// When `DATABASE_URL` does not parse.
pub fn pool(settings: &DatabaseSettings, application: &str) -> Result<PgPool, ConfigError> {
    let options: PgConnectOptions = settings
        .url
        .parse()
        .map_err(|e: sqlx::Error| ConfigError::new("DATABASE_URL", e.to_string()))?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        // sqlx pings every connection it hands out by default: a second round
        // trip for each query, and under load the costliest part of a short
        // read. Ping only connections that sat idle long enough to have been
        // cut; a hot one that breaks fails its query (a 503) and is dropped.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options.application_name(application)))
}

/// The log's pool and the read model's (`READMODEL_DATABASE_URL`): one
/// pool for both when they name the same database, as in a one-server
/// install, so it holds no more connections than before.
///
/// # Errors
/// When a URL does not parse.
pub fn log_and_readmodel_pools(
    log: &DatabaseSettings,
    readmodel: &DatabaseSettings,
    application: &str,
) -> Result<(PgPool, PgPool), ConfigError> {
    let log_pool = pool(log, application)?;
    if readmodel.url == log.url {
        return Ok((log_pool.clone(), log_pool));
    }
    Ok((log_pool, pool(readmodel, application)?))
}

/// Idle longer than this, a pooled connection is checked before use.
pub(crate) const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(5);

/// How long a one-shot migrate job (`tasklog-command migrate`,
/// `tasklog-projector migrate`) keeps trying before it gives up.
pub const MIGRATE_JOB_WAIT: Duration = Duration::from_secs(300);

/// A one-shot job's start-up step gave up.
#[derive(Debug, thiserror::Error)]
#[error("{what} did not succeed within {limit:?} (each failure is logged above)")]
pub struct GaveUp {
    pub what: String,
    pub limit: Duration,
}

/// `retry_until_ok` for one-shot jobs, which must end: a container's DNS,
/// Postgres or the roles a job before it makes may not be there yet when it
/// starts (a compose stack once failed on one name lookup), so it retries,
/// but only for `limit`.
///
/// # Errors
/// When `op` has not succeeded within `limit`.
pub async fn retry_for<T, E, F, Fut>(what: &str, limit: Duration, op: F) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    tokio::time::timeout(limit, retry_until_ok(what, op))
        .await
        .map_err(|_| GaveUp {
            what: what.to_owned(),
            limit,
        })
}

/// Retries `op` with capped exponential backoff until it succeeds, logging
/// each failure; for start-up steps such as migrations.
///
/// # Errors
/// Never on its own; it returns only on success.
pub async fn retry_until_ok<T, E, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn a_job_step_that_fails_for_a_while_is_retried_until_it_succeeds() {
        let calls = Cell::new(0);
        let result = retry_for("a step", Duration::from_secs(10), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n < 3 { Err("not yet") } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.ok(), Some(3));
    }

    #[tokio::test]
    async fn a_job_step_that_keeps_failing_gives_up_at_its_limit_naming_itself() {
        let calls = Cell::new(0);
        let result: Result<(), _> = retry_for("migrating x", Duration::from_millis(300), || {
            calls.set(calls.get() + 1);
            async { Err("name lookup failed") }
        })
        .await;
        let gave_up = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            gave_up.starts_with("migrating x did not succeed within 300ms"),
            "{gave_up}"
        );
        assert!(calls.get() >= 2, "retried {} times", calls.get());
    }
}
