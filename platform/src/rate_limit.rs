//! Rate limits that hold across every instance: a fixed window per key kept
//! in Redis (one Lua script, so counting and expiry are atomic), and a local
//! in-process window per key when Redis is down or slow, so a Redis outage
//! loosens the limits (each instance counts alone) but never fails requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Env};
use crate::redis::RedisHandle;

/// How many requests a key may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub window: Duration,
}

impl Quota {
    /// `N` (per `default_window`), or `N/<duration>` with `s`, `m` or `h`
    /// (`10/60s`, `1000/15m`); `0` turns the limit off (`None`).
    ///
    /// # Errors
    /// When the value does not parse or the window is zero.
    pub fn parse(
        name: &str,
        raw: &str,
        default_window: Duration,
    ) -> Result<Option<Self>, ConfigError> {
        let invalid = || {
            ConfigError::new(
                name,
                format!("{raw:?} is not N or N/<seconds>s (e.g. 10/60s); 0 turns the limit off"),
            )
        };
        let (count, window) = match raw.trim().split_once('/') {
            None => (raw.trim(), None),
            Some((count, window)) => (count.trim(), Some(window.trim())),
        };
        let limit: u64 = count.parse().map_err(|_| invalid())?;
        let window = match window {
            None => default_window,
            Some(w) => {
                let (digits, unit) =
                    w.split_at(w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len()));
                let n: u64 = digits.parse().map_err(|_| invalid())?;
                let secs = match unit {
                    "" | "s" => n,
                    "m" => n.saturating_mul(60),
                    "h" => n.saturating_mul(3600),
                    _ => return Err(invalid()),
                };
                Duration::from_secs(secs)
            }
        };
        if window.is_zero() {
            return Err(invalid());
        }
        Ok((limit > 0).then_some(Self { limit, window }))
    }
}

/// The limits of one service, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Per client IP on `/v1/auth/*`; `None` is off.
    pub auth: Option<Quota>,
    /// Per user (or per IP without a valid token) on everything else; `None` is off.
    pub api: Option<Quota>,
}

impl RateLimitSettings {
    pub const AUTH_WINDOW: Duration = Duration::from_secs(60);
    pub const API_WINDOW: Duration = Duration::from_secs(15 * 60);

    /// `RATE_LIMIT_AUTH` (default 10 per minute) and `RATE_LIMIT_API` (default
    /// 1000 per 15 minutes); `0` turns either off.
    ///
    /// # Errors
    /// When a value does not parse.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            auth: Quota::parse(
                "RATE_LIMIT_AUTH",
                env.get("RATE_LIMIT_AUTH").unwrap_or("10"),
                Self::AUTH_WINDOW,
            )?,
            api: Quota::parse(
                "RATE_LIMIT_API",
                env.get("RATE_LIMIT_API").unwrap_or("1000"),
                Self::API_WINDOW,
            )?,
        })
    }

    pub fn disabled() -> Self {
        Self {
            auth: None,
            api: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.auth.is_some() || self.api.is_some()
    }
}

/// The verdict on one request, with what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Until the window resets.
    pub reset: Duration,
}

impl Decision {
    fn new(quota: Quota, count: u64, reset: Duration) -> Self {
        Self {
            allowed: count <= quota.limit,
            limit: quota.limit,
            remaining: quota.limit.saturating_sub(count),
            reset,
        }
    }

    /// Whole seconds until the reset, at least 1 (headers speak in seconds).
    pub fn reset_secs(&self) -> u64 {
        self.reset
            .as_millis()
            .div_ceil(1000)
            .max(1)
            .try_into()
            .unwrap_or(u64::MAX)
    }
}

