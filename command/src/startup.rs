//! Building and running the service: pool, migrations, event store, hasher,
//! routes and layers, then serving until told to stop.

use std::net::SocketAddr;

use axum::Router;
use sqlx::PgPool;
use tasklog_events::store::postgres::migrate_schema;
use tasklog_platform::config::ConfigError;
use tasklog_platform::database::{self, retry_until_ok};
use tasklog_platform::health::Health;
use tasklog_platform::http::with_common_layers;
use tasklog_platform::server::{DrainSettings, serve};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, PasswordError, Passwords};
use crate::event_store::open_event_store;
use crate::routes;
use crate::settings::Settings;
use crate::state::AppState;
use tasklog_events::store::OpenError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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
        retry_until_ok("migrating the accounts schema", || {
            migrate_schema(&db, "accounts", &MIGRATOR)
        })
        .await;
        let store = open_event_store(settings.event_store_url.as_ref(), &db).await?;
        let passwords = Passwords::new(settings.password_hash_concurrency).await?;
        let state = AppState {
            accounts: Accounts::new(db.clone(), passwords, signer, settings.refresh_token_ttl),
            db: db.clone(),
            store: store.clone(),
            verifier: settings.jwt.verifier.clone(),
        };
        let health = health(db, state.store.clone());
        let router = layers(routes::router().with_state(state).merge(health.router()));
        tracing::info!(port, "tasklog-command ready to serve");
        Ok(Self {
            listener,
            port,
            router,
            health,
            drain: settings.drain,
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
        serve(
            self.listener,
            self.router,
            self.health,
            shutdown,
            self.drain,
        )
        .await
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

/// The HTTP stack around the routes. Rate limits, security headers, CORS and
/// metrics (a later issue) are added here, inside the common layers so their
/// refusals carry a request id and are traced.
fn layers(router: Router) -> Router {
    with_common_layers(router)
}
