//! The Redis counts' layout: key names, hash fields and the checkpoint's
//! text form. The projector writes them, the query service reads them.
//!
//! Every key carries one Redis Cluster hash tag, `{<prefix>counts}`, so
//! every script touches one slot: on a cluster the counts live on one
//! master, and one script still moves a batch's deltas and its checkpoint
//! atomically (exactly once across a failover: the replica promoted has
//! either the whole script's effect or none of it).
//!
//! - `{<prefix>counts}:current`: the name of the current generation (`g1`, ...).
//! - `{<prefix>counts}:<gen>:checkpoint`: `commit/prepare` of the last event
//!   counted in that generation (absent before the first).
//! - `{<prefix>counts}:<gen>:owner:<uuid>`: a hash of [`FIELDS`], each the
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
/// [`CountKeys::current`], ARGV[1] [`CountKeys::base`], ARGV[2] the owner.
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

    /// `{<prefix>counts}:current`.
    pub fn current(&self) -> String {
        format!("{}current", self.base())
    }

    /// `{<prefix>counts}:`, below which generations hang.
    pub fn base(&self) -> String {
        format!("{{{}counts}}:", self.prefix)
    }

    /// Every key of `generation` starts with this.
    pub fn generation_prefix(&self, generation: &str) -> String {
        format!("{}{generation}:", self.base())
    }

    pub fn checkpoint(&self, generation: &str) -> String {
        format!("{}checkpoint", self.generation_prefix(generation))
    }

    pub fn owner_prefix(&self, generation: &str) -> String {
        format!("{}owner:", self.generation_prefix(generation))
    }

    pub fn owner(&self, generation: &str, owner: Uuid) -> String {
        format!("{}{owner}", self.owner_prefix(generation))
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
        let owner = Uuid::nil();
        assert_eq!(keys.current(), "{t:counts}:current");
        assert_eq!(keys.checkpoint("g2"), "{t:counts}:g2:checkpoint");
        assert_eq!(
            keys.owner("g2", owner),
            format!("{{t:counts}}:g2:owner:{owner}")
        );
        assert!(keys.owner("g2", owner).starts_with(&keys.base()));
    }

    #[test]
    fn a_checkpoint_reads_back_as_written() {
        for p in [None, Some(Position::new(7, u64::MAX))] {
            assert_eq!(parse_checkpoint(&checkpoint_text(p)).ok(), Some(p));
        }
        assert!(parse_checkpoint("7").is_err());
    }
}
