//! `tasklog-projector run`: the two projections, their leases and lag
//! samplers, and a small HTTP endpoint for health and metrics.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_events::store::{Backend, OpenError, backend_for, open_when_ready};
use tasklog_platform::config::ConfigError;
use tasklog_platform::database::{self, retry_until_ok};
use tasklog_platform::health::Health;
use tasklog_platform::http::with_common_layers;
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::server::{DrainSettings, serve};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::counts::CountsProjection;
use crate::lag::{LagProbe, sample};
use crate::runner::{RunnerSettings, run};
use crate::schema::migrate;
use crate::settings::Settings;
use crate::tasks::TasksProjection;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    EventStore(#[from] OpenError),
}

/// The process-wide Prometheus recorder (installed once; tests start several
/// applications in one process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(
                    Matcher::Full("projector_batch_apply_seconds".into()),
                    &[
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("projector_batch_events".into()),
                        &[
                            1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
                        ],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    router: Router,
    health: Health,
    drain: DrainSettings,
    db: PgPool,
    store: Arc<dyn EventStore>,
    redis: RedisHandle,
    probe: LagProbe,
    runner: RunnerSettings,
    lag_sample: std::time::Duration,
}

impl Application {
    /// Binds first (a taken port fails at once), then waits for Postgres to
    /// migrate and for the log to open.
    ///
    /// # Errors
    /// When the address cannot be bound or a dependency is misconfigured.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let bind = |source| StartError::Bind {
            addr: settings.bind_addr,
            source,
        };
        let listener = TcpListener::bind(settings.bind_addr).await.map_err(bind)?;
        let port = listener.local_addr().map_err(bind)?.port();
        let db = database::pool(&settings.database, "tasklog-projector")?;
        retry_until_ok("migrating the readmodel schema", || migrate(&db)).await;
        let url = settings
            .event_store_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned());
        let store = open_when_ready(url.as_deref(), db.clone()).await?;
        let probe = match backend_for(url.as_deref())? {
            Backend::Postgres => LagProbe::Postgres(db.clone()),
            Backend::EventStoreDb(_) => LagProbe::Read(10_000),
        };
        let redis = RedisHandle::new(&settings.redis)?;
        let handle = metrics_handle();
        let health = health(db.clone(), store.clone());
        let metrics_route = get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
                    .into_response()
            }
        });
        let router = with_common_layers(
            Router::new()
                .route("/metrics", metrics_route)
                .merge(health.router()),
        );
        tracing::info!(port, "tasklog-projector ready");
        Ok(Self {
            listener,
            port,
            router,
            health,
            drain: settings.drain,
            db,
            store,
            redis,
            probe,
            runner: RunnerSettings {
                batch_size: settings.batch_size,
                lease: settings.lease,
                instance: settings.instance,
            },
            lag_sample: settings.lag_sample,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Projects and serves until `shutdown`; then each projection finishes
    /// its batch and releases its lease. Dropping the future (an aborted task)
    /// stops everything at once, like a killed process.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let mut tasks = JoinSet::new();
        let tasks_projection = Arc::new(TasksProjection::new(self.db.clone()));
        let counts_projection = Arc::new(CountsProjection::new(self.redis.clone()));
        tasks.spawn(run(
            tasks_projection.clone(),
            self.store.clone(),
            self.db.clone(),
            self.runner.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(run(
            counts_projection.clone(),
            self.store.clone(),
            self.db.clone(),
            self.runner.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(sample(
            tasks_projection,
            self.store.clone(),
            self.probe.clone(),
            self.lag_sample,
            shutdown.clone(),
        ));
        tasks.spawn(sample(
            counts_projection,
            self.store.clone(),
            self.probe.clone(),
            self.lag_sample,
            shutdown.clone(),
        ));
        // Histogram samples wait in buffers until drained; a scrape drains
        // them too, but an unscraped instance must not grow.
        let upkeep_stop = shutdown.clone();
        tasks.spawn(async move {
            let handle = metrics_handle();
            loop {
                tokio::select! {
                    () = upkeep_stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => handle.run_upkeep(),
                }
            }
        });
        let served = serve(
            self.listener,
            self.router,
            self.health,
            shutdown.clone(),
            self.drain,
        )
        .await;
        // The server returns on shutdown (or failure): stop the rest too.
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        served
    }
}

fn health(db: PgPool, store: Arc<dyn EventStore>) -> Health {
    Health::new()
        .check("postgres", move || {
            let db = db.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&db)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .check("event_store", move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        })
}
