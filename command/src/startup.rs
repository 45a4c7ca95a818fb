//! Building and running the service: pool, migrations, event store, hasher,
//! routes and layers, then serving until told to stop.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tasklog_events::sealing::KeyEncryptionKey;
use tasklog_platform::database::{self, retry_until_ok};
use tasklog_platform::hardening::ProductionLayers;
use tasklog_platform::health::Health;
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::server::{Listener, Server, StartError};
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, LoginLockout, PasswordError, Passwords};
use crate::event_store::open_event_store;
use crate::migrations;
use crate::routes;
use crate::settings::Settings;
use crate::state::{AppState, Services};
use crate::tasks::RecentTasks;
use crate::webhooks::Webhooks;

/// What only this service cannot start without (`StartError::Service`).
#[derive(Debug, thiserror::Error)]
enum CommandStartError {
    #[error("password hashing does not work: {0}")]
    Passwords(#[from] PasswordError),
    #[error("the signing key is missing: set JWT_SECRET or JWT_PRIVATE_KEY_FILE")]
    NoSigner,
}

pub struct Application {
    server: Server,
    db: PgPool,
}

impl Application {
    /// Binds first (a taken port fails at once), then waits for Postgres to
    /// migrate: the advisory lock in `migrate_schema` lets many instances
    /// start together.
    ///
    /// # Errors
    /// When the address cannot be bound or a dependency is misconfigured.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = Listener::bind(settings.bind_addr).await?;
        let signer = settings.jwt.signer.clone();
        let signer = signer.ok_or_else(|| StartError::service(CommandStartError::NoSigner))?;
        let db = database::pool(&settings.database, "tasklog-command")?;
        retry_until_ok("migrating the accounts schema", || migrations::migrate(&db)).await;
        let store = open_event_store(
            settings.event_store_url.as_ref(),
            &db,
            &settings.data_key,
            settings.group_commit,
        )
        .await
        .map_err(StartError::event_store)?;
        let passwords = Passwords::new(settings.password_hash_concurrency)
            .await
            .map_err(|e| StartError::service(CommandStartError::from(e)))?;
        let redis = RedisHandle::new(&settings.redis)?;
        let lockout = LoginLockout::new(
            redis.clone(),
            settings.login_max_failures,
            settings.login_lock,
        );
        let accounts = Accounts::new(db.clone(), passwords, signer, settings.refresh_token_ttl)
            .with_session_max_age(settings.session_max_age)
            .with_lockout(lockout);
        // Erasures a crash or an outage of the log left half done.
        let (pending, log) = (accounts.clone(), store.clone());
        tokio::spawn(async move {
            match pending.log_pending_erasures(log.as_ref()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(erasures = n, "pending erasures logged"),
                Err(e) => tracing::warn!(error = %e, "pending erasures not logged yet"),
            }
        });
        let webhooks = Webhooks::new(
            db.clone(),
            store.clone(),
            settings.webhook_policy,
            KeyEncryptionKey::new(settings.data_key.0),
        );
        // Secrets a release before sealing stored readable.
        let sealer = webhooks.clone();
        tokio::spawn(async move {
            match sealer.seal_stored_secrets().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(webhooks = n, "stored webhook secrets sealed"),
                Err(e) => tracing::warn!(error = %e, "webhook secrets not sealed yet (next start)"),
            }
        });
        let state = AppState::from(Services {
            accounts,
            db: db.clone(),
            store: store.clone(),
            verifier: settings.jwt.verifier.clone(),
            webhooks,
            recent: Arc::new(RecentTasks::with_capacity_bytes(
                settings.task_state_cache_bytes,
            )),
        });
        let health = health(db.clone(), state.store.clone());
        let router = ProductionLayers::new(&settings.http)
            .rate_limits(Some(redis), Some(settings.jwt.verifier.clone()))
            .pool("tasklog-command", db.clone())
            .apply(routes::router().with_state(state).merge(health.router()));
        tracing::info!(port = listener.port(), "tasklog-command ready to serve");
        Ok(Self {
            server: listener.serving(router, health, settings.drain),
            db,
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
        let served = self.server.run_until_stopped(shutdown).await;
        // Drained: hand the connections back to Postgres rather than drop
        // them, bounded in case a background task still holds one.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.db.close()).await;
        served
    }
}

fn health(db: PgPool, store: std::sync::Arc<dyn tasklog_events::EventStore>) -> Health {
    Health::new().postgres(db).ping(
        "event_store",
        store,
        |store| async move { store.ping().await },
    )
}
