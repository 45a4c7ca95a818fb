//! Building and running the service: pool, event log, Redis, the projection
//! listener, routes and layers, then serving until told to stop.

use std::sync::Arc;

use axum::middleware;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_events::sealing::{self, KeyEncryptionKey};
use tasklog_events::store::open_existing;
use tasklog_platform::database;
use tasklog_platform::hardening::ProductionLayers;
use tasklog_platform::health::Health;
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
        let (log_db, db) = database::log_and_readmodel_pools(
            &settings.database,
            &settings.readmodel,
            "tasklog-query",
        )?;
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
        let changes = ChangeHub::start(db.clone(), stop.clone());
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
        let projection =
            ProjectionWatch::start(db.clone(), pages.clone(), replicas.clone(), stop.clone());
        let state = AppState::from(Services {
            db: db.clone(),
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
        let health = health(db.clone(), store).report("replicas", move || replicas.report());
        let routes = routes::router().with_state(state).merge(health.router());
        let router = ProductionLayers::new(&settings.http)
            .rate_limits(Some(redis), Some(verifier))
            .pool("tasklog-query", db)
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

/// Redis is left out on purpose: without it stats are counted in Postgres,
/// so it being down does not make this service unable to answer.
fn health(db: PgPool, store: Arc<dyn EventStore>) -> Health {
    Health::new()
        .check("postgres", move || {
            let db = db.clone();
            async move {
                let exists: bool =
                    sqlx::query_scalar("SELECT to_regclass('readmodel.tasks') IS NOT NULL")
                        .fetch_one(&db)
                        .await
                        .map_err(|e| e.to_string())?;
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
