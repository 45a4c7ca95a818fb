//! Per-account login throttling, beside the per-IP limit: failed logins are
//! counted per email (by a hash of its normalised form, so Redis never holds
//! an address), and after `LOGIN_MAX_FAILURES` of them the account refuses
//! every attempt for a while, twice as long after each further run of
//! failures. Unknown emails are counted and locked exactly like known ones,
//! so the answer never tells whether an account exists.
//!
//! Kept in Redis so that it holds across instances. When Redis is down the
//! check lets logins through (logged): the per-IP limit, which falls back to
//! each instance's own count, still bounds guessing.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tasklog_platform::redis::RedisHandle;

/// Failures are forgotten this long after the last one.
const FAILURE_MEMORY: Duration = Duration::from_secs(3600);
/// The longest a lock lasts, however many failures came before.
const MAX_LOCK: Duration = Duration::from_secs(3600);

/// Counts a failure; from `ARGV[2]` failures on, locks for `ARGV[3]` ms
/// doubled for each further `ARGV[2]` failures, at most `ARGV[4]` ms. Both
/// keys share a hash tag, so the script also runs on Redis Cluster.
const FAILED_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local max = tonumber(ARGV[2])
if n >= max then
  local runs = math.floor(n / max) - 1
  local lock = math.min(tonumber(ARGV[3]) * (2 ^ math.min(runs, 30)), tonumber(ARGV[4]))
  redis.call('SET', KEYS[2], '1', 'PX', math.floor(lock))
end
return n
";

/// Per-account throttling settings and its Redis.
pub struct LoginLockout {
    redis: RedisHandle,
    max_failures: u64,
    lock: Duration,
    script: redis::Script,
}

/// An account that must wait before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after_secs: u64,
}

impl LoginLockout {
    /// `max_failures` failed logins lock the account for `lock` (then
    /// doubling); `None` when `max_failures` is 0 (off).
    pub fn new(redis: RedisHandle, max_failures: u64, lock: Duration) -> Option<Self> {
        (max_failures > 0).then(|| Self {
            redis,
            max_failures,
            lock,
            script: redis::Script::new(FAILED_SCRIPT),
        })
    }

    /// `login:{<sha256 of the normalised email>}:<what>`.
    fn keys(&self, email_key: &str) -> (String, String) {
        let digest = Sha256::digest(email_key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        (
            self.redis.key(&format!("login:{{{hex}}}:failures")),
            self.redis.key(&format!("login:{{{hex}}}:lock")),
        )
    }

    /// Whether the account may try now.
    ///
    /// # Errors
    /// `Locked` with the time left.
    pub async fn check(&self, email_key: &str) -> Result<(), Locked> {
        let (_, lock) = self.keys(email_key);
        let ttl: Result<i64, _> =
            self.redis
                .run(|mut conn| async move {
                    redis::cmd("PTTL").arg(&lock).query_async(&mut conn).await
                })
                .await;
        match ttl {
            Ok(ms) if ms > 0 => Err(Locked {
                retry_after_secs: u64::try_from(ms).unwrap_or(1).div_ceil(1000).max(1),
            }),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "per-account login throttling is off while Redis is unavailable");
                Ok(())
            }
        }
    }

    /// Counts a failed login of the account.
    pub async fn failed(&self, email_key: &str) {
        let (failures, lock) = self.keys(email_key);
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let outcome: Result<u64, _> = self
            .redis
            .run(|mut conn| {
                let mut invocation = self.script.key(failures);
                invocation
                    .key(lock)
                    .arg(millis(FAILURE_MEMORY))
                    .arg(self.max_failures)
                    .arg(millis(self.lock).max(1))
                    .arg(millis(MAX_LOCK));
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await;
        match outcome {
            Ok(n) if n >= self.max_failures => {
                tracing::info!(failures = n, "account locked after failed logins");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot count a failed login"),
        }
    }

    /// A successful login forgets the account's failures.
    pub async fn succeeded(&self, email_key: &str) {
        let (failures, lock) = self.keys(email_key);
        let outcome: Result<u64, _> = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("DEL")
                    .arg(&failures)
                    .arg(&lock)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "cannot reset an account's failed logins");
        }
    }
}
