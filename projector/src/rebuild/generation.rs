//! The new generation's table: filled page by page from the log (one
//! read-and-apply loop, used while catching up and inside the swap), indexed,
//! and the old generations dropped.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{Connection, PgConnection, PgPool};
use tasklog_events::domain::TaskId;
use tasklog_events::{EventStore, Position, RecordedEvent};
use tasklog_readmodel::{TASKS, generation};

use super::{CATCH_UP_PAGE, HELD_BACK};
use crate::error::ProjectorError;
use crate::fold::{Decoded, TaskRow, decode_batch, fold_rows, touched_ids};
use crate::projection::report_skipped;
use crate::rows;

/// Reads the page after `position` and applies it inside `conn`'s
/// transaction (changes recorded in `overlay`); the page's last position,
/// or `None` when the log has nothing after `position` yet.
pub(super) async fn apply_next_page(
    conn: &mut PgConnection,
    store: &dyn EventStore,
    generation: i32,
    base: &HashMap<TaskId, TaskRow>,
    overlay: &mut Overlay,
    position: Option<Position>,
) -> Result<Option<Position>, ProjectorError> {
    let page = store.read_all(position, CATCH_UP_PAGE).await?;
    let Some(last) = page.last().map(|e| e.position) else {
        return Ok(None);
    };
    apply_to_generation(conn, generation, base, overlay, &page).await?;
    Ok(Some(last))
}

/// Brings the new generation to the log's head, one committed page at a time.
pub(super) async fn catch_up(
    db: &PgPool,
    store: &dyn EventStore,
    generation: i32,
    map: &mut HashMap<TaskId, TaskRow>,
    mut position: Option<Position>,
) -> Result<Option<Position>, ProjectorError> {
    while position < store.head().await? {
        let mut overlay = Overlay::default();
        let mut tx = db.begin().await?;
        match apply_next_page(&mut tx, store, generation, map, &mut overlay, position).await? {
            Some(last) => {
                tx.commit().await?;
                overlay.merge_into(map);
                position = Some(last);
            }
            None => tokio::time::sleep(HELD_BACK).await,
        }
    }
    Ok(position)
}

/// Rows changed by a transaction not yet committed, over the in-memory map
/// (`None`: deleted). Merged into the map only after the commit, so a rolled
/// back attempt leaves the map exact.
#[derive(Default)]
pub(super) struct Overlay {
    rows: HashMap<TaskId, Option<TaskRow>>,
}

impl Overlay {
    pub(super) fn get<'a>(
        &'a self,
        base: &'a HashMap<TaskId, TaskRow>,
        id: &TaskId,
    ) -> Option<&'a TaskRow> {
        match self.rows.get(id) {
            Some(row) => row.as_ref(),
            None => base.get(id),
        }
    }

    pub(super) fn merge_into(self, base: &mut HashMap<TaskId, TaskRow>) {
        for (id, row) in self.rows {
            match row {
                Some(row) => {
                    base.insert(id, row);
                }
                None => {
                    base.remove(&id);
                }
            }
        }
    }
}

/// Applies `page` to the generation table inside the caller's transaction,
/// folding against the in-memory rows (map under overlay); records the
/// changes in `overlay`.
pub(super) async fn apply_to_generation(
    conn: &mut PgConnection,
    generation: i32,
    base: &HashMap<TaskId, TaskRow>,
    overlay: &mut Overlay,
    page: &[RecordedEvent],
) -> Result<(), ProjectorError> {
    let Decoded {
        events: decoded,
        skipped,
        erased,
        ..
    } = decode_batch(page);
    report_skipped(TASKS, &skipped);
    let mut scratch: HashMap<TaskId, TaskRow> = touched_ids(&decoded)
        .into_iter()
        .filter_map(|id| overlay.get(base, &id).map(|row| (id, row.clone())))
        .collect();
    let changes = fold_rows(&mut scratch, &decoded);
    let upserts: Vec<&TaskRow> = changes
        .upserts
        .iter()
        .filter_map(|id| scratch.get(id))
        .collect();
    rows::upsert(conn, generation, &upserts).await?;
    rows::delete(conn, generation, &changes.deletes).await?;
    for id in changes.upserts {
        overlay.rows.insert(id, scratch.remove(&id));
    }
    for id in changes.deletes {
        overlay.rows.insert(id, None);
    }
    if !erased.is_empty() {
        let gone: Vec<TaskId> = base
            .iter()
            .filter(|(id, _)| !overlay.rows.contains_key(id))
            .chain(
                overlay
                    .rows
                    .iter()
                    .filter_map(|(id, r)| r.as_ref().map(|r| (id, r))),
            )
            .filter(|(_, row)| erased.contains(&row.task.owner))
            .map(|(id, _)| *id)
            .collect();
        rows::delete(conn, generation, &gone).await?;
        for id in gone {
            overlay.rows.insert(id, None);
        }
    }
    Ok(())
}

/// Builds the new generation's indexes: the primary key first (it locks the
/// table), then the rest on `parallelism` connections at once.
pub(super) async fn build_indexes(
    db: &PgPool,
    generation: i32,
    parallelism: usize,
) -> Result<(), ProjectorError> {
    let statements = generation::index_statements(db, generation).await?;
    let mut statements = statements.into_iter();
    if let Some(primary_key) = statements.next() {
        let mut conn = db.acquire().await?;
        sqlx::query("SET maintenance_work_mem = '256MB'")
            .execute(&mut *conn)
            .await?;
        sqlx::query(&primary_key).execute(&mut *conn).await?;
    }
    let rest: Vec<String> = statements.collect();
    let queue = Arc::new(std::sync::Mutex::new(rest));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallelism {
        let db = db.clone();
        let queue = queue.clone();
        workers.spawn(async move {
            let mut conn = db.acquire().await?;
            sqlx::query("SET maintenance_work_mem = '256MB'")
                .execute(&mut *conn)
                .await?;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(statement) = next else {
                    break;
                };
                sqlx::query(&statement).execute(&mut *conn).await?;
            }
            // The pooled session must not keep the raised memory setting.
            sqlx::query("RESET maintenance_work_mem")
                .execute(&mut *conn)
                .await?;
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| ProjectorError::TaskFailed(format!("an index build: {e}")))??;
    }
    sqlx::query(&format!("ANALYZE {}", rows::table(generation)))
        .execute(db)
        .await?;
    Ok(())
}

/// Drops every generation table but `keep`. With `wait`, waits (bounded) for
/// readers still on an old table; without, a busy table is left for later.
pub(super) async fn drop_generations(
    db: &PgPool,
    keep: &[i32],
    wait: bool,
) -> Result<(), ProjectorError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables \
         WHERE schemaname = 'readmodel' AND tablename ~ '^tasks_g[0-9]+$'",
    )
    .fetch_all(db)
    .await?;
    for table in tables {
        let Some(generation) = table
            .strip_prefix("tasks_g")
            .and_then(|g| g.parse::<i32>().ok())
        else {
            continue;
        };
        if keep.contains(&generation) {
            continue;
        }
        let mut conn = db.acquire().await?;
        let timeout = if wait { "30s" } else { "2s" };
        let mut tx = conn.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{timeout}'"))
            .execute(&mut *tx)
            .await?;
        match sqlx::query(&format!("DROP TABLE IF EXISTS {}", rows::table(generation)))
            .execute(&mut *tx)
            .await
        {
            Ok(_) => tx.commit().await?,
            Err(e) => {
                tracing::warn!(table, error = %e, "could not drop an old generation; the next rebuild will");
            }
        }
    }
    Ok(())
}
