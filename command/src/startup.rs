//! Building and running the service: pool, migrations, event store, hasher,
//! routes and layers, then serving until told to stop.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use tasklog_platform::config::ConfigError;
use tasklog_platform::database::{self, retry_until_ok};
use tasklog_platform::hardening::ProductionLayers;
use tasklog_platform::health::Health;
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::server::{DrainSettings, serve};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, LoginLockout, PasswordError, Passwords};
use crate::event_store::open_event_store;
use crate::migrations;
use crate::routes;
use crate::settings::Settings;
use crate::state::AppState;
use crate::webhooks::Webhooks;
use tasklog_events::store::OpenError;

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
    #[error("password hashing does not work: {0}")]
    Passwords(#[from] PasswordError),
    #[error("the signing key is missing: set JWT_SECRET or JWT_PRIVATE_KEY_FILE")]
    NoSigner,
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    router: Router,
    health: Health,
    drain: DrainSettings,
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
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: settings.bind_addr,
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: settings.bind_addr,
                source,
            })?
            .port();
        let signer = settings.jwt.signer.clone().ok_or(StartError::NoSigner)?;
        let db = database::pool(&settings.database, "tasklog-command")?;
        retry_until_ok("migrating the accounts schema", || migrations::migrate(&db)).await;
        let store =
            open_event_store(settings.event_store_url.as_ref(), &db, &settings.data_key).await?;
        let passwords = Passwords::new(settings.password_hash_concurrency).await?;
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
        let state = AppState {
            accounts,
            db: db.clone(),
            store: store.clone(),
            verifier: settings.jwt.verifier.clone(),
            webhooks: Webhooks::new(db.clone(), store.clone(), settings.webhook_policy),
        };
        let health = health(db.clone(), state.store.clone());
        let router = ProductionLayers::new(&settings.http)
            .rate_limits(Some(redis), Some(settings.jwt.verifier.clone()))
            .pool("tasklog-command", db.clone())
            .apply(routes::router().with_state(state).merge(health.router()));
        tracing::info!(port, "tasklog-command ready to serve");
        Ok(Self {
            listener,
            port,
            router,
            health,
            drain: settings.drain,
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let served = serve(
            self.listener,
            self.router,
            self.health,
            shutdown,
            self.drain,
        )
        .await;
        // Drained: hand the connections back to Postgres rather than drop
        // them, bounded in case a background task still holds one.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.db.close()).await;
        served
    }
}

fn health(db: PgPool, store: std::sync::Arc<dyn tasklog_events::EventStore>) -> Health {
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
