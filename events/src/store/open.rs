//! Choosing the event log from configuration: unset `EVENT_STORE_URL` means the
//! embedded Postgres log, an `esdb://`/`kurrentdb://` URL means EventStoreDB.
//! Services call only `open`, so switching logs changes no service code.

use std::sync::Arc;

use sqlx::PgPool;

use super::EventStore;
use super::postgres::{GroupCommitSettings, MigrateError, PgEventStore};

/// URL schemes the KurrentDB client accepts that we document and support.
const ESDB_SCHEMES: [&str; 4] = ["esdb", "esdb+discover", "kurrentdb", "kurrentdb+discover"];

/// Which adapter a configuration selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    /// The connection string, passed to the client as given.
    EventStoreDb(String),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    // Only the scheme is echoed: the URL may carry a password.
    #[error(
        "EVENT_STORE_URL has scheme {scheme:?}; expected esdb://, esdb+discover://, kurrentdb:// \
         or kurrentdb+discover:// (leave it unset for the Postgres log)"
    )]
    UnsupportedScheme { scheme: String },
    #[error(
        "EVENT_STORE_URL is a Postgres URL; the Postgres log uses the service's own database \
         (DATABASE_URL): leave EVENT_STORE_URL unset"
    )]
    PostgresUrl,
    #[error("EVENT_STORE_URL is not a URL (expected esdb://host:2113 or kurrentdb://host:2113)")]
    NotAUrl,
    #[error(
        "EVENT_STORE_URL selects EventStoreDB/KurrentDB, but this build lacks it: rebuild with \
         the `eventstoredb` feature of tasklog-events"
    )]
    NotBuilt,
    #[cfg(feature = "eventstoredb")]
    #[error(transparent)]
    Connect(#[from] super::eventstoredb::ConnectError),
    #[error("migrating the Postgres event log failed: {0}")]
    Migrate(#[from] MigrateError),
}

/// Reads the selection from `EVENT_STORE_URL` (empty counts as unset).
///
/// # Errors
/// For a URL no adapter serves.
pub fn backend_for(event_store_url: Option<&str>) -> Result<Backend, OpenError> {
    let Some(url) = event_store_url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(Backend::Postgres);
    };
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .ok_or(OpenError::NotAUrl)?;
    if ESDB_SCHEMES.contains(&scheme.as_str()) {
        return Ok(Backend::EventStoreDb(url.to_owned()));
    }
    if scheme == "postgres" || scheme == "postgresql" {
        return Err(OpenError::PostgresUrl);
    }
    Err(OpenError::UnsupportedScheme { scheme })
}

/// Opens the configured log. For Postgres it also creates or upgrades the log's
/// schema (safe from many instances at once), since callers only get the trait.
///
/// # Errors
/// For an unusable `EVENT_STORE_URL`, a build without the adapter it names, or
/// a failed migration.
pub async fn open(
    event_store_url: Option<&str>,
    pool: PgPool,
) -> Result<Arc<dyn EventStore>, OpenError> {
    open_with(event_store_url, pool, GroupCommitSettings::default()).await
}

/// `open`, with the Postgres log's group commit tuned by `group_commit`.
///
/// # Errors
/// As `open`.
async fn open_with(
    event_store_url: Option<&str>,
    pool: PgPool,
    group_commit: GroupCommitSettings,
) -> Result<Arc<dyn EventStore>, OpenError> {
    match backend_for(event_store_url)? {
        Backend::Postgres => {
            let store = PgEventStore::new(pool).with_group_commit(group_commit);
            store.migrate().await?;
            Ok(Arc::new(store))
        }
        Backend::EventStoreDb(url) => open_esdb(&url),
    }
}

