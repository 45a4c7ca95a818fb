//! The command service's settings, read from the environment once at start;
//! any missing or invalid variable stops it with a one-line reason.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use tasklog_events::store::postgres::GroupCommitSettings;
use tasklog_platform::auth::{JwtKeys, KeyUse};
use tasklog_platform::config::{
    ConfigError, DatabaseSettings, Env, Environment, RedisSettings, bind_addr,
};
use tasklog_platform::data_key::DataKeyEncryptionKey;
use tasklog_platform::hardening::HttpSettings;
use tasklog_platform::server::DrainSettings;

use crate::webhooks::UrlPolicy;

pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8081";

/// Each append worker holds a pooled connection while it commits.
const MAX_APPEND_WORKERS: usize = 16;

/// Refresh tokens live 30 days unless `REFRESH_TOKEN_TTL_SECS` says otherwise.
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct Settings {
    pub environment: Environment,
    /// Wraps every account's data key (`DATA_KEY_ENCRYPTION_KEY`).
    pub data_key: DataKeyEncryptionKey,
    pub database: DatabaseSettings,
    /// Where rate limits are counted across instances.
    pub redis: RedisSettings,
    /// CORS, request timeout, rate limits, trusted proxies.
    pub http: HttpSettings,
    /// `esdb://` or `kurrentdb://` selects EventStoreDB; `None` the Postgres log.
    /// Secret because such URLs often carry credentials.
    pub event_store_url: Option<SecretString>,
    pub bind_addr: SocketAddr,
    pub jwt: JwtKeys,
    pub refresh_token_ttl: Duration,
    /// A session's absolute lifetime from its login (`SESSION_MAX_AGE_SECS`).
    pub session_max_age: Duration,
    /// Failed logins of one email before it is locked (`LOGIN_MAX_FAILURES`, 0 off).
    pub login_max_failures: u64,
    /// The first lock's length, doubled for each further run of failures
    /// (`LOGIN_LOCK_SECS`).
    pub login_lock: Duration,
    /// How many Argon2 hashes may run at once; each takes a core and 19 MiB.
    pub password_hash_concurrency: usize,
    pub drain: DrainSettings,
    /// Webhook targets: https only in production; loopback and private
    /// addresses only with `WEBHOOK_ALLOW_PRIVATE=true`.
    pub webhook_policy: UrlPolicy,
    /// Bytes of recently written task states kept to spare a change the read
    /// of its stream (`TASK_STATE_CACHE_MB`, 0 off; `tasks/recent.rs`).
    pub task_state_cache_bytes: u64,
    /// The Postgres log's group commit: `APPEND_WORKERS` transactions of
    /// appends in flight at once (default 1).
    pub group_commit: GroupCommitSettings,
}