/// Reserves `ARGV[2]` requests of the window and returns the count after the
/// reservation and the window's remaining ms. A key left without expiry
/// (should never happen) gets one, so it cannot lock a client out for good.
const WINDOW_SCRIPT: &str = r"
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// How many requests one Redis call reserves for this instance: a hundredth
/// of the quota (at most 100), so a busy key costs a Redis round trip every
/// few requests instead of every one. Small quotas (the auth one) reserve 1
/// and are counted exactly. Reservations never let more than the quota
/// through across instances; an instance that stops with some unused only
/// makes the budget a little tighter until the window ends.
fn lease_size(quota: Quota) -> u64 {
    (quota.limit / 100).clamp(1, 100)
}

/// After a Redis failure, the local limiter alone decides for this long, so
/// an outage costs one slow call per second rather than one per request.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Keys the local limiter tracks at most; past this it forgets expired windows,
/// and if all are live it lets new keys through uncounted rather than grow.
const LOCAL_MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    redis: Option<RedisHandle>,
    script: redis::Script,
    local: Mutex<HashMap<String, LocalWindow>>,
    leases: Mutex<HashMap<String, Lease>>,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not tried.
    redis_down_until: AtomicU64,
}

struct LocalWindow {
    ends: Instant,
    count: u64,
}

/// Requests reserved in Redis and not yet spent by this instance.
struct Lease {
    ends: Instant,
    tokens: u64,
    /// What the quota had left beyond this lease when it was taken.
    remaining_beyond: u64,
}

