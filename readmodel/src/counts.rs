//! The Redis counts' layout: key names, hash fields and the checkpoint's
//! text form. The projector writes them, the query service reads them.
//!
//! The owners are split into [`PARTITIONS`] partitions by their id
//! ([`partition_of`]); each partition has its own generation pointer,
//! checkpoint and owner hashes under one Redis Cluster hash tag,
//! `{<prefix>counts:<partition>}`. So every script touches one slot, a batch's
//! deltas for a partition move atomically with that partition's checkpoint
//! (exactly once across a failover: the promoted replica has either a whole
//! script's effect or none of it), and on a cluster the partitions spread
//! over the masters. An owner's counts and the checkpoint they are read with
//! always come from the owner's one partition.
//!
//! - `{<prefix>counts:<p>}:current`: the partition's current generation (`g1`, ...).
//! - `{<prefix>counts:<p>}:<gen>:checkpoint`: `commit/prepare` of the last
//!   event counted in that partition and generation (absent before the first).
//! - `{<prefix>counts:<p>}:<gen>:owner:<uuid>`: a hash of [`FIELDS`], each the
//!   owner's number of live tasks (absent field: 0).

use tasklog_events::Position;
use uuid::Uuid;

use crate::error::ReadModelError;

/// The generation made current when none is.
pub const FIRST_GENERATION: &str = "g1";

/// The fields of an owner's hash: live tasks in total, by status, by priority.
pub const FIELDS: [&str; 8] = [
    "total",
    "todo",
    "in_progress",
    "done",
    "low",
    "medium",
    "high",
    "urgent",
];

/// Reads one owner's counts with the checkpoint of the same generation, in
/// one step (generation, checkpoint and hash are consistent). KEYS[1] is
/// [`CountKeys::current`] of the owner's partition, ARGV[1] its
/// [`CountKeys::base`], ARGV[2] the owner.
/// Returns false before any generation, else `{checkpoint or '', {field,
/// value, ...}}`. Keys are derived inside the script because the generation
/// is only known there; they share KEYS[1]'s hash tag, so on a cluster they
/// are in its slot.
pub const READ_OWNER_SCRIPT: &str = r"
local generation = redis.call('GET', KEYS[1])
if not generation then return false end
local base = ARGV[1] .. generation .. ':'
local checkpoint = redis.call('GET', base .. 'checkpoint')
local counts = redis.call('HGETALL', base .. 'owner:' .. ARGV[2])
return {checkpoint or '', counts}
";

/// How many partitions the counts are split into. Changing it moves owners
/// between partitions: the counts must then be rebuilt
/// (`tasklog-projector rebuild`).
pub const PARTITIONS: u16 = 16;

/// The partition an owner's counts live in: the id's low bits, which are
/// random in both UUIDv4 and UUIDv7 ids.
pub fn partition_of(owner: Uuid) -> u16 {
    // The remainder is below PARTITIONS, so it fits.
    (owner.as_u128() % u128::from(PARTITIONS)) as u16
}

/// Names of one installation's count keys (`prefix` is `REDIS_PREFIX`).
#[derive(Debug, Clone)]
pub struct CountKeys {
    prefix: String,
}

impl CountKeys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// `{<prefix>counts:<p>}:current`.
    pub fn current(&self, partition: u16) -> String {
        format!("{}current", self.base(partition))
    }

    /// `{<prefix>counts:<p>}:`, below which the partition's generations hang.
    pub fn base(&self, partition: u16) -> String {
        format!("{{{}counts:{partition}}}:", self.prefix)
    }

    /// Every key of `generation` in `partition` starts with this.
    pub fn generation_prefix(&self, generation: &str, partition: u16) -> String {
        format!("{}{generation}:", self.base(partition))
    }

    pub fn checkpoint(&self, generation: &str, partition: u16) -> String {
        format!(
            "{}checkpoint",
            self.generation_prefix(generation, partition)
        )
    }

    pub fn owner_prefix(&self, generation: &str, partition: u16) -> String {
        format!("{}owner:", self.generation_prefix(generation, partition))
    }

    /// The owner's hash, in the owner's partition.
    pub fn owner(&self, generation: &str, owner: Uuid) -> String {
        format!(
            "{}{owner}",
            self.owner_prefix(generation, partition_of(owner))
        )
    }
}

/// A checkpoint's stored text (`""`: nothing counted yet).
pub fn checkpoint_text(position: Option<Position>) -> String {
    position.map(|p| p.to_string()).unwrap_or_default()
}

/// The inverse of [`checkpoint_text`].
///
/// # Errors
/// When the text is not a position.
pub fn parse_checkpoint(text: &str) -> Result<Option<Position>, ReadModelError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<Position>()
        .map(Some)
        .map_err(|_| ReadModelError::Corrupt(format!("counts checkpoint {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let keys = CountKeys::new("t:");
        let owner = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cde5);
        assert_eq!(partition_of(owner), 5);
        assert_eq!(keys.current(5), "{t:counts:5}:current");
        assert_eq!(keys.checkpoint("g2", 5), "{t:counts:5}:g2:checkpoint");
        assert_eq!(
            keys.owner("g2", owner),
            format!("{{t:counts:5}}:g2:owner:{owner}")
        );
        assert!(keys.owner("g2", owner).starts_with(&keys.base(5)));
    }

    #[test]
    fn random_owners_spread_over_every_partition() {
        let mut seen = [0_u32; PARTITIONS as usize];
        for _ in 0..2_000 {
            seen[usize::from(partition_of(Uuid::now_v7()))] += 1;
        }
        // 125 expected in each; far from empty or overfull.
        assert!(seen.iter().all(|n| (50..250).contains(n)), "{seen:?}");
    }

    #[test]
    fn a_checkpoint_reads_back_as_written() {
        for p in [None, Some(Position::new(7, u64::MAX))] {
            assert_eq!(parse_checkpoint(&checkpoint_text(p)).ok(), Some(p));
        }
        assert!(parse_checkpoint("7").is_err());
    }
}
