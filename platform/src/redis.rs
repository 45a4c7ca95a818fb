//! A Redis handle that never blocks start-up or a request for long: it
//! connects on first use, reconnects by itself, and bounds every call.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::{ConfigError, RedisSettings};

#[derive(Debug, thiserror::Error)]
pub enum RedisUnavailable {
    #[error("redis: {0}")]
    Error(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub struct RedisHandle {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    manager: Mutex<Option<ConnectionManager>>,
    prefix: String,
    timeout: Duration,
}

impl RedisHandle {
    /// # Errors
    /// When `REDIS_URL` does not parse.
    pub fn new(settings: &RedisSettings) -> Result<Self, ConfigError> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| ConfigError::new("REDIS_URL", e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                manager: Mutex::new(None),
                prefix: settings.prefix.clone(),
                timeout: settings.timeout,
            }),
        })
    }

    /// The full key for `suffix` under this deployment's prefix.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.inner.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    async fn manager(&self) -> Result<ConnectionManager, RedisUnavailable> {
        if let Some(m) = self.cached() {
            return Ok(m);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.inner.timeout)
            .set_response_timeout(self.inner.timeout)
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_with_config(self.inner.client.clone(), config).await?;
        if let Ok(mut slot) = self.inner.manager.lock() {
            *slot = Some(manager.clone());
        }
        Ok(manager)
    }

    fn cached(&self) -> Option<ConnectionManager> {
        self.inner.manager.lock().ok().and_then(|slot| slot.clone())
    }

    /// Runs one Redis operation within the configured timeout.
    ///
    /// # Errors
    /// When Redis is unreachable, errs, or is too slow.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, async {
            let manager = self.manager().await?;
            Ok(op(manager).await?)
        })
        .await
        .map_err(|_| RedisUnavailable::Timeout(timeout))?
    }

    /// # Errors
    /// When Redis does not answer.
    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}
