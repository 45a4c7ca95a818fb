//! A Redis handle that never blocks start-up or a request for long: it
//! connects on first use, reconnects by itself, and bounds every call. One
//! server (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_URLS`, the `redis`
//! crate's cluster client, which follows slot moves and failovers): callers
//! see one connection type either way. On a cluster every multi-key command
//! or script must name keys of one hash slot (`{...}` hash tags, see
//! `hash_tag`).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

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

enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

struct Inner {
    client: Client,
    connection: Mutex<Option<RedisConnection>>,
    prefix: String,
    timeout: Duration,
}

/// A connection to one server or to a cluster; cheap to clone (both are
/// handles to one multiplexed connection and its reconnecting task).
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// `{text}`: Redis Cluster hashes only what is between the braces, so keys
/// that share a tag share a slot (and may meet in one script).
pub fn hash_tag(text: &str) -> String {
    format!("{{{text}}}")
}

impl RedisHandle {
    /// # Errors
    /// When `REDIS_URL` or a `REDIS_CLUSTER_URLS` entry does not parse.
    pub fn new(settings: &RedisSettings) -> Result<Self, ConfigError> {
        let client = if settings.cluster.is_empty() {
            Client::Single(
                redis::Client::open(settings.url.as_str())
                    .map_err(|e| ConfigError::new("REDIS_URL", e.to_string()))?,
            )
        } else {
            Client::Cluster(
                ClusterClient::builder(settings.cluster.iter().map(String::as_str))
                    .connection_timeout(settings.timeout)
                    .response_timeout(settings.timeout)
                    .retries(2)
                    .build()
                    .map_err(|e| ConfigError::new("REDIS_CLUSTER_URLS", e.to_string()))?,
            )
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                connection: Mutex::new(None),
                prefix: settings.prefix.clone(),
                timeout: settings.timeout,
            }),
        })
    }

    /// Whether this handle speaks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.client, Client::Cluster(_))
    }

    /// The full key for `suffix` under this deployment's prefix.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.inner.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    async fn connection(&self) -> Result<RedisConnection, RedisUnavailable> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let connection = match &self.inner.client {
            Client::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.inner.timeout)
                    .set_response_timeout(self.inner.timeout)
                    .set_number_of_retries(1);
                RedisConnection::Single(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                )
            }
            Client::Cluster(client) => {
                RedisConnection::Cluster(client.get_async_connection().await?)
            }
        };
        if let Ok(mut slot) = self.inner.connection.lock() {
            *slot = Some(connection.clone());
        }
        Ok(connection)
    }

    fn cached(&self) -> Option<RedisConnection> {
        self.inner
            .connection
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
    }

    /// Runs one Redis operation within the configured timeout.
    ///
    /// # Errors
    /// When Redis is unreachable, errs, or is too slow.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(RedisConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, async {
            let connection = self.connection().await?;
            Ok(op(connection).await?)
        })
        .await
        .map_err(|_| RedisUnavailable::Timeout(timeout))?
    }

    /// Whether Redis serves: one server answers PING; a cluster answers
    /// `cluster_state:ok` from any node (a lost replica, or a master whose
    /// replica has taken over, still serves every slot).
    ///
    /// # Errors
    /// When Redis does not answer, or the cluster does not cover every slot.
    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        self.run(|c| async move {
            match c {
                RedisConnection::Single(mut c) => {
                    redis::cmd("PING").query_async::<String>(&mut c).await?;
                }
                RedisConnection::Cluster(mut c) => {
                    let info = c
                        .route_command(
                            redis::cmd("CLUSTER").arg("INFO"),
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                        )
                        .await?;
                    let info: String = redis::from_redis_value(&info)?;
                    if !info.contains("cluster_state:ok") {
                        return Err(redis::RedisError::from((
                            redis::ErrorKind::ClusterDown,
                            "the cluster does not serve every slot",
                        )));
                    }
                }
            }
            Ok(())
        })
        .await
    }
}
