//! `verify`: folds the whole log in memory and compares the result with what
//! the read model and Redis hold, task by task and count by count.
//!
//! Each side is read as one consistent snapshot with its checkpoint (a
//! REPEATABLE READ transaction; one Lua script), and the log is folded to
//! exactly that checkpoint, so a projector running meanwhile causes no false
//! differences.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::PgPool;
use tasklog_events::domain::{TaskId, UserId};
use tasklog_events::{EventStore, Position};
use tasklog_platform::redis::RedisHandle;
use uuid::Uuid;

use crate::counts::{CountsProjection, PartitionSnapshot};
use crate::error::ProjectorError;
use crate::fold::{Counts, TaskRow, counts_of, decode_owned, erase_rows, fold_rows};
use crate::rebuild::{Progress, Quiet};
use tasklog_readmodel::checkpoint::read_checkpoint;
use tasklog_readmodel::counts::partition_of;
use tasklog_readmodel::generation;

const PAGE: usize = 10_000;

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub tasks_position: Option<Position>,
    pub tasks_checked: usize,
    /// `None` when the counts were not checked; else the oldest
    /// partition's checkpoint (each partition is compared at its own).
    pub counts_position: Option<Option<Position>>,
    pub owners_checked: usize,
    /// One line per difference.
    pub differences: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// A stored row, as text where it matters, so even a row no projection could
/// have written (an empty title, say) is compared rather than refused.
#[derive(sqlx::FromRow)]
struct StoredRow {
    id: Uuid,
    owner_id: Uuid,
    title: String,
    description: String,
    status: String,
    priority: String,
    priority_rank: i16,
    due_at: Option<DateTime<Utc>>,
    tags: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    version: i64,
    search_ok: bool,
}

/// Verifies both projections (counts only when `redis` is given).
///
/// # Errors
/// When Postgres, Redis or the log cannot be read.
pub async fn verify(
    db: &PgPool,
    store: &dyn EventStore,
    redis: Option<&RedisHandle>,
) -> Result<VerifyReport, ProjectorError> {
    verify_with_progress(db, store, redis, &mut Quiet).await
}

/// `verify`, telling `progress` its phases and how far the replay is.
///
/// # Errors
/// As `verify`.
pub async fn verify_with_progress(
    db: &PgPool,
    store: &dyn EventStore,
    redis: Option<&RedisHandle>,
    progress: &mut dyn Progress,
) -> Result<VerifyReport, ProjectorError> {
    // Only reads: a read model no one has migrated fails here and says so.
    progress.phase("reading the read model");
    let (tasks_at, stored_rows) = snapshot_rows(db).await?;
    let counts_snapshot = match redis {
        Some(redis) => {
            progress.phase("reading the counts");
            Some(CountsProjection::new(redis.clone()).snapshot().await?)
        }
        None => None,
    };
    let mut report = VerifyReport {
        tasks_position: tasks_at,
        tasks_checked: stored_rows.len(),
        ..VerifyReport::default()
    };
    let partitions: Vec<&PartitionSnapshot> = counts_snapshot
        .iter()
        .flatten()
        .filter_map(Option::as_ref)
        .collect();
    if counts_snapshot.is_some() {
        report.counts_position = Some(
            partitions
                .iter()
                .map(|p| p.checkpoint.position)
                .min()
                .flatten(),
        );
    }

    // Fold to the earliest checkpoint, compare, then on to the next one:
    // the read model's, and each counts partition's.
    enum Target<'a> {
        Tasks,
        Partition(&'a PartitionSnapshot),
    }
    let mut targets: Vec<(Option<Position>, Target)> = vec![(tasks_at, Target::Tasks)];
    for partition in &partitions {
        targets.push((partition.checkpoint.position, Target::Partition(partition)));
    }
    targets.sort_by_key(|(at, _)| *at);

    let keys = redis.map(|r| CountsProjection::new(r.clone()).keys().clone());
    let mut map: HashMap<TaskId, TaskRow> = HashMap::new();
    let mut position: Option<Position> = None;
    progress.phase("replaying the log and comparing");
    let mut replayed = Replayed {
        progress,
        done: 0,
        total: store.approximate_len().await.ok().flatten(),
    };
    for (target, what) in targets {
        let reached = fold_to(store, &mut map, &mut position, target, &mut replayed).await?;
        if reached < target {
            let which = match what {
                Target::Tasks => "read model".to_owned(),
                Target::Partition(p) => format!("counts partition {}", p.partition),
            };
            report.differences.push(format!(
                "{which} checkpoint {} is beyond the log's last event {}",
                show(target),
                show(reached)
            ));
        }
        match what {
            Target::Tasks => compare_rows(&map, &stored_rows, &mut report.differences),
            Target::Partition(snapshot) => {
                let keys = keys.as_ref().ok_or_else(|| {
                    ProjectorError::Corrupt("counts snapshot without Redis".into())
                })?;
                let mut expected = counts_of(map.values());
                expected.retain(|owner, _| partition_of(owner.0) == snapshot.partition);
                report.owners_checked += compare_counts(
                    &expected,
                    &snapshot.hashes,
                    &keys.owner_prefix(&snapshot.checkpoint.generation, snapshot.partition),
                    &mut report.differences,
                );
            }
        }
    }
    if let Some(all) = &counts_snapshot {
        let missing: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_none())
            .map(|(i, _)| i)
            .collect();
        if !missing.is_empty() && (!map.is_empty() || position.is_some()) {
            if missing.len() == all.len() {
                report
                    .differences
                    .push("counts: Redis holds no counts generation".into());
            } else {
                report.differences.push(format!(
                    "counts: partitions {missing:?} hold no counts generation"
                ));
            }
        }
    }
    Ok(report)
}

