//! The projector's Redis counts (layout: `tasklog_readmodel::counts`): one
//! owner's hash and the checkpoint of its partition's generation, read
//! together in one script so the pair is consistent (the projector writes
//! both atomically).

use std::collections::HashMap;

use redis::Value;
use tasklog_events::Position;
use tasklog_platform::redis::{RedisHandle, RedisUnavailable};
use tasklog_readmodel::counts::{CountKeys, READ_OWNER_SCRIPT, parse_checkpoint, partition_of};
use uuid::Uuid;

/// One owner's counts and how far into the log they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCounts {
    pub checkpoint: Position,
    fields: HashMap<String, i64>,
}

impl RedisCounts {
    /// A counter; absent (no task ever counted there) is 0.
    pub fn get(&self, field: &str) -> u64 {
        self.fields
            .get(field)
            .map_or(0, |v| u64::try_from(*v).unwrap_or(0))
    }
}

/// The owner's counts, or `None` when the projector has not counted
/// (no generation or checkpoint yet).
///
/// # Errors
/// When Redis is down, slow, or holds what the projector would not write.
pub async fn read_redis_counts(
    redis: &RedisHandle,
    owner: Uuid,
) -> Result<Option<RedisCounts>, RedisUnavailable> {
    let keys = CountKeys::new(redis.prefix());
    let partition = partition_of(owner);
    let (current, base) = (keys.current(partition), keys.base(partition));
    let reply: Value = redis
        .run(|mut c| async move {
            redis::Script::new(READ_OWNER_SCRIPT)
                .key(current)
                .arg(base)
                .arg(owner.to_string())
                .invoke_async(&mut c)
                .await
        })
        .await?;
    Ok(parse_reply(&reply))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Anything unexpected reads as "not counted", so stats fall back to Postgres.
fn parse_reply(reply: &Value) -> Option<RedisCounts> {
    let Value::Array(items) = reply else {
        return None;
    };
    let [checkpoint, counts] = items.as_slice() else {
        return None;
    };
    let checkpoint: Position = parse_checkpoint(&text(checkpoint)?).ok()??;
    let mut fields = HashMap::new();
    match counts {
        Value::Array(flat) => {
            for pair in flat.chunks(2) {
                if let [k, v] = pair {
                    let value: i64 = text(v)?.parse().ok()?;
                    fields.insert(text(k)?, value);
                }
            }
        }
        Value::Map(map) => {
            for (k, v) in map {
                fields.insert(text(k)?, text(v)?.parse().ok()?);
            }
        }
        _ => return None,
    }
    Some(RedisCounts { checkpoint, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_reply_reads_as_checkpoint_and_counters() {
        let reply = Value::Array(vec![
            bulk("42/7"),
            Value::Array(vec![bulk("total"), bulk("3"), bulk("done"), bulk("1")]),
        ]);
        let counts = parse_reply(&reply).unwrap();
        assert_eq!(counts.checkpoint, Position::new(42, 7));
        assert_eq!(counts.get("total"), 3);
        assert_eq!(counts.get("done"), 1);
        assert_eq!(counts.get("urgent"), 0);
    }

    #[test]
    fn no_generation_or_checkpoint_or_garbage_is_not_counted() {
        assert_eq!(parse_reply(&Value::Nil), None);
        assert_eq!(
            parse_reply(&Value::Array(vec![bulk(""), Value::Array(vec![])])),
            None
        );
        assert_eq!(
            parse_reply(&Value::Array(vec![
                bulk("1/1"),
                Value::Array(vec![bulk("total"), bulk("many")])
            ])),
            None
        );
    }
}
