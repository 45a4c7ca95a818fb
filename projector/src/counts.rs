//! The Redis counts per owner as a projection, split into partitions by
//! owner: for each partition, a batch's deltas and the partition's checkpoint
//! move together in one Lua script on one hash slot, which refuses a batch
//! read after any other checkpoint, so a replay never counts twice. A crash
//! between two partitions' scripts leaves them at different positions; the
//! projection then reads on from the oldest, and each partition counts only
//! the events after its own checkpoint.
//!
//! The key layout and fields are the read model's contract
//! (`tasklog_readmodel::counts`).

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use futures::future::try_join_all;
use redis::Script;
use tasklog_events::domain::UserId;
use tasklog_events::{EventStore, Position, RecordedEvent};
use tasklog_platform::redis::RedisHandle;
use tasklog_readmodel::COUNTS;
use tasklog_readmodel::counts::{
    CountKeys, FIELDS, FIRST_GENERATION, PARTITIONS, checkpoint_text, parse_checkpoint,
    partition_of,
};

use crate::error::ProjectorError;
use crate::fold::{Counts, Decoded, count_deltas, decode_batch};
use crate::owners::resolve_owners;
use crate::projection::{Applied, Projection, after, report_skipped};

/// Where one partition's counts stand: the generation written to and the
/// position applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCheckpoint {
    pub generation: String,
    pub position: Option<Position>,
}

/// Where the counts stand, partition by partition (index = partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountsCheckpoint {
    pub partitions: Vec<PartitionCheckpoint>,
}

impl CountsCheckpoint {
    /// The position every partition has reached: the oldest (`None` while
    /// any partition has counted nothing).
    pub fn position(&self) -> Option<Position> {
        self.partitions.iter().map(|p| p.position).min().flatten()
    }

    /// The generation, or the generations while a rebuild flips them
    /// partition by partition (`g3..g4`).
    pub fn generation(&self) -> String {
        let mut names: Vec<&str> = self
            .partitions
            .iter()
            .map(|p| p.generation.as_str())
            .collect();
        names.sort_unstable_by_key(|g| generation_number(g));
        names.dedup();
        match names.as_slice() {
            [] => String::new(),
            [one] => (*one).to_owned(),
            [first, .., last] => format!("{first}..{last}"),
        }
    }
}

/// `g7` -> 7 (names not of that form sort first).
fn generation_number(name: &str) -> u64 {
    name.strip_prefix('g')
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs one script invocation per partition at once.
async fn per_partition<T: redis::FromRedisValue + Send>(
    redis: &RedisHandle,
    invocations: Vec<redis::ScriptInvocation<'static>>,
) -> Result<Vec<T>, ProjectorError> {
    let results = redis
        .run(|conn| async move {
            try_join_all(invocations.into_iter().map(|invocation| {
                let mut conn = conn.clone();
                async move { invocation.invoke_async::<T>(&mut conn).await }
            }))
            .await
        })
        .await?;
    Ok(results)
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

    /// Writes a whole generation's counts (a rebuild), not current yet:
    /// each partition's owners (one pipeline per partition and slot) and
    /// its checkpoint.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn write_generation(
        &self,
        generation: &str,
        counts: &HashMap<UserId, Counts>,
        position: Option<Position>,
    ) -> Result<(), ProjectorError> {
        let mut by_partition: Vec<Vec<(&UserId, &Counts)>> =
            vec![Vec::new(); usize::from(PARTITIONS)];
        for (owner, c) in counts {
            by_partition[usize::from(partition_of(owner.0))].push((owner, c));
        }
        for owners in &by_partition {
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
        }
        // No event counted yet: no checkpoint key (readers parse what is there).
        let value = position.map(|p| p.to_string());
        for partition in 0..PARTITIONS {
            let key = self.keys.checkpoint(generation, partition);
            let value = value.clone();
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
        }
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
        let newest = current
            .partitions
            .iter()
            .map(|p| generation_number(&p.generation))
            .max()
            .unwrap_or(0);
        let next = if newest == 0 {
            format!("g{}", chrono::Utc::now().timestamp())
        } else {
            format!("g{}", newest + 1)
        };
        // A leftover of an interrupted rebuild must not add to the new one.
        self.drop_generation(&next).await?;
        self.write_generation(&next, counts, position).await?;
        // Partition by partition: a reader sees one owner's counts in one
        // partition, so each owner flips at once.
        for old in self.flip(&next).await? {
            if old != next {
                self.drop_generation(&old).await?;
            }
        }
        Ok(next)
    }

    /// Makes `generation` current in every partition; returns the
    /// generations it replaced (each once).
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn flip(&self, generation: &str) -> Result<Vec<String>, ProjectorError> {
        let invocations = (0..PARTITIONS)
            .map(|p| {
                let mut invocation = FLIP.prepare_invoke();
                invocation.key(self.keys.current(p)).arg(generation);
                invocation
            })
            .collect();
        let mut old: Vec<String> = per_partition(&self.redis, invocations).await?;
        old.retain(|g| !g.is_empty());
        old.sort_unstable();
        old.dedup();
        Ok(old)
    }

    /// Removes every key of a generation no longer current, in every partition.
    ///
    /// # Errors
    /// When Redis fails.
    pub async fn drop_generation(&self, generation: &str) -> Result<u64, ProjectorError> {
        let invocations = (0..PARTITIONS)
            .map(|p| {
                let mut invocation = DROP.prepare_invoke();
                invocation
                    .key(self.keys.current(p))
                    .arg(format!("{}*", self.keys.generation_prefix(generation, p)));
                invocation
            })
            .collect();
        let removed: Vec<u64> = per_partition(&self.redis, invocations).await?;
        Ok(removed.iter().sum())
    }

    /// Each partition's current generation, checkpoint and owner hashes,
    /// each partition read atomically (one scan of it); `None` for a
    /// partition without a generation yet.
    ///
    /// # Errors
    /// When Redis fails or holds values that are not counts.
    pub async fn snapshot(&self) -> Result<Vec<Option<PartitionSnapshot>>, ProjectorError> {
        let invocations = (0..PARTITIONS)
            .map(|p| {
                let mut invocation = SNAPSHOT.prepare_invoke();
                invocation.key(self.keys.current(p)).arg(self.keys.base(p));
                invocation
            })
            .collect();
        let raw: Vec<Vec<redis::Value>> = per_partition(&self.redis, invocations).await?;
        let mut partitions = Vec::with_capacity(raw.len());
        for (partition, raw) in (0..PARTITIONS).zip(raw) {
            let mut items = raw.into_iter();
            let (Some(generation), Some(checkpoint)) = (items.next(), items.next()) else {
                partitions.push(None);
                continue;
            };
            let generation: String = redis::from_redis_value(&generation)?;
            let checkpoint: String = redis::from_redis_value(&checkpoint)?;
            let mut hashes = HashMap::new();
            while let (Some(key), Some(fields)) = (items.next(), items.next()) {
                let key: String = redis::from_redis_value(&key)?;
                let fields: HashMap<String, String> = redis::from_redis_value(&fields)?;
                hashes.insert(key, fields);
            }
            partitions.push(Some(PartitionSnapshot {
                partition,
                checkpoint: PartitionCheckpoint {
                    generation,
                    position: parse_checkpoint(&checkpoint)?,
                },
                hashes,
            }));
        }
        Ok(partitions)
    }
}

