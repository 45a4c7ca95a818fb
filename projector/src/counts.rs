//! The Redis counts per owner as a projection: every batch's deltas and the
//! checkpoint move together in one Lua script, which refuses a batch read
//! after any other checkpoint, so a replay never counts twice.
//!
//! The key layout and fields are the read model's contract
//! (`tasklog_readmodel::counts`).

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Script;
use tasklog_events::domain::UserId;
use tasklog_events::{EventStore, Position, RecordedEvent};
use tasklog_platform::redis::RedisHandle;
use tasklog_readmodel::COUNTS;
use tasklog_readmodel::counts::{
    CountKeys, FIELDS, FIRST_GENERATION, checkpoint_text, parse_checkpoint,
};

use crate::error::ProjectorError;
use crate::fold::{Counts, Decoded, count_deltas, decode_batch};
use crate::owners::resolve_owners;
use crate::projection::{Applied, Projection, after, report_skipped};

/// Where the counts stand: the generation written to and the position applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountsCheckpoint {
    pub generation: String,
    pub position: Option<Position>,
}

/// Makes the first generation current if none is, then answers the current
/// generation and its checkpoint, in one step.
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[2], 'NX')
local gen = redis.call('GET', KEYS[1])
local cp = redis.call('GET', ARGV[1] .. gen .. ':checkpoint') or ''
return {gen, cp}
",
    )
});

/// KEYS[1] current-generation key, KEYS[2] the checkpoint of generation
/// ARGV[1], KEYS[3..] owner hashes. ARGV[2] the checkpoint the batch was read
/// after ('' for none), ARGV[3] the batch's last position, then 8 deltas per
/// owner hash in `FIELDS` order. Owner hashes beyond those with deltas are
/// of erased owners: deleted.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    let fields: Vec<String> = FIELDS.iter().map(|f| format!("'{f}'")).collect();
    Script::new(&format!(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'moved' end
local stored = redis.call('GET', KEYS[2]) or ''
if stored == ARGV[3] then return 'duplicate' end
if stored ~= ARGV[2] then return 'moved' end
local fields = {{{}}}
local counted = 2 + (#ARGV - 3) / 8
for i = 3, counted do
  local base = 3 + (i - 3) * 8
  for j = 1, 8 do
    local d = tonumber(ARGV[base + j])
    redis.call('HINCRBY', KEYS[i], fields[j], d)
  end
end
for i = counted + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('SET', KEYS[2], ARGV[3])
return 'applied'
",
        fields.join(", ")
    ))
});

/// Unlinks every key matching ARGV[1]; KEYS[1] (a key of the same hash tag)
/// sends it to the node that holds them on a cluster.
static DROP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cursor = '0'
local removed = 0
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  for _, key in ipairs(r[2]) do
    redis.call('UNLINK', key)
    removed = removed + 1
  end
until cursor == '0'
return removed
",
    )
});

/// Makes generation ARGV[1] current (KEYS[1]) and returns the one it replaced.
static FLIP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('GET', KEYS[1]) or ''
redis.call('SET', KEYS[1], ARGV[1])
return old
",
    )
});

/// The current generation, its checkpoint and every owner hash of it, read
/// atomically for `verify` (blocks Redis for one scan of that generation).
static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local gen = redis.call('GET', KEYS[1])
if not gen then return {} end
local base = ARGV[1] .. gen
local out = {gen, redis.call('GET', base .. ':checkpoint') or ''}
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', base .. ':owner:*', 'COUNT', 1000)
  cursor = r[1]
  for _, key in ipairs(r[2]) do
    table.insert(out, key)
    table.insert(out, redis.call('HGETALL', key))
  end
until cursor == '0'
return out
",
    )
});

#[derive(Clone)]
pub struct CountsProjection {
    redis: RedisHandle,
    keys: CountKeys,
}

impl CountsProjection {
    pub fn new(redis: RedisHandle) -> Self {
        Self {
            keys: CountKeys::new(redis.prefix()),
            redis,
        }
    }

    pub fn keys(&self) -> &CountKeys {
        &self.keys
    }

