//! The projector's settings, read from the environment once at start; any
//! missing or invalid variable stops it with a one-line reason.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use tasklog_platform::config::{
    ConfigError, DatabaseSettings, Env, Environment, RedisSettings, bind_addr,
};
use tasklog_platform::data_key::DataKeyEncryptionKey;
use tasklog_platform::server::DrainSettings;

use crate::lease::LeaseTiming;
use crate::webhooks::WebhookSettings;
use crate::webhooks::backoff::Backoff;

pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8083";

pub struct Settings {
    /// The log's server (`DATABASE_URL`), when the log is in Postgres.
    pub database: DatabaseSettings,
    /// The read model's, its checkpoints' and the leases' server
    /// (`READMODEL_DATABASE_URL`, default the same as `DATABASE_URL`).
    pub readmodel: DatabaseSettings,
    /// Wraps every account's data key (`DATA_KEY_ENCRYPTION_KEY`): the
    /// projections open sealed payloads.
    pub data_key: DataKeyEncryptionKey,
    pub redis: RedisSettings,
    /// `esdb://` or `kurrentdb://` selects EventStoreDB; `None` the Postgres log.
    /// Secret because such URLs often carry credentials.
    pub event_store_url: Option<SecretString>,
    pub bind_addr: SocketAddr,
    /// Most events applied in one transaction (`PROJECTOR_BATCH_SIZE`).
    pub batch_size: usize,
    /// Standby retry and holder self-check intervals (`PROJECTOR_LEASE_POLL_MS`).
    pub lease: LeaseTiming,
    /// How often lag is sampled for /metrics (`PROJECTOR_LAG_SAMPLE_MS`).
    pub lag_sample: Duration,
    /// How this instance shows up as a lease holder (`PROJECTOR_INSTANCE`,
    /// default host name and process id).
    pub instance: String,
    pub drain: DrainSettings,
    /// The webhook delivery worker (`WEBHOOK_*`).
    pub webhooks: WebhookSettings,
}

fn default_instance() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "projector".to_owned());
    format!("tasklog-projector@{host}:{}", std::process::id())
}

impl Settings {
    /// # Errors
    /// When a variable is missing or invalid; the error names it.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let event_store_url = env.get("EVENT_STORE_URL").map(str::to_owned);
        tasklog_events::store::backend_for(event_store_url.as_deref())
            .map_err(|e| ConfigError::new("EVENT_STORE_URL", e.to_string()))?;
        let batch_size = env.parse("PROJECTOR_BATCH_SIZE", 2_000_usize)?;
        if !(1..=100_000).contains(&batch_size) {
            return Err(ConfigError::new(
                "PROJECTOR_BATCH_SIZE",
                "must be between 1 and 100000",
            ));
        }
        let poll = env.millis("PROJECTOR_LEASE_POLL_MS", Duration::from_secs(1))?;
        if poll.is_zero() {
            return Err(ConfigError::new(
                "PROJECTOR_LEASE_POLL_MS",
                "must be at least 1",
            ));
        }
        let mut redis = RedisSettings::from_env(env)?;
        // A batch's script carries a delta per owner: give it longer than a
        // request's lookup unless told otherwise.
        if env.get("REDIS_TIMEOUT_MS").is_none() {
            redis.timeout = Duration::from_secs(2);
        }
        Ok(Self {
            webhooks: webhook_settings(env)?,
            data_key: DataKeyEncryptionKey::from_env(env, Environment::from_env(env)?)?,
            database: DatabaseSettings::from_env(env)?,
            readmodel: DatabaseSettings::readmodel_from_env(env)?,
            redis,
            event_store_url: event_store_url.map(SecretString::from),
            bind_addr: bind_addr(env, DEFAULT_BIND_ADDR)?,
            batch_size,
            lease: LeaseTiming { poll, check: poll },
            lag_sample: env.millis("PROJECTOR_LAG_SAMPLE_MS", Duration::from_secs(2))?,
            instance: env.string("PROJECTOR_INSTANCE", &default_instance()),
            drain: DrainSettings::from_env(env)?,
        })
    }
}

/// Each attempt's limit, connect to last byte (issue 23: 10 s).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

