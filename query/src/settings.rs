//! The query service's settings, read from the environment once at start;
//! any missing or invalid variable stops it with a one-line reason.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tasklog_platform::auth::{JwtKeys, KeyUse};
use tasklog_platform::config::{
    ConfigError, DatabaseSettings, Env, Environment, RedisSettings, bind_addr,
};
use tasklog_platform::data_key::DataKeyEncryptionKey;
use tasklog_platform::hardening::HttpSettings;
use tasklog_platform::server::DrainSettings;

use crate::changes::StreamSettings;
use crate::listing::CursorKey;

pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8082";

/// How long a request with `X-Min-Position` waits for the projection by default.
pub const DEFAULT_MIN_POSITION_TIMEOUT: Duration = Duration::from_secs(2);

/// `LIST_CACHE_MB` by default: a page of 20 tasks is a few KiB, so thousands.
pub const DEFAULT_LIST_CACHE_MB: u64 = 16;
/// Above this the cache alone would break the service's memory budget.
const MAX_LIST_CACHE_MB: u64 = 4096;

/// `SSE_MAX_PER_USER` by default.
pub const DEFAULT_SSE_MAX_PER_USER: usize = 10;

/// Shortest `CURSOR_SECRET` accepted: an HMAC key should carry 256 bits.
const MIN_CURSOR_SECRET_BYTES: usize = 32;

pub struct Settings {
    pub environment: Environment,
    /// Wraps every account's data key (`DATA_KEY_ENCRYPTION_KEY`): history
    /// and as-of open sealed payloads.
    pub data_key: DataKeyEncryptionKey,
    /// The log's server (`DATABASE_URL`): history and as-of read the log.
    pub database: DatabaseSettings,
    /// The read model's server (`READMODEL_DATABASE_URL`, default the same):
    /// lists, details, stats, the change feed.
    pub readmodel: DatabaseSettings,
    pub redis: RedisSettings,
    /// `esdb://` or `kurrentdb://` selects EventStoreDB; `None` the Postgres log.
    /// Secret because such URLs often carry credentials.
    pub event_store_url: Option<SecretString>,
    pub bind_addr: SocketAddr,
    /// Verification only: this service never holds the signing key.
    pub jwt: JwtKeys,
    pub cursor_key: CursorKey,
    pub min_position_timeout: Duration,
    /// Memory for list pages answered again without Postgres; 0 turns it off.
    pub list_cache_bytes: u64,
    /// Hot standbys of the read model's server (`READ_REPLICA_URLS`); empty:
    /// every read goes to `readmodel`.
    pub replica_urls: Vec<String>,
    /// A replica further behind than this leaves the rotation.
    pub replica_max_lag: Duration,
    /// How often a caught-up replica is polled (one behind an announced
    /// position is polled every 2 ms until it has replayed it).
    pub replica_poll: Duration,
    /// CORS, request timeout, rate limits, trusted proxies.
    pub http: HttpSettings,
    pub drain: DrainSettings,
    /// `SSE_MAX_PER_USER`: open change streams per user, across instances.
    pub sse_max_per_user: usize,
    pub sse: StreamSettings,
}

impl Settings {
    /// # Errors
    /// When a variable is missing or invalid; the error names it.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        let event_store_url = env.get("EVENT_STORE_URL").map(str::to_owned);
        tasklog_events::store::backend_for(event_store_url.as_deref())
            .map_err(|e| ConfigError::new("EVENT_STORE_URL", e.to_string()))?;
        let min_position_timeout =
            env.millis("MIN_POSITION_TIMEOUT_MS", DEFAULT_MIN_POSITION_TIMEOUT)?;
        if min_position_timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "MIN_POSITION_TIMEOUT_MS",
                "must be at most 60000",
            ));
        }
        let list_cache_mb = env.parse("LIST_CACHE_MB", DEFAULT_LIST_CACHE_MB)?;
        if list_cache_mb > MAX_LIST_CACHE_MB {
            return Err(ConfigError::new(
                "LIST_CACHE_MB",
                format!("must be at most {MAX_LIST_CACHE_MB}"),
            ));
        }
        let sse_max_per_user = env.parse("SSE_MAX_PER_USER", DEFAULT_SSE_MAX_PER_USER)?;
        if !(1..=1000).contains(&sse_max_per_user) {
            return Err(ConfigError::new(
                "SSE_MAX_PER_USER",
                "must be from 1 to 1000",
            ));
        }
        let slow_client = env.millis("SSE_SLOW_CLIENT_MS", Duration::from_secs(10))?;
        if slow_client.is_zero() {
            return Err(ConfigError::new("SSE_SLOW_CLIENT_MS", "must be above 0"));
        }
        let replica_urls: Vec<String> = env
            .get("READ_REPLICA_URLS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = replica_urls
            .iter()
            .find(|u| !(u.starts_with("postgres://") || u.starts_with("postgresql://")))
        {
            return Err(ConfigError::new(
                "READ_REPLICA_URLS",
                format!("{bad:?} is not a postgres:// URL (a comma-separated list)"),
            ));
        }
        let replica_poll = env.millis("REPLICA_POLL_MS", Duration::from_millis(100))?;
        if replica_poll.is_zero() || replica_poll > Duration::from_secs(10) {
            return Err(ConfigError::new(
                "REPLICA_POLL_MS",
                "must be between 1 and 10000",
            ));
        }
        Ok(Self {
            sse_max_per_user,
            sse: StreamSettings { slow_client },
            environment,
            replica_urls,
            replica_max_lag: env.millis("REPLICA_MAX_LAG_MS", Duration::from_secs(5))?,
            replica_poll,
            database: DatabaseSettings::from_env(env)?,
            readmodel: DatabaseSettings::readmodel_from_env(env)?,
            redis: RedisSettings::from_env(env)?,
            event_store_url: event_store_url.map(SecretString::from),
            bind_addr: bind_addr(env, DEFAULT_BIND_ADDR)?,
            jwt: JwtKeys::from_env(env, environment, KeyUse::VerifyOnly)?,
            cursor_key: cursor_key(env, environment)?,
            min_position_timeout,
            list_cache_bytes: list_cache_mb * 1024 * 1024,
            http: HttpSettings::from_env(env, environment)?,
            drain: DrainSettings::from_env(env)?,
            // Last: a bad JWT or CORS setting is the message to see first.
            data_key: DataKeyEncryptionKey::from_env(env, environment)?,
        })
    }
}

