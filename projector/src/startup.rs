//! `tasklog-projector run`: the projections (tasks, counts, changes), the
//! webhook delivery worker, their leases and lag samplers, and a small HTTP
//! endpoint for health and metrics.

use std::sync::Arc;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_events::sealing::{self, KeyEncryptionKey};
use tasklog_events::store::open_when_ready;
use tasklog_events::store::postgres::GroupCommitSettings;
use tasklog_events::store::shared::SharedTail;
use tasklog_platform::database::{self, retry_until_ok};
use tasklog_platform::health::Health;
use tasklog_platform::http::with_common_layers;
use tasklog_platform::metrics;
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::server::{Listener, Server, StartError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::changes::ChangesProjection;
use crate::counts::CountsProjection;
use crate::lag::sample;
use crate::runner::{RunnerSettings, run};
use crate::settings::Settings;
use crate::tasks::TasksProjection;
use crate::webhooks::{self, WebhookSettings};
use tasklog_readmodel::migrate;

pub struct Application {
    server: Server,
    /// The read model's server (`READMODEL_DATABASE_URL`).
    db: PgPool,
    /// The accounts' server (`DATABASE_URL`): webhook subscriptions.
    accounts_db: PgPool,
    store: Arc<dyn EventStore>,
    redis: RedisHandle,
    runner: RunnerSettings,
    lag_sample: std::time::Duration,
    webhooks: WebhookSettings,
    /// Opens the webhooks' stored secrets.
    kek: KeyEncryptionKey,
}

impl Application {
    /// Binds first (a taken port fails at once), then waits for Postgres to
    /// migrate and for the log to open.
    ///
    /// # Errors
    /// When the address cannot be bound or a dependency is misconfigured.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = Listener::bind(settings.bind_addr).await?;
        let (log_db, db) = database::log_and_readmodel_pools(
            &settings.database,
            &settings.readmodel,
            "tasklog-projector",
        )?;
        retry_until_ok("migrating the readmodel schema", || migrate(&db)).await;
        let url = settings
            .event_store_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned());
        let kek = KeyEncryptionKey::new(settings.data_key.0);
        // The data keys live with the accounts, on the log's server.
        let store = sealing::sealed(
            open_when_ready(
                url.as_deref(),
                log_db.clone(),
                GroupCommitSettings::default(),
            )
            .await
            .map_err(StartError::event_store)?,
            log_db.clone(),
            kek.clone(),
        );
        let redis = RedisHandle::new(&settings.redis)?;
        let health = health(db.clone(), store.clone());
        let router = with_common_layers(
            metrics::router(vec![("tasklog-projector", db.clone().into())]).merge(health.router()),
        );
        tracing::info!(port = listener.port(), "tasklog-projector ready");
        Ok(Self {
            server: listener.serving(router, health, settings.drain),
            accounts_db: log_db,
            db,
            store,
            redis,
            runner: RunnerSettings {
                batch_size: settings.batch_size,
                lease: settings.lease,
                instance: settings.instance,
            },
            lag_sample: settings.lag_sample,
            webhooks: settings.webhooks,
            kek,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Projects and serves until `shutdown`; then each projection finishes
    /// its batch and releases its lease. Dropping the future (an aborted task)
    /// stops everything at once, like a killed process.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let mut tasks = JoinSet::new();
        // The projections tail the log together: each batch is read (and
        // opened) once for all of them, not once per projection.
        let log: Arc<dyn EventStore> = Arc::new(SharedTail::new(self.store.clone()));
        let tasks_projection = Arc::new(TasksProjection::new(self.db.clone()));
        let counts_projection = Arc::new(CountsProjection::new(self.redis.clone()));
        tasks.spawn(run(
            tasks_projection.clone(),
            log.clone(),
            self.db.clone(),
            self.runner.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(run(
            counts_projection.clone(),
            log.clone(),
            self.db.clone(),
            self.runner.clone(),
            shutdown.clone(),
        ));
        let changes_projection = Arc::new(ChangesProjection::new(self.db.clone()));
        tasks.spawn(run(
            changes_projection.clone(),
            log.clone(),
            self.db.clone(),
            self.runner.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(webhooks::run(
            webhooks::Pools {
                accounts: self.accounts_db.clone(),
                readmodel: self.db.clone(),
            },
            self.webhooks.clone(),
            self.kek.clone(),
            self.runner.lease,
            self.runner.instance.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(sample(
            changes_projection,
            self.store.clone(),
            self.lag_sample,
            shutdown.clone(),
        ));
        tasks.spawn(sample(
            tasks_projection,
            self.store.clone(),
            self.lag_sample,
            shutdown.clone(),
        ));
        tasks.spawn(sample(
            counts_projection,
            self.store.clone(),
            self.lag_sample,
            shutdown.clone(),
        ));
        let served = self.server.run_until_stopped(shutdown.clone()).await;
        // The server returns on shutdown (or failure): stop the rest too.
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        served
    }
}

fn health(db: PgPool, store: Arc<dyn EventStore>) -> Health {
    Health::new().postgres(db).ping(
        "event_store",
        store,
        |store| async move { store.ping().await },
    )
}
