//! Leases: each projection is written by one instance at a time, the one
//! holding a Postgres advisory lock on a connection of its own. When that
//! instance dies its connection closes, Postgres drops the lock, and a standby
//! polling `pg_try_advisory_lock` takes over within one poll interval.
//!
//! A holder cut off without a reset (a partition, an idle NAT drop, a
//! failover that leaves the socket open) must not keep the lock for as long
//! as the server's TCP keepalive defaults allow (two hours): the lease
//! session asks the server for keepalives and a TCP user timeout, and, once
//! it holds the lock, ends itself when the holder has been silent for
//! `silence()` (`idle_session_timeout`; the holder pings every `check`).
//! The holder's own watchdog gives up after the same few seconds.
//!
//! The lease keeps the projection to one writer in the normal case; the
//! checkpoint compare in every batch (see `Projection::apply`) keeps it exact
//! even while two instances briefly both believe they hold it (a holder cut
//! off from Postgres finishing its last batch).

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Advisory lock keys. Distinct from the migration lock of `migrate_schema`.
pub const TASKS_LEASE: i64 = 0x7470_726f_6a00_0001;
pub const COUNTS_LEASE: i64 = 0x7470_726f_6a00_0002;
/// Held for the whole of a `rebuild`, so two never run at once.
pub const REBUILD_LOCK: i64 = 0x7470_726f_6a00_0003;
pub const CHANGES_LEASE: i64 = 0x7470_726f_6a00_0004;
/// The webhook delivery worker's (see `webhooks`).
pub const WEBHOOKS_LEASE: i64 = 0x7470_726f_6a00_0005;

/// The lease key of a projection, by name.
pub fn key_of(projection: &str) -> i64 {
    match projection {
        tasklog_readmodel::COUNTS => COUNTS_LEASE,
        // Its own key: sharing the tasks lease made the two projections of
        // one instance wait on each other, so one of them never ran.
        tasklog_readmodel::CHANGES => CHANGES_LEASE,
        crate::webhooks::WEBHOOKS => WEBHOOKS_LEASE,
        _ => TASKS_LEASE,
    }
}

/// How often the holder checks its lease connection, and a standby retries.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub poll: Duration,
    pub check: Duration,
}

impl LeaseTiming {
    /// How long the server keeps a silent holder's session (and lock):
    /// a few missed checks, at least 5 s.
    pub fn silence(&self) -> Duration {
        (self.check * 3).max(Duration::from_secs(5))
    }
}

/// The server-side TCP settings of a lease session: an unanswered
/// keepalive or unacknowledged data ends the session within `silence`.
fn session_options(options: PgConnectOptions, silence: Duration) -> PgConnectOptions {
    let secs = silence.as_secs().max(3);
    options.options([
        ("tcp_keepalives_idle", (secs / 3).max(1).to_string()),
        ("tcp_keepalives_interval", "1".to_owned()),
        ("tcp_keepalives_count", (secs - secs / 3).max(1).to_string()),
        ("tcp_user_timeout", silence.as_millis().to_string()),
    ])
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            check: Duration::from_secs(1),
        }
    }
}

/// A held lease. `lost` is cancelled when its connection fails; dropping the
/// lease closes the connection, which releases the lock.
pub struct Lease {
    lost: CancellationToken,
    release: CancellationToken,
    watchdog: Option<JoinHandle<()>>,
}

impl Lease {
    /// Waits until the lease is ours; `None` when `shutdown` comes first.
    /// Connection failures are retried with backoff (never an error: a
    /// projector outlives Postgres outages).
    pub async fn acquire(
        db: &PgPool,
        key: i64,
        holder: &str,
        timing: LeaseTiming,
        shutdown: &CancellationToken,
    ) -> Option<Lease> {
        let options = session_options(
            (*db.connect_options()).clone().application_name(holder),
            timing.silence(),
        );
        let mut conn: Option<PgConnection> = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let wait = match try_lock(&mut conn, &options, key, timing.silence()).await {
                Ok(true) => {
                    let conn = conn.take()?;
                    return Some(Self::hold(conn, key, timing));
                }
                Ok(false) => {
                    backoff = Duration::from_millis(200);
                    timing.poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot try the lease; retrying");
                    conn = None;
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn hold(mut conn: PgConnection, key: i64, timing: LeaseTiming) -> Lease {
        let lost = CancellationToken::new();
        let release = CancellationToken::new();
        let watchdog = {
            let lost = lost.clone();
            let release = release.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = release.cancelled() => {
                            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                                .bind(key)
                                .execute(&mut conn)
                                .await;
                            let _ = conn.close().await;
                            return;
                        }
                        () = tokio::time::sleep(timing.check) => {}
                    }
                    let alive = tokio::time::timeout(
                        timing.check.max(Duration::from_secs(2)),
                        sqlx::query("SELECT 1").execute(&mut conn),
                    )
                    .await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::warn!("lease connection lost; stopping this projection");
                        lost.cancel();
                        return;
                    }
                }
            })
        };
        Lease {
            lost,
            release,
            watchdog: Some(watchdog),
        }
    }

    /// Cancelled when the lease's connection failed: stop writing.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Unlocks and closes the lease connection.
    pub async fn release(mut self) {
        self.release.cancel();
        if let Some(watchdog) = self.watchdog.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), watchdog).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Aborting drops the connection, which ends the session and the lock.
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
    }
}

/// Tries the lock; once held, the session ends itself after `silence`
/// without a word from the holder (a standby's polling session does not, so
/// any poll interval works).
async fn try_lock(
    conn: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    key: i64,
    silence: Duration,
) -> Result<bool, sqlx::Error> {
    if conn.is_none() {
        *conn = Some(options.connect().await?);
    }
    let Some(c) = conn.as_mut() else {
        return Ok(false);
    };
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *c)
        .await?;
    if held {
        // An error here drops the connection, and the lock with it.
        sqlx::query("SELECT set_config('idle_session_timeout', $1, false)")
            .bind(format!("{}ms", silence.as_millis()))
            .execute(&mut *c)
            .await?;
    }
    Ok(held)
}

/// Who holds a lease, as Postgres sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub application_name: String,
    pub client_addr: Option<String>,
    pub backend_pid: i32,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// The session holding advisory lock `key` in this database, if any.
///
/// # Errors
/// When Postgres fails.
pub async fn holder(db: &PgPool, key: i64) -> Result<Option<Holder>, sqlx::Error> {
    let row: Option<(String, Option<String>, i32, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT coalesce(a.application_name, ''), a.client_addr::text, a.pid, a.backend_start \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 \
             LIMIT 1",
    )
    .bind(key)
    .fetch_optional(db)
    .await?;
    Ok(row.map(
        |(application_name, client_addr, backend_pid, since)| Holder {
            application_name,
            client_addr,
            backend_pid,
            since,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_projection_has_a_lease_of_its_own() {
        let keys = [
            tasklog_readmodel::TASKS,
            tasklog_readmodel::COUNTS,
            tasklog_readmodel::CHANGES,
            crate::webhooks::WEBHOOKS,
        ]
        .map(key_of);
        let distinct: std::collections::HashSet<i64> = keys.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:x?}");
        assert!(!distinct.contains(&REBUILD_LOCK));
    }
}
