//! A pool of Postgres connections for one-query requests, kept by
//! `deadpool` instead of sqlx's `Pool`: sqlx pings every connection it takes
//! back (a `Sync` round trip, with no option to turn it off), so a request
//! that runs one query made two round trips. Here a connection goes back
//! with nothing sent, and is pinged when taken out again only if it sat
//! unused long enough to have been cut (`PING_WHEN_IDLE_FOR`, the rule
//! `database::pool` applies to sqlx's checkouts).
//!
//! Skipping that ping is safe only for connections known to be in a clean
//! state, so a connection goes back only when its last use finished and did
//! not fail at the connection level ([`ReadConn::settle`]); one whose future
//! was dropped mid-query (client gone, timeout) or whose query lost the
//! server is closed instead: sqlx says a connection cancelled mid-query may
//! be left with a half-read answer.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::config::{ConfigError, DatabaseSettings};
use crate::database::PING_WHEN_IDLE_FOR;

/// Unused this long, an idle connection is closed, as sqlx's pool does
/// (`database::pool`'s `idle_timeout`): a burst's connections do not stay
/// open on the server for good.
const CLOSE_IDLE_AFTER: Duration = Duration::from_secs(300);

/// Whether `e` means the connection itself can no longer be trusted (as
/// opposed to a statement that failed on a healthy connection): I/O, TLS,
/// protocol, a crashed worker, or the server's connection exceptions (08)
/// and operator interventions such as a terminated backend (57P).
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Makes connections lazily and checks on checkout only those idle for
/// `ping_when_idle_for`.
pub struct Manager {
    options: PgConnectOptions,
    /// `host:port`, for logs and metrics.
    name: String,
    ping_when_idle_for: Duration,
    pings: AtomicU64,
    discarded: AtomicU64,
}

impl managed::Manager for Manager {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    /// deadpool's `last_used` counts from the last checkout, not the last
    /// return, so a connection held long is pinged sooner, never later.
    async fn recycle(
        &self,
        conn: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.last_used() >= self.ping_when_idle_for {
            self.pings.fetch_add(1, Ordering::Relaxed);
            conn.ping().await?;
        }
        Ok(())
    }
}

/// The pool: cheap to clone, one per database.
#[derive(Clone)]
pub struct ReadPool {
    pool: managed::Pool<Manager>,
}

impl ReadPool {
    /// A lazily connecting pool of `settings.max_connections`: nothing is
    /// connected until the first read, so the service starts while Postgres
    /// is down. Waiting for a free connection, connecting and the idle
    /// check are each bounded by `settings.acquire_timeout`.
    ///
    /// # Errors
    /// When the URL does not parse.
    pub fn new(settings: &DatabaseSettings, application: &str) -> Result<Self, ConfigError> {
        Self::with_ping_threshold(settings, application, PING_WHEN_IDLE_FOR)
    }

    /// As [`ReadPool::new`], with the idle time after which a connection is
    /// pinged on checkout (tests shorten it).
    ///
    /// # Errors
    /// When the URL does not parse.
    pub fn with_ping_threshold(
        settings: &DatabaseSettings,
        application: &str,
        ping_when_idle_for: Duration,
    ) -> Result<Self, ConfigError> {
        let options: PgConnectOptions = settings
            .url
            .parse()
            .map_err(|e: sqlx::Error| ConfigError::new("DATABASE_URL", e.to_string()))?;
        let name = format!("{}:{}", options.get_host(), options.get_port());
        let manager = Manager {
            options: options.application_name(application),
            name,
            ping_when_idle_for,
            pings: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        };
        let size = usize::try_from(settings.max_connections).unwrap_or(usize::MAX);
        let bound = Some(settings.acquire_timeout);
        let pool = managed::Pool::builder(manager)
            .max_size(size)
            .wait_timeout(bound)
            .create_timeout(bound)
            .recycle_timeout(bound)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| ConfigError::new("DATABASE_MAX_CONNECTIONS", e.to_string()))?;
        // Outside a runtime (no service builds one there) idle connections
        // are simply kept. The sweep ends with the pool.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = pool.weak();
            runtime.spawn(async move {
                let mut every = tokio::time::interval(CLOSE_IDLE_AFTER / 5);
                loop {
                    every.tick().await;
                    let Some(pool) = weak.upgrade() else {
                        return;
                    };
                    Self { pool }.close_idle(CLOSE_IDLE_AFTER);
                }
            });
        }
        Ok(Self { pool })
    }

    /// Closes the idle connections unused for `unused_for` (the pool's own
    /// sweep does this every minute with five minutes); returns how many.
    pub fn close_idle(&self, unused_for: Duration) -> usize {
        self.pool
            .retain(|_, metrics| metrics.last_used() < unused_for)
            .removed
            .len()
    }

    /// A connection, made or checked as needed. Errors are sqlx's, so
    /// callers map them as they map any other database error: a full pool
    /// is `PoolTimedOut`, an unreachable server the connect error.
    ///
    /// # Errors
    /// When no connection frees up or can be made within the acquire timeout.
    pub async fn get(&self) -> Result<ReadConn, sqlx::Error> {
        match self.pool.get().await {
            Ok(conn) => Ok(ReadConn {
                conn: Some(conn),
                clean: true,
            }),
            Err(PoolError::Backend(e)) => Err(e),
            Err(PoolError::Timeout(_)) => Err(sqlx::Error::PoolTimedOut),
            Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            Err(e @ (PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_))) => {
                Err(sqlx::Error::Configuration(e.to_string().into()))
            }
        }
    }

    /// How many checkouts pinged an idle connection.
    pub fn pings(&self) -> u64 {
        self.pool.manager().pings.load(Ordering::Relaxed)
    }

    /// How many connections were closed instead of going back.
    pub fn discarded(&self) -> u64 {
        self.pool.manager().discarded.load(Ordering::Relaxed)
    }

    /// Connections open now (in use or idle).
    pub fn size(&self) -> usize {
        self.pool.status().size
    }

    /// Open, idle, and the most allowed: for `/metrics`.
    pub fn usage(&self) -> (usize, usize, usize) {
        let status = self.pool.status();
        (status.size, status.available, status.max_size)
    }
}

/// A checked-out connection. It goes back to the pool on drop only if
/// every use of it was [`settle`](ReadConn::settle)d without a connection
/// error; otherwise it is closed. Every mutable borrow counts as a use, so
/// a query whose future is dropped before it is settled leaves it unclean.
pub struct ReadConn {
    /// `Some` until drop.
    conn: Option<Object<Manager>>,
    clean: bool,
}

impl ReadConn {
    /// Records how a use of the connection ended and passes the result on.
    ///
    /// # Errors
    /// `result`'s own.
    pub fn settle<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.clean = result
            .as_ref()
            .err()
            .is_none_or(|e| !is_connection_error(e));
        result
    }
}

impl Deref for ReadConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("the connection leaves its guard only in drop"),
        }
    }
}

impl DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.clean = false;
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("the connection leaves its guard only in drop"),
        }
    }
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.clean {
            return;
        }
        if let Some(pool) = Object::pool(&conn) {
            let manager = pool.manager();
            manager.discarded.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(pool = %manager.name, "connection closed instead of reused");
            metrics::counter!("tasklog_read_pool_discarded_total", "pool" => manager.name.clone())
                .increment(1);
        }
        // Out of the pool for good (its slot frees up for a new one); the
        // socket closes as the connection drops.
        drop(Object::take(conn));
    }
}
