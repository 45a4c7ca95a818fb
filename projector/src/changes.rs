//! The change feed as a projection: every task event again, under its owner,
//! in `readmodel.changes` (readmodel migration 0004 says why there). Each batch's rows,
//! its checkpoint and its notice on `tasklog_changes` go in one statement,
//! written only if the stored checkpoint is still the one the batch was read
//! after, so a replay or a second writer never writes a change twice.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tasklog_events::{EventStore, Position, RecordedEvent};
use uuid::Uuid;

use tasklog_readmodel::changes::{CHANGES, CHANNEL};
use tasklog_readmodel::checkpoint::{from_db, to_db};
use tasklog_readmodel::notice::{Notice, Touched};

use crate::error::ProjectorError;
use crate::fold::{Decoded, decode_batch};
use crate::owners::resolve_owners;
use crate::projection::{Applied, Projection, after, report_skipped};

/// A batch's change rows and the checkpoint's compare-and-set, in one
/// statement (so one implicit transaction); the NOTIFY goes on commit.
macro_rules! write_changes {
    () => {
        "WITH moved AS ( \
             UPDATE readmodel.checkpoints \
             SET commit_position = $2, prepare_position = $3, updated_at = now() \
             WHERE projection = $1 AND commit_position = $4 AND prepare_position = $5 \
             RETURNING 1), \
         inserted AS ( \
             INSERT INTO readmodel.changes (owner_id, commit_position, prepare_position, \
                 task_id, version, event_type, data, actor_id, recorded_at) \
             SELECT * FROM unnest($6::uuid[], $7::int8[], $8::int8[], $9::uuid[], \
                 $10::int8[], $11::text[], $12::jsonb[], $13::uuid[], $14::timestamptz[]) \
             WHERE EXISTS (SELECT FROM moved) \
             ON CONFLICT DO NOTHING)"
    };
}

const WRITE: &str = concat!(write_changes!(), " SELECT pg_notify($15, $16) FROM moved");

/// `WRITE`, and every change of the owners erased in the batch ($17) goes.
const WRITE_AND_ERASE: &str = concat!(
    write_changes!(),
    ", erased AS (DELETE FROM readmodel.changes WHERE owner_id = ANY($17) \
       AND EXISTS (SELECT FROM moved)) \
     SELECT pg_notify($15, $16) FROM moved"
);

/// The change rows of a batch as column arrays, for one `unnest` insert.
#[derive(Default)]
struct ChangeArrays {
    owner: Vec<Uuid>,
    commit: Vec<i64>,
    prepare: Vec<i64>,
    task: Vec<Uuid>,
    version: Vec<i64>,
    kind: Vec<&'static str>,
    data: Vec<Value>,
    actor: Vec<Option<Uuid>>,
    recorded_at: Vec<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct ChangesProjection {
    db: PgPool,
}

impl ChangesProjection {
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    async fn stored(&self) -> Result<Option<Position>, ProjectorError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT commit_position, prepare_position FROM readmodel.checkpoints \
             WHERE projection = $1",
        )
        .bind(CHANGES)
        .fetch_optional(&self.db)
        .await?;
        let (commit, prepare) = row.ok_or_else(|| {
            ProjectorError::Corrupt("readmodel.checkpoints has no 'changes' row".into())
        })?;
        Ok(from_db(commit, prepare))
    }
}

#[async_trait]
impl Projection for ChangesProjection {
    type Checkpoint = Option<Position>;

    fn name(&self) -> &'static str {
        CHANGES
    }

    fn position(checkpoint: &Option<Position>) -> Option<Position> {
        *checkpoint
    }

    async fn checkpoint(&self) -> Result<Option<Position>, ProjectorError> {
        self.stored().await
    }

    async fn apply(
        &self,
        store: &dyn EventStore,
        expected: &Option<Position>,
        events: &[RecordedEvent],
    ) -> Result<Applied<Option<Position>>, ProjectorError> {
        let events = after(events, *expected);
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(Applied::Done(*expected));
        };
        let Decoded {
            events: mut decoded,
            skipped,
            erased,
            ..
        } = decode_batch(events);
        report_skipped(CHANGES, &skipped);
        if decoded.iter().any(|e| e.owner.is_none()) {
            resolve_owners(store, &mut decoded).await?;
        }
        let mut rows = ChangeArrays::default();
        let erased: Vec<Uuid> = erased.iter().map(|o| o.0).collect();
        let mut owners: BTreeSet<Uuid> = erased.iter().copied().collect();
        // decode_batch keeps the batch's order and skips only undecodable events.
        let recorded = events.iter().filter(|r| {
            decoded
                .binary_search_by(|d| d.position.cmp(&r.position))
                .is_ok()
        });
        for (e, r) in decoded.iter().zip(recorded) {
            let Some(owner) = e.owner else { continue };
            let (commit, prepare) = to_db(Some(e.position));
            owners.insert(owner.0);
            rows.owner.push(owner.0);
            rows.commit.push(commit);
            rows.prepare.push(prepare);
            rows.task.push(e.task_id.0);
            rows.version
                .push(i64::try_from(e.version).unwrap_or(i64::MAX));
            rows.kind.push(e.event.event_type());
            rows.data.push(e.event.to_data());
            rows.actor.push(r.metadata.actor_id);
            rows.recorded_at.push(r.recorded_at);
        }
        let (old_commit, old_prepare) = to_db(*expected);
        let (commit, prepare) = to_db(Some(last));
        let payload = Notice {
            commit: last.commit,
            touched: Touched::Owners(owners),
        }
        .payload();
        // Only a batch that erases carries the DELETE, planned for its own
        // arrays (a plan kept from a young table would scan it whole); the
        // usual batch keeps its plan.
        let erasing = !erased.is_empty();
        let sql = if erasing { WRITE_AND_ERASE } else { WRITE };
        let moved = sqlx::query(sql)
            .persistent(!erasing)
            .bind(CHANGES)
            .bind(commit)
            .bind(prepare)
            .bind(old_commit)
            .bind(old_prepare)
            .bind(&rows.owner)
            .bind(&rows.commit)
            .bind(&rows.prepare)
            .bind(&rows.task)
            .bind(&rows.version)
            .bind(&rows.kind)
            .bind(&rows.data)
            .bind(&rows.actor)
            .bind(&rows.recorded_at)
            .bind(CHANNEL)
            .bind(payload)
            .bind(&erased)
            .fetch_optional(&self.db)
            .await?;
        if moved.is_some() {
            return Ok(Applied::Done(Some(last)));
        }
        Ok(Applied::Moved(self.stored().await?))
    }
}