impl RateLimiter {
    /// With `None`, every instance counts on its own.
    pub fn new(redis: Option<RedisHandle>) -> Self {
        Self {
            redis,
            script: redis::Script::new(WINDOW_SCRIPT),
            local: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
            started: Instant::now(),
            redis_down_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts one request against `key`'s quota and says whether it may pass.
    pub async fn hit(&self, key: &str, quota: Quota) -> Decision {
        if let Some(redis) = &self.redis {
            if let Some(decision) = self.spend_lease(key, quota) {
                return decision;
            }
            if self.now_ms() >= self.redis_down_until.load(Ordering::Relaxed) {
                match self.hit_redis(redis, key, quota).await {
                    Ok(decision) => return decision,
                    Err(e) => {
                        tracing::warn!(error = %e, "rate limits fall back to this instance's counts");
                        let retry = u64::try_from(REDIS_RETRY_AFTER.as_millis()).unwrap_or(1000);
                        self.redis_down_until
                            .store(self.now_ms().saturating_add(retry), Ordering::Relaxed);
                    }
                }
            }
        }
        self.hit_local(key, quota)
    }

    /// One request from this instance's reservation for `key`, if it has one.
    fn spend_lease(&self, key: &str, quota: Quota) -> Option<Decision> {
        let now = Instant::now();
        let mut leases = self.leases.lock().ok()?;
        let lease = leases.get_mut(key)?;
        if lease.ends <= now || lease.tokens == 0 {
            leases.remove(key);
            return None;
        }
        lease.tokens -= 1;
        Some(Decision {
            allowed: true,
            limit: quota.limit,
            remaining: lease.remaining_beyond + lease.tokens,
            reset: lease.ends - now,
        })
    }

    async fn hit_redis(
        &self,
        redis: &RedisHandle,
        key: &str,
        quota: Quota,
    ) -> Result<Decision, crate::redis::RedisUnavailable> {
        let full_key = redis.key(&format!("ratelimit:{key}"));
        let window_ms = u64::try_from(quota.window.as_millis()).unwrap_or(u64::MAX);
        let want = lease_size(quota);
        let (count, ttl): (u64, i64) = redis
            .run(|mut conn| {
                let mut invocation = self.script.key(full_key);
                invocation.arg(window_ms).arg(want);
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        let reset = Duration::from_millis(u64::try_from(ttl).unwrap_or(window_ms));
        // What was left before this reservation, up to what was asked for.
        let granted = quota
            .limit
            .saturating_sub(count - want.min(count))
            .min(want);
        if granted == 0 {
            return Ok(Decision {
                allowed: false,
                limit: quota.limit,
                remaining: 0,
                reset,
            });
        }
        let remaining_beyond = quota.limit.saturating_sub(count);
        let tokens = granted - 1;
        if tokens > 0 {
            if let Ok(mut leases) = self.leases.lock() {
                if leases.len() >= LOCAL_MAX_KEYS {
                    let now = Instant::now();
                    leases.retain(|_, l| l.ends > now);
                }
                if leases.len() < LOCAL_MAX_KEYS {
                    leases.insert(
                        key.to_owned(),
                        Lease {
                            ends: Instant::now() + reset,
                            tokens,
                            remaining_beyond,
                        },
                    );
                }
            }
        }
        Ok(Decision {
            allowed: true,
            limit: quota.limit,
            remaining: remaining_beyond + tokens,
            reset,
        })
    }

    fn hit_local(&self, key: &str, quota: Quota) -> Decision {
        let now = Instant::now();
        let Ok(mut windows) = self.local.lock() else {
            // A panic while holding the lock: let requests through.
            return Decision::new(quota, 0, quota.window);
        };
        if !windows.contains_key(key) && windows.len() >= LOCAL_MAX_KEYS {
            windows.retain(|_, w| w.ends > now);
            if windows.len() >= LOCAL_MAX_KEYS {
                return Decision::new(quota, 0, quota.window);
            }
        }
        let window = windows.entry(key.to_owned()).or_insert(LocalWindow {
            ends: now + quota.window,
            count: 0,
        });
        if window.ends <= now {
            *window = LocalWindow {
                ends: now + quota.window,
                count: 0,
            };
        }
        window.count = window.count.saturating_add(1);
        Decision::new(quota, window.count, window.ends - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_counts_windows_and_off() {
        let minute = Duration::from_secs(60);
        let q = |raw| Quota::parse("X", raw, minute);
        assert_eq!(
            q("10").unwrap(),
            Some(Quota {
                limit: 10,
                window: minute
            })
        );
        assert_eq!(
            q("5/30s").unwrap(),
            Some(Quota {
                limit: 5,
                window: Duration::from_secs(30)
            })
        );
        assert_eq!(
            q("1000/15m").unwrap(),
            Some(Quota {
                limit: 1000,
                window: Duration::from_secs(900)
            })
        );
        assert_eq!(
            q("7/2h").unwrap().unwrap().window,
            Duration::from_secs(7200)
        );
        assert_eq!(q("0").unwrap(), None);
        for bad in ["ten", "10/0s", "10/5d", "-1", "10/"] {
            assert_eq!(q(bad).unwrap_err().name, "X", "{bad}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = RateLimitSettings::from_env(&Env::default()).unwrap();
        assert_eq!(
            s.auth,
            Some(Quota {
                limit: 10,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(
            s.api,
            Some(Quota {
                limit: 1000,
                window: Duration::from_secs(900)
            })
        );
        let off = RateLimitSettings::from_env(&Env::from_pairs([
            ("RATE_LIMIT_AUTH", "0"),
            ("RATE_LIMIT_API", "0"),
        ]))
        .unwrap();
        assert!(!off.is_enabled());
    }

    #[test]
    fn small_quotas_are_counted_one_by_one_large_ones_in_leases() {
        let q = |limit| Quota {
            limit,
            window: Duration::from_secs(60),
        };
        assert_eq!(lease_size(q(10)), 1);
        assert_eq!(lease_size(q(199)), 1);
        assert_eq!(lease_size(q(1000)), 10);
        assert_eq!(lease_size(q(1_000_000)), 100);
    }

    #[tokio::test]
    async fn the_local_window_refuses_past_the_limit_and_keeps_keys_apart() {
        let limiter = RateLimiter::new(None);
        let quota = Quota {
            limit: 2,
            window: Duration::from_secs(60),
        };
        assert!(limiter.hit("a", quota).await.allowed);
        let second = limiter.hit("a", quota).await;
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);
        let third = limiter.hit("a", quota).await;
        assert!(!third.allowed);
        assert!(third.reset_secs() <= 60);
        assert!(limiter.hit("b", quota).await.allowed);
    }
}