impl Settings {
    /// # Errors
    /// When a variable is missing or invalid; the error names it.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let environment = Environment::from_env(env)?;
        let event_store_url = env.get("EVENT_STORE_URL").map(str::to_owned);
        tasklog_events::store::backend_for(event_store_url.as_deref())
            .map_err(|e| ConfigError::new("EVENT_STORE_URL", e.to_string()))?;
        let event_store_url = event_store_url.map(SecretString::from);
        let refresh_secs = env.parse("REFRESH_TOKEN_TTL_SECS", DEFAULT_REFRESH_TTL.as_secs())?;
        if refresh_secs == 0 {
            return Err(ConfigError::new(
                "REFRESH_TOKEN_TTL_SECS",
                "must be at least 1",
            ));
        }
        let session_secs = env.parse(
            "SESSION_MAX_AGE_SECS",
            crate::accounts::DEFAULT_SESSION_MAX_AGE.as_secs(),
        )?;
        if session_secs == 0 {
            return Err(ConfigError::new(
                "SESSION_MAX_AGE_SECS",
                "must be at least 1",
            ));
        }
        let login_lock_secs: u64 = env.parse("LOGIN_LOCK_SECS", 60)?;
        if login_lock_secs == 0 {
            return Err(ConfigError::new("LOGIN_LOCK_SECS", "must be at least 1"));
        }
        // Half the cores: a hash holds a core for tens of milliseconds, and
        // the other half keeps serving task writes while logins queue.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let password_hash_concurrency =
            env.parse("PASSWORD_HASH_CONCURRENCY", (cores / 2).max(1))?;
        if password_hash_concurrency == 0 {
            return Err(ConfigError::new(
                "PASSWORD_HASH_CONCURRENCY",
                "must be at least 1",
            ));
        }
        let webhook_policy = UrlPolicy {
            require_https: environment == Environment::Production,
            allow_private: env.parse("WEBHOOK_ALLOW_PRIVATE", false)?,
        };
        let task_state_cache_mb: u64 = env.parse("TASK_STATE_CACHE_MB", 4)?;
        let defaults = GroupCommitSettings::default();
        let append_workers = env.parse("APPEND_WORKERS", defaults.workers)?;
        if append_workers == 0 || append_workers > MAX_APPEND_WORKERS {
            return Err(ConfigError::new(
                "APPEND_WORKERS",
                format!("must be 1 to {MAX_APPEND_WORKERS}"),
            ));
        }
        Ok(Self {
            group_commit: GroupCommitSettings {
                workers: append_workers,
                ..defaults
            },
            webhook_policy,
            task_state_cache_bytes: task_state_cache_mb.saturating_mul(1 << 20),
            environment,
            database: DatabaseSettings::from_env(env)?,
            redis: RedisSettings::from_env(env)?,
            http: HttpSettings::from_env(env, environment)?,
            event_store_url,
            bind_addr: bind_addr(env, DEFAULT_BIND_ADDR)?,
            jwt: JwtKeys::from_env(env, environment, KeyUse::SignAndVerify)?,
            refresh_token_ttl: Duration::from_secs(refresh_secs),
            session_max_age: Duration::from_secs(session_secs),
            login_max_failures: env.parse("LOGIN_MAX_FAILURES", 5)?,
            login_lock: Duration::from_secs(login_lock_secs),
            password_hash_concurrency,
            drain: DrainSettings::from_env(env)?,
            // Last: a bad JWT or CORS setting is the message to see first.
            data_key: DataKeyEncryptionKey::from_env(env, environment)?,
        })
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
        assert_eq!(s.bind_addr.port(), 8081);
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.refresh_token_ttl, DEFAULT_REFRESH_TTL);
        assert!(s.event_store_url.is_none());
        assert!(s.jwt.signer.is_some());
        assert_eq!(s.group_commit.workers, 1);
    }

    #[test]
    fn each_invalid_variable_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("TASKLOG_ENV", "staging")], "TASKLOG_ENV"),
            (&[("EVENT_STORE_URL", "http://x")], "EVENT_STORE_URL"),
            (&[("BIND_ADDR", "nowhere")], "BIND_ADDR"),
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("REFRESH_TOKEN_TTL_SECS", "0")], "REFRESH_TOKEN_TTL_SECS"),
            (&[("SESSION_MAX_AGE_SECS", "0")], "SESSION_MAX_AGE_SECS"),
            (&[("LOGIN_MAX_FAILURES", "-1")], "LOGIN_MAX_FAILURES"),
            (&[("LOGIN_LOCK_SECS", "0")], "LOGIN_LOCK_SECS"),
            (&[("APPEND_WORKERS", "0")], "APPEND_WORKERS"),
            (&[("APPEND_WORKERS", "17")], "APPEND_WORKERS"),
            (
                &[("REFRESH_TOKEN_TTL_SECS", "soon")],
                "REFRESH_TOKEN_TTL_SECS",
            ),
            (&[("ACCESS_TOKEN_TTL_SECS", "0")], "ACCESS_TOKEN_TTL_SECS"),
            (
                &[("PASSWORD_HASH_CONCURRENCY", "0")],
                "PASSWORD_HASH_CONCURRENCY",
            ),
            (&[("TASKLOG_ENV", "production")], "JWT_SECRET"),
            (&[("REDIS_URL", "localhost")], "REDIS_URL"),
            (&[("RATE_LIMIT_AUTH", "lots")], "RATE_LIMIT_AUTH"),
            (&[("REQUEST_TIMEOUT_MS", "0")], "REQUEST_TIMEOUT_MS"),
            (
                &[("TASKLOG_ENV", "production"), ("CORS_ORIGINS", "*")],
                "CORS_ORIGINS",
            ),
            (
                &[("WEBHOOK_ALLOW_PRIVATE", "sure")],
                "WEBHOOK_ALLOW_PRIVATE",
            ),
            (&[("EVENT_STORE_URL", "esdb://localhost:2113")], "ok"),
        ];
        for (pairs, want) in cases {
            assert_eq!(err(pairs), *want, "{pairs:?}");
        }
    }
}