/// `open` for service start-up: a bad URL or a build without the adapter
/// fails at once, while an unreachable Postgres is waited for (the migration
/// is retried with capped backoff), so services may start before their database.
///
/// # Errors
/// Only for what waiting cannot fix.
pub async fn open_when_ready(
    event_store_url: Option<&str>,
    pool: PgPool,
    group_commit: GroupCommitSettings,
) -> Result<Arc<dyn EventStore>, OpenError> {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match open_with(event_store_url, pool.clone(), group_commit).await {
            Err(OpenError::Migrate(e)) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "event log not ready; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Opens the configured log without creating or upgrading its schema: for
/// a reader that connects with a read-only role (the query service), which
/// may not run DDL (`CREATE SCHEMA IF NOT EXISTS` alone needs the
/// database's CREATE privilege). The writers migrate the log; until they
/// have, reads fail and report it.
///
/// # Errors
/// For an unusable `EVENT_STORE_URL` or a build without the adapter it names.
pub fn open_existing(
    event_store_url: Option<&str>,
    pool: PgPool,
) -> Result<Arc<dyn EventStore>, OpenError> {
    match backend_for(event_store_url)? {
        Backend::Postgres => Ok(Arc::new(PgEventStore::new(pool))),
        Backend::EventStoreDb(url) => open_esdb(&url),
    }
}

#[cfg(feature = "eventstoredb")]
fn open_esdb(url: &str) -> Result<Arc<dyn EventStore>, OpenError> {
    Ok(Arc::new(super::eventstoredb::EsdbEventStore::connect(url)?))
}

#[cfg(not(feature = "eventstoredb"))]
fn open_esdb(_url: &str) -> Result<Arc<dyn EventStore>, OpenError> {
    Err(OpenError::NotBuilt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_selects_postgres() {
        assert_eq!(backend_for(None).unwrap(), Backend::Postgres);
        assert_eq!(backend_for(Some("  ")).unwrap(), Backend::Postgres);
    }

    #[test]
    fn every_documented_esdb_scheme_selects_eventstoredb() {
        for url in [
            "esdb://localhost:2113?tls=false",
            "esdb+discover://cluster.example:2113",
            "kurrentdb://admin:changeit@localhost:2113",
            "KurrentDB+Discover://a,b,c",
        ] {
            assert_eq!(
                backend_for(Some(url)).unwrap(),
                Backend::EventStoreDb(url.to_owned()),
                "{url}"
            );
        }
    }

    #[test]
    fn other_urls_are_refused_without_echoing_secrets() {
        let err = backend_for(Some("tcp://admin:s3cret@host:1113")).unwrap_err();
        assert!(matches!(&err, OpenError::UnsupportedScheme { scheme } if scheme == "tcp"));
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(matches!(
            backend_for(Some("postgres://u:p@db/tasklog")),
            Err(OpenError::PostgresUrl)
        ));
        assert!(matches!(
            backend_for(Some("localhost:2113")),
            Err(OpenError::NotAUrl)
        ));
    }

    #[cfg(not(feature = "eventstoredb"))]
    #[tokio::test]
    async fn an_esdb_url_in_a_build_without_the_feature_is_a_clear_error() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let err = open(Some("esdb://localhost:2113"), pool)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, OpenError::NotBuilt));
        assert!(err.to_string().contains("`eventstoredb` feature"));
    }

    #[cfg(feature = "eventstoredb")]
    #[tokio::test]
    async fn an_esdb_url_opens_the_adapter_without_touching_postgres_or_the_server() {
        // Neither server exists: opening must not need them (the client connects
        // lazily; readiness is `ping`).
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let store = open(
            Some("esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10"),
            pool,
        )
        .await
        .unwrap();
        let ping = store.ping().await;
        assert!(
            matches!(ping, Err(crate::StoreError::Unavailable(_))),
            "{ping:?}"
        );
    }

    #[cfg(feature = "eventstoredb")]
    #[tokio::test]
    async fn a_malformed_esdb_url_is_a_connect_error() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let err = open(Some("esdb://host:2113?nodePreference=sideways"), pool)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, OpenError::Connect(_)), "{err}");
    }
}
