//! One reconnecting `LISTEN` loop for everything that follows the read
//! model's notices: the query service's projection watch and change hub,
//! the webhook worker's wake-ups. What a notice means is the caller's
//! ([`Notices`]); keeping the connection alive is done here, once.
//!
//! A notice is only ever a hint that the tables moved: a lost connection
//! loses the notices sent meanwhile, so after every (re)connection the
//! caller is told to catch up from the tables ([`Notices::connected`]).
//!
//! A connection can die without a reset (a failover, an idle NAT drop): the
//! listener would wait for ever. So after `HEARTBEAT` without a notice it
//! asks the server `SELECT 1` on the same connection; no answer within
//! `HEARTBEAT_TIMEOUT` counts as a lost connection.
//!
//! Each connection comes from a pool of its own, made for it: dropping a
//! listener sends `UNLISTEN *` before its connection goes back to its pool,
//! and on a silent connection that never returns, so a shared pool would
//! lose a slot for good each time.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// A connection not made by then is given up and tried again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The caller's catch-up or handling of one notice, at most: past it the
/// connection is dropped and the caller catches up again on the next. (A
/// read on a pooled connection that went silent too would hang until the
/// kernel gives up on it, many minutes; meanwhile nothing would be heard.)
const HANDLER_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence on the connection after which the server is asked if it is there.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long that question may go unanswered before the connection is dead.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a listener does with its channel.
pub trait Notices: Send + Sync {
    /// `LISTEN` is in place: whatever commits from now on is announced,
    /// anything earlier may have been missed. `false` when the caller
    /// cannot catch up yet: the connection is dropped and tried again later.
    fn connected(&self) -> impl Future<Output = bool> + Send;

    /// One notice's payload, in the order they were sent.
    fn received(&self, payload: &str) -> impl Future<Output = ()> + Send;

    /// The connection is gone (after `connected` said true), or `stop` came.
    fn disconnected(&self) {}
}

/// Listens on `channel` of `db`'s server until `stop`, reconnecting with
/// capped exponential backoff. `what` names the listener in logs.
pub async fn listen<N: Notices>(
    db: &PgPool,
    channel: &str,
    what: &str,
    notices: &N,
    stop: &CancellationToken,
) {
    let mut retry = FIRST_RETRY;
    while !stop.is_cancelled() {
        match connect(db, channel).await {
            Ok(mut listener) => {
                let caught_up = tokio::time::timeout(HANDLER_TIMEOUT, notices.connected()).await;
                if caught_up.is_err() {
                    tracing::warn!(listener = what, "catching up took too long; trying again");
                }
                if caught_up == Ok(true) {
                    retry = FIRST_RETRY;
                    let stopped = relay(&mut listener, what, notices, stop).await;
                    notices.disconnected();
                    if stopped {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(listener = what, error = %e, "cannot LISTEN on {channel}"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
}

async fn connect(db: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with((*db.connect_options()).clone());
    let mut listener = PgListener::connect_with(&own).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Relays notices until the connection fails or goes silent (false) or
/// `stop` (true).
async fn relay<N: Notices>(
    listener: &mut PgListener,
    what: &str,
    notices: &N,
    stop: &CancellationToken,
) -> bool {
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return true,
            next = listener.try_recv() => next,
            () = tokio::time::sleep(HEARTBEAT) => {
                let answer = tokio::time::timeout(
                    HEARTBEAT_TIMEOUT,
                    sqlx::query("SELECT 1").execute(&mut *listener),
                )
                .await;
                if matches!(answer, Ok(Ok(_))) {
                    continue;
                }
                tracing::warn!(listener = what, "the connection went silent; reconnecting");
                return false;
            }
        };
        match next {
            Ok(Some(notification)) => {
                let handled =
                    tokio::time::timeout(HANDLER_TIMEOUT, notices.received(notification.payload()))
                        .await;
                if handled.is_err() {
                    tracing::warn!(listener = what, "a notice took too long; starting over");
                    return false;
                }
            }
            // The connection dropped; it re-LISTENs only on the next call,
            // so anything committed until then goes unannounced: start over.
            Ok(None) => {
                tracing::info!(listener = what, "lost its connection; reconnecting");
                return false;
            }
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "failed; reconnecting");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tasklog_platform::testing::TestDb;
    use tokio::sync::watch;

    use super::*;

    /// Counts connections and keeps what it heard.
    struct Heard {
        connections: watch::Sender<u32>,
        payloads: Mutex<Vec<String>>,
    }

    impl Notices for Heard {
        async fn connected(&self) -> bool {
            self.connections.send_modify(|n| *n += 1);
            true
        }

        async fn received(&self, payload: &str) {
            self.payloads.lock().unwrap().push(payload.to_owned());
        }
    }

    impl Heard {
        async fn wait_for(&self, payload: &str) {
            for _ in 0..600 {
                if self.payloads.lock().unwrap().iter().any(|p| p == payload) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{payload:?} never arrived");
        }
    }

    async fn notify(db: &PgPool, payload: &str) {
        sqlx::query("SELECT pg_notify('listener_test', $1)")
            .bind(payload)
            .execute(db)
            .await
            .unwrap();
    }

    /// The connection dies without a word (no FIN, no reset): without the
    /// heartbeat the listener would wait on it for ever. With it, it
    /// connects again, says so (the caller catches up), and hears the next
    /// notice.
    #[tokio::test]
    async fn a_silent_connection_is_replaced_and_the_caller_told_to_catch_up() {
        let db = TestDb::new().await.unwrap();
        let (proxy, through) = db.behind_proxy(true).await.unwrap();
        let through: PgPool = PgPool::connect_lazy_with(through);
        let heard = Arc::new(Heard {
            connections: watch::channel(0).0,
            payloads: Mutex::default(),
        });
        let stop = CancellationToken::new();
        let stopping = stop.clone().drop_guard();
        let task = {
            let heard = heard.clone();
            tokio::spawn(async move {
                listen(&through, "listener_test", "test", &*heard, &stop).await;
            })
        };
        let mut connections = heard.connections.subscribe();
        let patience = Duration::from_secs(60);
        tokio::time::timeout(patience, connections.wait_for(|n| *n == 1))
            .await
            .expect("connected")
            .unwrap();
        notify(db.pool(), "before").await;
        heard.wait_for("before").await;

        proxy.silence_open();
        tokio::time::timeout(patience, connections.wait_for(|n| *n >= 2))
            .await
            .expect("a silent connection is noticed and replaced")
            .unwrap();
        notify(db.pool(), "after").await;
        heard.wait_for("after").await;
        drop(stopping);
        tokio::time::timeout(patience, task)
            .await
            .expect("stops when told")
            .unwrap();
    }
}