/// One partition as `verify` reads it.
#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    pub partition: u16,
    pub checkpoint: PartitionCheckpoint,
    /// Owner hash key -> field -> stored text.
    pub hashes: HashMap<String, HashMap<String, String>>,
}

#[async_trait]
impl Projection for CountsProjection {
    type Checkpoint = CountsCheckpoint;

    fn name(&self) -> &'static str {
        COUNTS
    }

    fn position(checkpoint: &CountsCheckpoint) -> Option<Position> {
        checkpoint.position()
    }

    async fn checkpoint(&self) -> Result<CountsCheckpoint, ProjectorError> {
        let invocations = (0..PARTITIONS)
            .map(|p| {
                let mut invocation = LOAD.prepare_invoke();
                invocation
                    .key(self.keys.current(p))
                    .arg(self.keys.base(p))
                    .arg(FIRST_GENERATION);
                invocation
            })
            .collect();
        let loaded: Vec<(String, String)> = per_partition(&self.redis, invocations).await?;
        let mut partitions = Vec::with_capacity(loaded.len());
        for (generation, checkpoint) in loaded {
            partitions.push(PartitionCheckpoint {
                generation,
                position: parse_checkpoint(&checkpoint)?,
            });
        }
        Ok(CountsCheckpoint { partitions })
    }

    async fn apply(
        &self,
        store: &dyn EventStore,
        expected: &CountsCheckpoint,
        events: &[RecordedEvent],
    ) -> Result<Applied<CountsCheckpoint>, ProjectorError> {
        let events = after(events, expected.position());
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
        // Each partition counts only what it has not counted yet.
        let mut deltas: Vec<HashMap<UserId, Counts>> =
            vec![HashMap::new(); usize::from(PARTITIONS)];
        for e in &decoded {
            let Some(owner) = e.owner else { continue };
            let partition = &expected.partitions[usize::from(partition_of(owner.0))];
            if Some(e.position) > partition.position {
                deltas[usize::from(partition_of(owner.0))]
                    .entry(owner)
                    .or_default()
                    .apply_event(&e.event);
            }
        }

        let mut next = expected.clone();
        let mut invocations = Vec::new();
        for (p, (partition, deltas)) in (0..PARTITIONS).zip(expected.partitions.iter().zip(&deltas))
        {
            if partition.position >= Some(last) {
                continue;
            }
            let generation = &partition.generation;
            let mut invocation = APPLY.prepare_invoke();
            invocation
                .key(self.keys.current(p))
                .key(self.keys.checkpoint(generation, p))
                .arg(generation)
                .arg(checkpoint_text(partition.position))
                .arg(checkpoint_text(Some(last)));
            for (owner, delta) in deltas.iter().filter(|(_, d)| !d.is_zero()) {
                invocation.key(self.keys.owner(generation, owner.0));
                for d in delta.to_array() {
                    invocation.arg(d);
                }
            }
            // After the owners with deltas: the partition's erased owners,
            // whose hashes go (again, harmlessly, on a replay).
            for owner in erased.iter().filter(|o| partition_of(o.0) == p) {
                invocation.key(self.keys.owner(generation, owner.0));
            }
            invocations.push(invocation);
            next.partitions[usize::from(p)].position = Some(last);
        }
        let outcomes: Vec<String> = per_partition(&self.redis, invocations).await?;
        if outcomes.iter().all(|o| o == "applied" || o == "duplicate") {
            Ok(Applied::Done(next))
        } else {
            Ok(Applied::Moved(self.checkpoint().await?))
        }
    }
}
