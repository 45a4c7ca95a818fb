//! `SSE_MAX_PER_USER`: how many streams one user may hold open, across every
//! query instance. Each open stream is a member of the Redis sorted set
//! `{prefix}sse:{user}` scored by when its claim lapses; the stream renews it
//! while open and removes it when it ends, and a claim of a killed instance
//! lapses by itself. When Redis is down the limit is kept per instance.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;
use tasklog_platform::redis::RedisHandle;
use uuid::Uuid;

/// How long a claim lives without renewal: three renewals may be missed.
pub const CLAIM_TTL: Duration = Duration::from_secs(45);
/// How often an open stream renews its claim.
pub const RENEW_EVERY: Duration = Duration::from_secs(15);

/// KEYS[1] the user's set; ARGV: now (ms), max, expiry (ms), member, ttl (ms).
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
",
    )
});

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ttl_ms() -> u64 {
    u64::try_from(CLAIM_TTL.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Clone)]
pub struct StreamSlots {
    redis: RedisHandle,
    max: usize,
    /// This instance's open streams per user: the fallback when Redis is down.
    local: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One open stream's claim; dropping it gives the slot back.
pub struct Slot {
    slots: StreamSlots,
    user: Uuid,
    member: String,
}

impl StreamSlots {
    pub fn new(redis: RedisHandle, max: usize) -> Self {
        Self {
            redis,
            max,
            local: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn key(&self, user: Uuid) -> String {
        self.redis.key(&format!("sse:{user}"))
    }

    /// A slot for one more stream of `user`, or `None` at the limit.
    pub async fn claim(&self, user: Uuid) -> Option<Slot> {
        let member = Uuid::new_v4().to_string();
        let now = now_ms();
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .key(self.key(user))
            .arg(now)
            .arg(self.max)
            .arg(now + ttl_ms())
            .arg(&member)
            .arg(ttl_ms());
        let claimed: Result<i64, _> = self
            .redis
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await;
        let allowed = match claimed {
            Ok(n) => n == 1,
            Err(e) => {
                tracing::warn!(error = %e, "redis down: SSE streams limited per instance");
                self.local_count(user) < self.max
            }
        };
        if !allowed {
            return None;
        }
        *self
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(user)
            .or_default() += 1;
        Some(Slot {
            slots: self.clone(),
            user,
            member,
        })
    }

    fn local_count(&self, user: Uuid) -> usize {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&user)
            .copied()
            .unwrap_or(0)
    }
}

impl Slot {
    /// Keeps the claim alive; a failure only logs (the claim lapses, which
    /// at worst lets the user open one stream too many for a while).
    pub async fn renew(&self) {
        let key = self.slots.key(self.user);
        let member = self.member.clone();
        let expiry = now_ms() + ttl_ms();
        let renewed: Result<i64, _> = self
            .slots
            .redis
            .run(|mut c| async move {
                redis::cmd("ZADD")
                    .arg(&key)
                    .arg("XX")
                    .arg("CH")
                    .arg(expiry)
                    .arg(&member)
                    .query_async(&mut c)
                    .await
            })
            .await;
        if let Err(e) = renewed {
            tracing::debug!(error = %e, "cannot renew an SSE stream's claim");
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut local = self
                .slots
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = local.get_mut(&self.user) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    local.remove(&self.user);
                }
            }
        }
        let redis = self.slots.redis.clone();
        let key = self.slots.key(self.user);
        let member = std::mem::take(&mut self.member);
        // Drop cannot wait; a runtime is there whenever a stream ends.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let removed: Result<i64, _> = redis
                    .run(|mut c| async move {
                        redis::cmd("ZREM")
                            .arg(&key)
                            .arg(&member)
                            .query_async(&mut c)
                            .await
                    })
                    .await;
                if let Err(e) = removed {
                    tracing::debug!(error = %e, "cannot release an SSE stream's claim; it lapses");
                }
            });
        }
    }
}