/// Cursors are signed so clients cannot forge positions. Every instance
/// behind a load balancer must sign with the same key (a cursor from one page
/// is used on whichever instance serves the next), so production requires
/// `CURSOR_SECRET`; development makes a random key per process.
fn cursor_key(env: &Env, environment: Environment) -> Result<CursorKey, ConfigError> {
    match env.secret("CURSOR_SECRET") {
        Some(secret) => {
            let bytes = secret.expose_secret().as_bytes();
            if bytes.len() < MIN_CURSOR_SECRET_BYTES {
                return Err(ConfigError::new(
                    "CURSOR_SECRET",
                    format!("must be at least {MIN_CURSOR_SECRET_BYTES} bytes"),
                ));
            }
            Ok(CursorKey::new(bytes))
        }
        None if environment == Environment::Production => Err(ConfigError::new(
            "CURSOR_SECRET",
            "is required in production (the same value on every query instance)",
        )),
        None => Ok(CursorKey::random()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Development unless a case says otherwise (a later pair wins).
    fn err(pairs: &[(&str, &str)]) -> String {
        let pairs = [("TASKLOG_ENV", "development")].iter().chain(pairs);
        match Settings::from_env(&Env::from_pairs(pairs.copied())) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.name,
        }
    }

    #[test]
    fn an_unset_environment_is_production_and_refuses_the_development_secret() {
        let Err(e) = Settings::from_env(&Env::default()) else {
            panic!("started on the development secret without TASKLOG_ENV=development");
        };
        assert_eq!(e.name, "JWT_SECRET");
    }

    #[test]
    fn defaults_give_a_runnable_development_service() {
        let s = Settings::from_env(&Env::from_pairs([("TASKLOG_ENV", "development")])).unwrap();
        assert_eq!(s.bind_addr.port(), 8082);
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.min_position_timeout, DEFAULT_MIN_POSITION_TIMEOUT);
        assert_eq!(s.list_cache_bytes, DEFAULT_LIST_CACHE_MB << 20);
        assert!(s.event_store_url.is_none());
        assert!(s.jwt.signer.is_none(), "the query service never signs");
    }

    #[test]
    fn each_invalid_variable_is_named() {
        let secret = "0123456789abcdef0123456789abcdef";
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("TASKLOG_ENV", "staging")], "TASKLOG_ENV"),
            (&[("EVENT_STORE_URL", "http://x")], "EVENT_STORE_URL"),
            (&[("BIND_ADDR", "nowhere")], "BIND_ADDR"),
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("REDIS_URL", "http://x")], "REDIS_URL"),
            (
                &[("MIN_POSITION_TIMEOUT_MS", "soon")],
                "MIN_POSITION_TIMEOUT_MS",
            ),
            (
                &[("MIN_POSITION_TIMEOUT_MS", "600000")],
                "MIN_POSITION_TIMEOUT_MS",
            ),
            (&[("CURSOR_SECRET", "short")], "CURSOR_SECRET"),
            (&[("LIST_CACHE_MB", "-1")], "LIST_CACHE_MB"),
            (&[("LIST_CACHE_MB", "4097")], "LIST_CACHE_MB"),
            (&[("LIST_CACHE_MB", "0")], "ok"),
            (&[("SSE_MAX_PER_USER", "0")], "SSE_MAX_PER_USER"),
            (&[("SSE_MAX_PER_USER", "many")], "SSE_MAX_PER_USER"),
            (&[("SSE_SLOW_CLIENT_MS", "0")], "SSE_SLOW_CLIENT_MS"),
            (&[("READ_REPLICA_URLS", "redis://x")], "READ_REPLICA_URLS"),
            (
                &[("READ_REPLICA_URLS", "postgres://a/db, postgres://b/db")],
                "ok",
            ),
            (&[("REPLICA_MAX_LAG_MS", "soon")], "REPLICA_MAX_LAG_MS"),
            (&[("REPLICA_POLL_MS", "0")], "REPLICA_POLL_MS"),
            (&[("CURSOR_SECRET", secret)], "ok"),
            (&[("TASKLOG_ENV", "production")], "JWT_SECRET"),
            (&[("EVENT_STORE_URL", "esdb://localhost:2113")], "ok"),
        ];
        for (pairs, want) in cases {
            assert_eq!(err(pairs), *want, "{pairs:?}");
        }
    }

    #[test]
    fn production_requires_a_shared_cursor_secret() {
        let env = Env::default();
        assert_eq!(
            cursor_key(&env, Environment::Production)
                .err()
                .map(|e| e.name),
            Some("CURSOR_SECRET".to_owned())
        );
        assert!(cursor_key(&env, Environment::Development).is_ok());
    }
}
