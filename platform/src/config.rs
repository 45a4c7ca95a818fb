//! Settings read from the environment once at start (12-factor), each with a
//! one-line reason when missing or invalid.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// A setting that is missing or invalid; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(name: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A snapshot of the environment, so settings can be tested without touching
/// the process's own.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The value, if set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// # Errors
    /// When the value is set but does not parse.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(name, format!("{raw:?} is not valid: {e}"))),
        }
    }

    /// A duration given in whole milliseconds.
    ///
    /// # Errors
    /// When the value is not a non-negative integer.
    pub fn millis(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        self.parse(name, default_ms).map(Duration::from_millis)
    }

    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.get(name).map(|v| SecretString::from(v.to_owned()))
    }
}

/// `development` relaxes what `production` refuses: weak secrets, permissive CORS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    /// `TASKLOG_ENV`. Unset means production: a deployment that forgets it
    /// refuses weak secrets rather than running on the development one, which
    /// only an explicit `development` allows (`deploy/local/up` sets it).
    ///
    /// # Errors
    /// When set to anything but `development` or `production`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        env.parse("TASKLOG_ENV", Environment::Production)
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(Self::Development),
            "production" => Ok(Self::Production),
            _ => Err("must be development or production".into()),
        }
    }
}

/// How to reach Postgres and how hard to lean on it.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before it is a 503.
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    pub const DEFAULT_URL: &'static str = "postgres://postgres@127.0.0.1:5432/tasklog";

    /// The log's and the accounts' server (`DATABASE_URL`).
    ///
    /// # Errors
    /// When a variable is invalid.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.string("DATABASE_URL", Self::DEFAULT_URL);
        Self::with_url(env, "DATABASE_URL", url)
    }

    /// The read model's server: `READMODEL_DATABASE_URL`, or the same as
    /// `DATABASE_URL` when unset, so a one-server install changes nothing.
    /// The pool's size and timeout are the same variables as the log's.
    ///
    /// # Errors
    /// When a variable is invalid.
    pub fn readmodel_from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get("READMODEL_DATABASE_URL") {
            Some(url) => Self::with_url(env, "READMODEL_DATABASE_URL", url.to_owned()),
            None => Self::from_env(env),
        }
    }

    fn with_url(env: &Env, var: &'static str, url: String) -> Result<Self, ConfigError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::new(var, "must be a postgres:// URL"));
        }
        let max_connections = env.parse("DATABASE_MAX_CONNECTIONS", 20_u32)?;
        if max_connections == 0 {
            return Err(ConfigError::new(
                "DATABASE_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        Ok(Self {
            url,
            max_connections,
            acquire_timeout: env.millis("DATABASE_ACQUIRE_TIMEOUT_MS", Duration::from_secs(2))?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Seed nodes of a Redis Cluster (`REDIS_CLUSTER_URLS`); when given, they
    /// are used instead of `url`.
    pub cluster: Vec<String>,
    /// Namespace of every key, so several deployments (or tests) share a server.
    pub prefix: String,
    /// Longest wait for one Redis call before falling back.
    pub timeout: Duration,
}

impl RedisSettings {
    /// # Errors
    /// When a variable is invalid.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.string("REDIS_URL", "redis://127.0.0.1:6379");
        if !is_redis_url(&url) {
            return Err(ConfigError::new("REDIS_URL", "must be a redis:// URL"));
        }
        let cluster: Vec<String> = env
            .get("REDIS_CLUSTER_URLS")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = cluster.iter().find(|u| !is_redis_url(u)) {
            return Err(ConfigError::new(
                "REDIS_CLUSTER_URLS",
                format!("{bad:?} is not a redis:// URL (a comma-separated list of seed nodes)"),
            ));
        }
        Ok(Self {
            url,
            cluster,
            prefix: env.string("REDIS_PREFIX", "tasklog:"),
            timeout: env.millis("REDIS_TIMEOUT_MS", Duration::from_millis(250))?,
        })
    }
}

fn is_redis_url(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

/// Reads `BIND_ADDR` with a per-service default.
///
/// # Errors
/// When the address does not parse.
pub fn bind_addr(env: &Env, default: &str) -> Result<SocketAddr, ConfigError> {
    let raw = env.string("BIND_ADDR", default);
    raw.parse()
        .map_err(|e| ConfigError::new("BIND_ADDR", format!("{raw:?} is not host:port: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        let env = Env::from_pairs([("DATABASE_MAX_CONNECTIONS", "  ")]);
        let db = DatabaseSettings::from_env(&env).unwrap();
        assert_eq!(db.url, DatabaseSettings::DEFAULT_URL);
        assert_eq!(db.max_connections, 20);
    }

    #[test]
    fn the_read_model_shares_the_log_server_unless_given_its_own() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://log/db")]);
        let readmodel = DatabaseSettings::readmodel_from_env(&env).unwrap();
        assert_eq!(readmodel.url, "postgres://log/db");

        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://log/db"),
            ("READMODEL_DATABASE_URL", "postgres://reads/db"),
            ("DATABASE_MAX_CONNECTIONS", "7"),
        ]);
        let readmodel = DatabaseSettings::readmodel_from_env(&env).unwrap();
        assert_eq!(readmodel.url, "postgres://reads/db");
        assert_eq!(readmodel.max_connections, 7);
        assert_eq!(
            DatabaseSettings::from_env(&env).unwrap().url,
            "postgres://log/db"
        );

        let env = Env::from_pairs([("READMODEL_DATABASE_URL", "redis://x")]);
        assert_eq!(
            DatabaseSettings::readmodel_from_env(&env).unwrap_err().name,
            "READMODEL_DATABASE_URL"
        );
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let env = Env::from_pairs([("DATABASE_MAX_CONNECTIONS", "many")]);
        let err = DatabaseSettings::from_env(&env).unwrap_err();
        assert_eq!(err.name, "DATABASE_MAX_CONNECTIONS");
        assert!(
            err.to_string()
                .starts_with("DATABASE_MAX_CONNECTIONS: \"many\"")
        );

        let env = Env::from_pairs([("REDIS_URL", "http://x")]);
        assert_eq!(RedisSettings::from_env(&env).unwrap_err().name, "REDIS_URL");
        let env = Env::from_pairs([("REDIS_CLUSTER_URLS", "redis://a:7000, 10.0.0.2:7001")]);
        assert_eq!(
            RedisSettings::from_env(&env).unwrap_err().name,
            "REDIS_CLUSTER_URLS"
        );
        let env = Env::from_pairs([("REDIS_CLUSTER_URLS", "redis://a:7000, redis://b:7001,")]);
        assert_eq!(
            RedisSettings::from_env(&env).unwrap().cluster,
            ["redis://a:7000", "redis://b:7001"]
        );

        let env = Env::from_pairs([("BIND_ADDR", "localhost")]);
        assert_eq!(
            bind_addr(&env, "127.0.0.1:1").unwrap_err().name,
            "BIND_ADDR"
        );
        assert_eq!(
            bind_addr(&Env::default(), "127.0.0.1:8081").unwrap().port(),
            8081
        );
    }

    #[test]
    fn an_unset_environment_is_production_and_development_must_be_explicit() {
        assert_eq!(
            Environment::from_env(&Env::default()).unwrap(),
            Environment::Production
        );
        assert_eq!(
            Environment::from_env(&Env::from_pairs([("TASKLOG_ENV", "development")])).unwrap(),
            Environment::Development
        );
        assert_eq!(
            Environment::from_env(&Env::from_pairs([("TASKLOG_ENV", "dev")]))
                .unwrap_err()
                .name,
            "TASKLOG_ENV"
        );
    }

    #[test]
    fn environment_accepts_only_its_two_names() {
        assert_eq!(
            Env::from_pairs([("TASKLOG_ENV", "production")])
                .parse("TASKLOG_ENV", Environment::Development)
                .unwrap(),
            Environment::Production
        );
        assert!(
            Env::from_pairs([("TASKLOG_ENV", "prod")])
                .parse("TASKLOG_ENV", Environment::Development)
                .is_err()
        );
    }
}