    /// Writes a whole generation's counts (a rebuild), not current yet.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn write_generation(
        &self,
        generation: &str,
        counts: &HashMap<UserId, Counts>,
        position: Option<Position>,
    ) -> Result<(), ProjectorError> {
        let owners: Vec<(&UserId, &Counts)> = counts.iter().collect();
        for chunk in owners.chunks(500) {
            let mut pipe = redis::pipe();
            for (owner, c) in chunk {
                let key = self.keys.owner(generation, owner.0);
                let pairs: Vec<(&str, i64)> = FIELDS.into_iter().zip(c.to_array()).collect();
                pipe.del(&key).ignore().hset_multiple(&key, &pairs).ignore();
            }
            self.redis
                .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await?;
        }
        let key = self.keys.checkpoint(generation);
        // No event counted yet: no checkpoint key (readers parse what is there).
        let value = position.map(|p| p.to_string());
        self.redis
            .run(|mut c| async move {
                match value {
                    Some(v) => {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(&v)
                            .query_async::<()>(&mut c)
                            .await
                    }
                    None => redis::cmd("DEL").arg(&key).query_async::<()>(&mut c).await,
                }
            })
            .await?;
        Ok(())
    }

    /// A rebuild's counts: writes `counts` as a new generation at `position`,
    /// makes it current and removes the old one. Returns the new
    /// generation's name.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn rebuild(
        &self,
        counts: &HashMap<UserId, Counts>,
        position: Option<Position>,
    ) -> Result<String, ProjectorError> {
        let current = self.checkpoint().await?;
        let next = current
            .generation
            .strip_prefix('g')
            .and_then(|n| n.parse::<u64>().ok())
            .map_or_else(
                || format!("g{}", chrono::Utc::now().timestamp()),
                |n| format!("g{}", n + 1),
            );
        // A leftover of an interrupted rebuild must not add to the new one.
        self.drop_generation(&next).await?;
        self.write_generation(&next, counts, position).await?;
        if let Some(old) = self.flip(&next).await? {
            if old != next {
                self.drop_generation(&old).await?;
            }
        }
        Ok(next)
    }

    /// Makes `generation` current; returns the generation it replaced.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn flip(&self, generation: &str) -> Result<Option<String>, ProjectorError> {
        let mut invocation = FLIP.prepare_invoke();
        invocation.key(self.keys.current()).arg(generation);
        let old: String = self
            .redis
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok((!old.is_empty()).then_some(old))
    }

    /// Removes every key of a generation no longer current.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn drop_generation(&self, generation: &str) -> Result<u64, ProjectorError> {
        let mut invocation = DROP.prepare_invoke();
        invocation
            .key(self.keys.current())
            .arg(format!("{}*", self.keys.generation_prefix(generation)));
        let removed: u64 = self
            .redis
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(removed)
    }

    /// The current generation's checkpoint and counts, read atomically;
    /// `None` when no generation exists yet.
    ///
    /// # Errors
    /// When Redis fails or holds values that are not counts.
    pub async fn snapshot(
        &self,
    ) -> Result<Option<(CountsCheckpoint, HashMap<String, HashMap<String, String>>)>, ProjectorError>
    {
        let mut invocation = SNAPSHOT.prepare_invoke();
        invocation.key(self.keys.current()).arg(self.keys.base());
        let raw: Vec<redis::Value> = self
            .redis
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        let mut items = raw.into_iter();
        let (Some(generation), Some(checkpoint)) = (items.next(), items.next()) else {
            return Ok(None);
        };
        let generation: String = redis::from_redis_value(&generation)?;
        let checkpoint: String = redis::from_redis_value(&checkpoint)?;
        let mut hashes = HashMap::new();
        while let (Some(key), Some(fields)) = (items.next(), items.next()) {
            let key: String = redis::from_redis_value(&key)?;
            let fields: HashMap<String, String> = redis::from_redis_value(&fields)?;
            hashes.insert(key, fields);
        }
        Ok(Some((
            CountsCheckpoint {
                generation,
                position: parse_checkpoint(&checkpoint)?,
            },
            hashes,
        )))
    }
}

#[async_trait]
impl Projection for CountsProjection {
    type Checkpoint = CountsCheckpoint;

    fn name(&self) -> &'static str {
        COUNTS
    }

    fn position(checkpoint: &CountsCheckpoint) -> Option<Position> {
        checkpoint.position
    }

    async fn checkpoint(&self) -> Result<CountsCheckpoint, ProjectorError> {
        let mut invocation = LOAD.prepare_invoke();
        invocation
            .key(self.keys.current())
            .arg(self.keys.base())
            .arg(FIRST_GENERATION);
        let (generation, checkpoint): (String, String) = self
            .redis
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(CountsCheckpoint {
            generation,
            position: parse_checkpoint(&checkpoint)?,
        })
    }

    async fn apply(
        &self,
        store: &dyn EventStore,
        expected: &CountsCheckpoint,
        events: &[RecordedEvent],
    ) -> Result<Applied<CountsCheckpoint>, ProjectorError> {
        let events = after(events, expected.position);
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(Applied::Done(expected.clone()));
        };
        let Decoded {
            events: mut decoded,
            skipped,
            erased,
            ..
        } = decode_batch(events);
        report_skipped(COUNTS, &skipped);
        let (_, unowned) = count_deltas(&decoded);
        if !unowned.is_empty() {
            resolve_owners(store, &mut decoded).await?;
        }
        let (deltas, _) = count_deltas(&decoded);

        let generation = &expected.generation;
        let mut invocation = APPLY.prepare_invoke();
        invocation
            .key(self.keys.current())
            .key(self.keys.checkpoint(generation))
            .arg(generation)
            .arg(checkpoint_text(expected.position))
            .arg(checkpoint_text(Some(last)));
        for (owner, delta) in deltas.iter().filter(|(_, d)| !d.is_zero()) {
            invocation.key(self.keys.owner(generation, owner.0));
            for d in delta.to_array() {
                invocation.arg(d);
            }
        }
        // After the owners with deltas: the erased, whose hashes go.
        for owner in &erased {
            invocation.key(self.keys.owner(generation, owner.0));
        }
        let outcome: String = self
            .redis
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        let next = CountsCheckpoint {
            generation: generation.clone(),
            position: Some(last),
        };
        match outcome.as_str() {
            "applied" | "duplicate" => Ok(Applied::Done(next)),
            _ => Ok(Applied::Moved(self.checkpoint().await?)),
        }
    }
}