fn show(p: Option<Position>) -> String {
    p.map_or_else(|| "(start)".to_owned(), |p| p.to_string())
}

async fn snapshot_rows(db: &PgPool) -> Result<(Option<Position>, Vec<StoredRow>), ProjectorError> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let checkpoint = read_checkpoint(&mut tx, false).await?;
    // The checkpoint's own table, not the view: the view resolves from the
    // current catalog, so a swap committed after the read above would show
    // another generation's rows against this checkpoint.
    let rows: Vec<StoredRow> = sqlx::query_as(&format!(
        "SELECT id, owner_id, title, description, status, priority, priority_rank, due_at, tags, \
                created_at, updated_at, completed_at, version, \
                search = lower(title || ' ' || description) AS search_ok \
         FROM {}",
        generation::table(checkpoint.generation)
    ))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((checkpoint.position, rows))
}

/// Folds the log from `position` up to and including `target`.
/// How far the replay is, across every checkpoint it stops at.
struct Replayed<'a> {
    progress: &'a mut dyn Progress,
    done: u64,
    total: Option<u64>,
}

async fn fold_to(
    store: &dyn EventStore,
    map: &mut HashMap<TaskId, TaskRow>,
    position: &mut Option<Position>,
    target: Option<Position>,
    replayed: &mut Replayed<'_>,
) -> Result<Option<Position>, ProjectorError> {
    let head = store.head().await?;
    while *position < target && *position < head {
        let mut page = store.read_all(*position, PAGE).await?;
        if page.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        let keep = page.partition_point(|e| Some(e.position) <= target);
        let stop = keep < page.len();
        page.truncate(keep);
        if let Some(last) = page.last() {
            *position = Some(last.position);
        }
        replayed.done += page.len() as u64;
        let decoded = decode_owned(page);
        fold_rows(map, &decoded.events);
        erase_rows(map, &decoded.erased);
        replayed.progress.replayed(replayed.done, replayed.total);
        if stop {
            break;
        }
    }
    Ok(*position)
}

/// The stored form of an instant: Postgres keeps microseconds.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn opt_micros(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(micros)
}

fn compare_rows(expected: &HashMap<TaskId, TaskRow>, stored: &[StoredRow], out: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for row in stored {
        let id = TaskId(row.id);
        seen.insert(id);
        let Some(want) = expected.get(&id) else {
            out.push(format!(
                "task {id}: in the read model but not live in the log"
            ));
            continue;
        };
        let t = &want.task;
        let mut field = |name: &str, stored: String, log: String| {
            if stored != log {
                out.push(format!("task {id}: {name}: stored {stored}, log {log}"));
            }
        };
        field("owner_id", row.owner_id.to_string(), t.owner.to_string());
        field(
            "title",
            format!("{:?}", row.title),
            format!("{:?}", t.title.as_str()),
        );
        field(
            "description",
            format!("{:?}", row.description),
            format!("{:?}", t.description.as_str()),
        );
        field("status", row.status.clone(), t.status.as_str().to_owned());
        field(
            "priority",
            row.priority.clone(),
            t.priority.as_str().to_owned(),
        );
        field(
            "priority_rank",
            row.priority_rank.to_string(),
            t.priority.rank().to_string(),
        );
        field(
            "due_at",
            format!("{:?}", row.due_at),
            format!("{:?}", opt_micros(t.due_at)),
        );
        let mut tags = row.tags.clone();
        tags.sort();
        field(
            "tags",
            format!("{tags:?}"),
            format!("{:?}", t.tags.to_strings()),
        );
        field(
            "created_at",
            row.created_at.to_rfc3339(),
            micros(t.created_at).to_rfc3339(),
        );
        field(
            "updated_at",
            row.updated_at.to_rfc3339(),
            micros(t.updated_at).to_rfc3339(),
        );
        field(
            "completed_at",
            format!("{:?}", row.completed_at),
            format!("{:?}", opt_micros(t.completed_at)),
        );
        field("version", row.version.to_string(), want.version.to_string());
        if !row.search_ok {
            out.push(format!(
                "task {id}: search is not lower(title || ' ' || description)"
            ));
        }
    }
    let mut missing: Vec<&TaskId> = expected.keys().filter(|id| !seen.contains(id)).collect();
    missing.sort();
    for id in missing {
        out.push(format!(
            "task {id}: live in the log but missing from the read model"
        ));
    }
}

/// Compares expected counts with the stored hashes (keys `prefix<owner>`);
/// returns how many owners were compared.
fn compare_counts(
    expected: &HashMap<UserId, Counts>,
    stored: &HashMap<String, HashMap<String, String>>,
    prefix: &str,
    out: &mut Vec<String>,
) -> usize {
    let mut owners: BTreeSet<String> = expected.keys().map(ToString::to_string).collect();
    for key in stored.keys() {
        match key.strip_prefix(prefix) {
            Some(owner) => {
                owners.insert(owner.to_owned());
            }
            None => out.push(format!("counts: unexpected key {key}")),
        }
    }
    for owner in &owners {
        let want = Uuid::parse_str(owner)
            .ok()
            .and_then(|u| expected.get(&UserId(u)).copied())
            .unwrap_or_default();
        let have = stored.get(&format!("{prefix}{owner}"));
        for (field, want) in Counts::FIELDS.iter().zip(want.to_array()) {
            let raw = have.and_then(|h| h.get(*field));
            let got = raw.map_or(Ok(0), |v| v.parse::<i64>());
            match got {
                Ok(got) if got == want => {}
                Ok(got) => out.push(format!(
                    "counts owner {owner}: {field}: stored {got}, log {want}"
                )),
                Err(_) => out.push(format!(
                    "counts owner {owner}: {field}: stored {raw:?} is not a number, log {want}"
                )),
            }
        }
    }
    owners.len()
}