fn webhook_settings(env: &Env) -> Result<WebhookSettings, ConfigError> {
    let workers = env.parse("WEBHOOK_WORKERS", 16_usize)?;
    if !(1..=1_000).contains(&workers) {
        return Err(ConfigError::new(
            "WEBHOOK_WORKERS",
            "must be between 1 and 1000",
        ));
    }
    let hours: f64 = env.parse("WEBHOOK_RETRY_HOURS", 24.0)?;
    if hours.is_nan() || hours <= 0.0 || hours > 24.0 * 365.0 {
        return Err(ConfigError::new(
            "WEBHOOK_RETRY_HOURS",
            "must be more than 0 and at most 8760 (a year)",
        ));
    }
    let base = env.millis("WEBHOOK_BACKOFF_BASE_MS", Duration::from_secs(5))?;
    let max = env.millis("WEBHOOK_BACKOFF_MAX_MS", Duration::from_secs(3600))?;
    if base.is_zero() || max < base {
        return Err(ConfigError::new(
            "WEBHOOK_BACKOFF_MAX_MS",
            "must be at least WEBHOOK_BACKOFF_BASE_MS, which must be at least 1",
        ));
    }
    let poll = env.millis("WEBHOOK_POLL_MS", Duration::from_secs(1))?;
    if poll.is_zero() {
        return Err(ConfigError::new("WEBHOOK_POLL_MS", "must be at least 1"));
    }
    Ok(WebhookSettings {
        workers,
        backoff: Backoff {
            base,
            max,
            window: Duration::from_secs_f64(hours * 3600.0),
        },
        poll,
        allow_private: env.parse("WEBHOOK_ALLOW_PRIVATE", false)?,
        timeout: WEBHOOK_TIMEOUT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(pairs: &[(&str, &str)]) -> String {
        let dev = [("TASKLOG_ENV", "development")];
        match Settings::from_env(&Env::from_pairs(dev.iter().chain(pairs).copied())) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.name,
        }
    }

    #[test]
    fn defaults_give_a_runnable_projector() {
        let s = Settings::from_env(&Env::from_pairs([("TASKLOG_ENV", "development")])).unwrap();
        assert_eq!(s.bind_addr.port(), 8083);
        assert_eq!(s.batch_size, 2_000);
        assert_eq!(s.redis.prefix, "tasklog:");
        assert!(s.event_store_url.is_none());
        assert!(s.instance.starts_with("tasklog-projector@"));
        assert_eq!(s.webhooks.workers, 16);
        assert_eq!(s.webhooks.backoff.window, Duration::from_secs(24 * 3600));
        assert!(!s.webhooks.allow_private);
    }

    #[test]
    fn production_needs_a_key_encryption_key() {
        let production = Settings::from_env(&Env::default()).err().map(|e| e.name);
        assert_eq!(production.as_deref(), Some("DATA_KEY_ENCRYPTION_KEY"));
    }

    #[test]
    fn each_invalid_variable_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("EVENT_STORE_URL", "http://x")], "EVENT_STORE_URL"),
            (&[("BIND_ADDR", "nowhere")], "BIND_ADDR"),
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("REDIS_URL", "http://x")], "REDIS_URL"),
            (&[("PROJECTOR_BATCH_SIZE", "0")], "PROJECTOR_BATCH_SIZE"),
            (&[("PROJECTOR_BATCH_SIZE", "lots")], "PROJECTOR_BATCH_SIZE"),
            (
                &[("PROJECTOR_LEASE_POLL_MS", "0")],
                "PROJECTOR_LEASE_POLL_MS",
            ),
            (&[("WEBHOOK_WORKERS", "0")], "WEBHOOK_WORKERS"),
            (&[("WEBHOOK_RETRY_HOURS", "0")], "WEBHOOK_RETRY_HOURS"),
            (&[("WEBHOOK_RETRY_HOURS", "soon")], "WEBHOOK_RETRY_HOURS"),
            (
                &[("WEBHOOK_BACKOFF_BASE_MS", "0")],
                "WEBHOOK_BACKOFF_MAX_MS",
            ),
            (
                &[("WEBHOOK_BACKOFF_MAX_MS", "10")],
                "WEBHOOK_BACKOFF_MAX_MS",
            ),
            (&[("WEBHOOK_POLL_MS", "0")], "WEBHOOK_POLL_MS"),
            (
                &[("WEBHOOK_ALLOW_PRIVATE", "yes please")],
                "WEBHOOK_ALLOW_PRIVATE",
            ),
            (&[("WEBHOOK_RETRY_HOURS", "0.001")], "ok"),
            (&[("EVENT_STORE_URL", "esdb://localhost:2113")], "ok"),
        ];
        for (pairs, want) in cases {
            assert_eq!(err(pairs), *want, "{pairs:?}");
        }
    }
}
