//! Building and running the service: pool, event log, Redis, the projection
//! listener, routes and layers, then serving until told to stop.

use std::sync::Arc;

use axum::middleware;
use secrecy::ExposeSecret;
use tasklog_events::EventStore;
use tasklog_events::sealing::{self, KeyEncryptionKey};
use tasklog_events::store::open_existing;
use tasklog_platform::config::DatabaseSettings;
use tasklog_platform::database;
use tasklog_platform::hardening::ProductionLayers;
use tasklog_platform::health::Health;
use tasklog_platform::read_pool::ReadPool;
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::server::{Listener, Server, StartError};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::changes::{ChangeHub, StreamSlots};
use crate::consistency::stamp_position;
use crate::page_cache::PageCache;
use crate::projection::ProjectionWatch;
use crate::replicas::Replicas;
use crate::routes;
use crate::settings::Settings;
use crate::state::{AppState, Services, Streams};

pub struct Application {
    server: Server,
    /// Stops the projection listener with the application.
    stop_listener: DropGuard,
    /// Ends every SSE stream as soon as shutdown begins: clients reconnect
    /// to another instance instead of holding the drain open.
    stop_streams: CancellationToken,
}

impl Application {
    /// Binds first (a taken port fails at once), then opens the log and
    /// starts listening for the projector's progress. Neither the log nor
    /// the read model is created here, and either may appear later: until
    /// then readiness says so and reads answer 503.
    ///
    /// # Errors
    /// When the address cannot be bound or a dependency is misconfigured.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = Listener::bind(settings.bind_addr).await?;
        let budget = ConnectionBudget::split(&settings.database, &settings.readmodel);
        let (log_db, db) =
            database::log_and_readmodel_pools(&budget.log, &budget.background, "tasklog-query")?;
        let reads = ReadPool::new(&budget.reads, "tasklog-query")?;
        let reads_metered = reads.clone();
        // Never migrates: the service may connect with a read-only role
        // (deploy/postgres/roles.sql); the command service makes the log.
        let store = open_existing(
            settings
                .event_store_url
                .as_ref()
                .map(ExposeSecret::expose_secret),
            log_db.clone(),
        )
        .map_err(StartError::event_store)?;
        // The data keys live with the accounts, on the log's server.
        let store = sealing::sealed(store, log_db, KeyEncryptionKey::new(settings.data_key.0));
        let redis = RedisHandle::new(&settings.redis)?;
        let verifier = settings.jwt.verifier.clone();
        let stop = CancellationToken::new();
        let pages = Arc::new(PageCache::new(settings.list_cache_bytes));
        let changes = ChangeHub::start(db.clone(), reads.clone(), stop.clone());
        let streams = Streams {
            slots: StreamSlots::new(redis.clone(), settings.sse_max_per_user),
            settings: settings.sse,
            stop: CancellationToken::new(),
        };
        let replicas = Arc::new(Replicas::new(
            &settings.replica_urls,
            &settings.readmodel,
            settings.replica_max_lag,
            settings.replica_poll,
        )?);
        let projection = ProjectionWatch::start(
            db.clone(),
            reads.clone(),
            pages.clone(),
            replicas.clone(),
            stop.clone(),
        );
        let state = AppState::from(Services {
            db: db.clone(),
            reads,
            store: store.clone(),
            redis: redis.clone(),
            verifier: verifier.clone(),
            cursor_key: Arc::new(settings.cursor_key),
            projection: projection.clone(),
            log_head: Arc::new(crate::log_head::LogHead::new(store.clone())),
            pages,
            min_position_timeout: settings.min_position_timeout,
            changes,
            streams: streams.clone(),
        });
        let health =
            health(reads_metered.clone(), store).report("replicas", move || replicas.report());
        let routes = routes::router().with_state(state).merge(health.router());
        let router = ProductionLayers::new(&settings.http)
            .rate_limits(Some(redis), Some(verifier))
            .pool("tasklog-query", db)
            .pool("tasklog-query-reads", reads_metered)
            .apply(routes)
            // Outermost, so that every answer carries it, refusals included.
            .layer(middleware::from_fn_with_state(
                Arc::new(projection),
                stamp_position,
            ));
        tracing::info!(port = listener.port(), "tasklog-query ready to serve");
        Ok(Self {
            server: listener.serving(router, health, settings.drain),
            stop_listener: stop.drop_guard(),
            stop_streams: streams.stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let _stop_listener = self.stop_listener;
        let stop_streams = self.stop_streams;
        let signal = shutdown.clone();
        tokio::spawn(async move {
            signal.cancelled().await;
            stop_streams.cancel();
        });
        self.server.run_until_stopped(shutdown).await
    }
}

/// The most connections the read model's sqlx pool keeps: LISTEN has
/// pools of its own and the checkpoints are read through the read pool, so
/// it serves readiness (and, when the log is on the same database, the
/// log's reads: history, as-of, the log's head).
const BACKGROUND_CONNECTIONS: u32 = 4;

/// How the read model's `max_connections` are shared between requests'
/// reads (the read pool) and the rest (sqlx's pool), so the process holds
/// no more connections than with one pool: the rest gets a quarter, at most
/// `BACKGROUND_CONNECTIONS`, at least one; the reads the remainder (at least
/// one, so `DATABASE_MAX_CONNECTIONS=1` allows two).
struct ConnectionBudget {
    log: DatabaseSettings,
    background: DatabaseSettings,
    reads: DatabaseSettings,
}

impl ConnectionBudget {
    fn split(log: &DatabaseSettings, readmodel: &DatabaseSettings) -> Self {
        let total = readmodel.max_connections;
        let background = (total / 4).clamp(1, BACKGROUND_CONNECTIONS);
        let with = |settings: &DatabaseSettings, max_connections: u32| DatabaseSettings {
            max_connections,
            ..settings.clone()
        };
        Self {
            // One pool serves both when they are one database: it is the
            // background share then.
            log: if log.url == readmodel.url {
                with(log, background)
            } else {
                log.clone()
            },
            background: with(readmodel, background),
            reads: with(readmodel, total.saturating_sub(background).max(1)),
        }
    }
}

/// Redis is left out on purpose: without it stats are counted in Postgres,
/// so it being down does not make this service unable to answer. The
/// read model is checked through the read pool the requests use: a check
/// cut short by its timeout closes its connection there, where on sqlx's
/// small pool it would be left to the release ping, which can hang on a
/// connection gone silent and hold one of its few slots.
fn health(reads: ReadPool, store: Arc<dyn EventStore>) -> Health {
    Health::new()
        .check("postgres", move || {
            let reads = reads.clone();
            async move {
                let mut conn = reads.get().await.map_err(|e| e.to_string())?;
                let exists =
                    sqlx::query_scalar("SELECT to_regclass('readmodel.tasks') IS NOT NULL")
                        .fetch_one(&mut *conn)
                        .await;
                let exists: bool = conn.settle(exists).map_err(|e| e.to_string())?;
                if exists {
                    Ok(())
                } else {
                    Err("readmodel.tasks does not exist yet (has the projector run?)".to_owned())
                }
            }
        })
        .ping(
            "event_store",
            store,
            |store| async move { store.ping().await },
        )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(url: &str, max_connections: u32) -> DatabaseSettings {
        DatabaseSettings {
            url: url.to_owned(),
            max_connections,
            acquire_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_read_pool_and_the_rest_share_the_read_models_connections() {
        // (max_connections, background share, reads)
        for (total, background, reads) in [(20, 4, 16), (64, 4, 60), (8, 2, 6), (2, 1, 1)] {
            let one = settings("postgres://h/db", total);
            let budget = ConnectionBudget::split(&one, &one);
            assert_eq!(budget.background.max_connections, background, "{total}");
            assert_eq!(budget.reads.max_connections, reads, "{total}");
            // One database: the log shares the background pool.
            assert_eq!(budget.log.max_connections, background, "{total}");
        }
    }

    #[test]
    fn a_log_on_another_server_keeps_its_own_pool_size() {
        let log = settings("postgres://log/db", 20);
        let readmodel = settings("postgres://rm/db", 12);
        let budget = ConnectionBudget::split(&log, &readmodel);
        assert_eq!(budget.log.max_connections, 20);
        assert_eq!(budget.background.max_connections, 3);
        assert_eq!(budget.reads.max_connections, 9);
    }
}
