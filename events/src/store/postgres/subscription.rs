//! Reading the whole log in order without gaps, and tailing it live.
//!
//! Rows are read in `(tx_id, position)` order and only from transactions older
//! than the oldest one still running (`pg_snapshot_xmin`). Every transaction
//! below that horizon has finished, so nothing can later appear behind a
//! reader's checkpoint; a naive `position > checkpoint` reader loses events
//! whose identity value was taken before, but committed after, a later one.

use std::time::Duration;

use futures::{TryStreamExt, stream};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::{EVENT_COLUMNS, NOTIFY_CHANNEL, recorded_event, to_i64};
use crate::store::{EventBatches, Position, RecordedEvent, StoreError};

pub(super) struct Page {
    pub events: Vec<RecordedEvent>,
}

/// Reads up to `max` events after `after` (more if needed to finish the last
/// transaction, so a batch never ends inside one commit).
pub(super) async fn read_committed(
    pool: &PgPool,
    after: Position,
    max: usize,
) -> Result<Page, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM eventlog.events \
         WHERE (tx_id, position) > (($1::bigint >> 16)::text::xid8, $2) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id, position LIMIT $3"
    );
    let limit = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
    // Each row is decoded as it arrives and dropped: `fetch_all` held a whole
    // page of raw rows beside their decoded events (a catch-up's memory peak).
    let mut events = Vec::with_capacity(max.min(BATCH));
    let mut rows = sqlx::query(&sql)
        .bind(to_i64(after.commit))
        .bind(to_i64(after.prepare))
        .bind(limit)
        .fetch(pool);
    while let Some(row) = rows.try_next().await.map_err(StoreError::unavailable)? {
        events.push(recorded_event(&row)?);
    }
    if events.len() == max {
        if let Some(last) = events.last().map(|e| e.position) {
            // The whole of this transaction is visible (it is below the horizon);
            // take its remaining events too.
            let rest_sql = format!(
                "SELECT {EVENT_COLUMNS} FROM eventlog.events \
                 WHERE tx_id = ($1::bigint >> 16)::text::xid8 AND position > $2 ORDER BY position"
            );
            let rows = sqlx::query(&rest_sql)
                .bind(to_i64(last.commit))
                .bind(to_i64(last.prepare))
                .fetch_all(pool)
                .await
                .map_err(StoreError::unavailable)?;
            for row in &rows {
                events.push(recorded_event(row)?);
            }
        }
    }
    Ok(Page { events })
}

/// True when committed events lie beyond `after` but are held back by an older
/// transaction still running: worth looking again soon rather than at the next poll.
///
/// `ORDER BY ... LIMIT 1`, not `EXISTS`: the planner cannot estimate the row
/// comparison, guesses that most rows match and scans the whole table for
/// `EXISTS` (9 to 215 ms at 180k events, the top consumer of Postgres CPU in a
/// read-only benchmark); the ordered form walks `events_log_order` (0.08 ms).
async fn held_back(pool: &PgPool, after: Position) -> bool {
    sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM eventlog.events \
         WHERE (tx_id, position) > (($1::bigint >> 16)::text::xid8, $2) \
         ORDER BY tx_id, position LIMIT 1",
    )
    .bind(to_i64(after.commit))
    .bind(to_i64(after.prepare))
    .fetch_optional(pool)
    .await
    .is_ok_and(|row| row.is_some())
}

const BATCH: usize = 1000;
const FIRST_RETRY: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// While held back, look again at least this often: the holder is usually a
/// neighbouring append committing within milliseconds, and every millisecond
/// slept here is projection lag. Its commit's NOTIFY ends the wait earlier.
const HELD_BACK_RETRY: Duration = Duration::from_millis(10);
/// Held back longer than this, the holder is a long transaction somewhere on
/// the server: back off towards the poll interval instead of spinning.
const HELD_BACK_PATIENCE: Duration = Duration::from_secs(1);
/// A busy tail reads again no sooner than this after its last read began.
/// Under load every append's NOTIFY would wake it for one commit's events,
/// and each read is then applied by every projection, each batch with its
/// own statements and commit: waiting lets one read take what several
/// commits added (bench/README.md, "Eighth session": creates/s 3,463-3,775
/// to 4,898-4,901, lag p99 at 2,400 creates/s 16-21 to 21 ms).
const READ_SPACING: Duration = Duration::from_millis(10);
/// A read that found at least this many events (but not a full page) shows
/// a busy log; one that found fewer, a quiet one, whose next event is read
/// as soon as it is announced (a live feed at 200 writes/s would otherwise
/// wait about 6 ms longer per event).
const BUSY_READ: usize = 4;

/// When a tail may read again after a read, begun at `started`, that found
/// `found` events: at once when it is behind (a full page) or the log is
/// quiet, else after `READ_SPACING`.
fn next_read_at(started: tokio::time::Instant, found: usize) -> Option<tokio::time::Instant> {
    (BUSY_READ..BATCH)
        .contains(&found)
        .then(|| started + READ_SPACING)
}

struct Tail {
    pool: PgPool,
    after: Position,
    poll: Duration,
    listener: Option<PgListener>,
    backoff: Duration,
    /// No read before this (`next_read_at`).
    next_read: Option<tokio::time::Instant>,
}

impl Tail {
    async fn listen(&mut self) {
        if self.listener.is_some() {
            return;
        }
        match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Ok(()) => self.listener = Some(listener),
                Err(e) => tracing::warn!(error = %e, "LISTEN failed; polling only"),
            },
            Err(e) => tracing::warn!(error = %e, "no listener connection; polling only"),
        }
    }

    /// Sleeps until a notification arrives or `timeout` passes.
    async fn wait(&mut self, timeout: Duration) {
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(timeout).await;
            return;
        };
        tokio::select! {
            received = listener.recv() => {
                if received.is_err() {
                    // Reconnect on the next round; polling covers the gap.
                    self.listener = None;
                    return;
                }
                // One read serves every notification already queued.
                while listener.next_buffered().is_some() {}
            }
            () = tokio::time::sleep(timeout) => {}
        }
    }

    async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut quick = FIRST_RETRY;
        let mut held_since: Option<tokio::time::Instant> = None;
        loop {
            self.listen().await;
            if let Some(at) = self.next_read {
                tokio::time::sleep_until(at).await;
            }
            let started = tokio::time::Instant::now();
            match read_committed(&self.pool, self.after, BATCH).await {
                Ok(page) if !page.events.is_empty() => {
                    self.backoff = FIRST_RETRY;
                    self.next_read = next_read_at(started, page.events.len());
                    if let Some(last) = page.events.last() {
                        self.after = last.position;
                    }
                    return Ok(page.events);
                }
                Ok(_) => {
                    self.backoff = FIRST_RETRY;
                    if held_back(&self.pool, self.after).await {
                        let since = *held_since.get_or_insert_with(tokio::time::Instant::now);
                        self.wait(quick).await;
                        let cap = if since.elapsed() < HELD_BACK_PATIENCE {
                            HELD_BACK_RETRY
                        } else {
                            self.poll
                        };
                        quick = (quick * 2).min(cap);
                    } else {
                        quick = FIRST_RETRY;
                        held_since = None;
                        let poll = self.poll;
                        self.wait(poll).await;
                    }
                }
                Err(e) => {
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2)
                        .min(MAX_BACKOFF)
                        .max(Duration::from_millis(50));
                    return Err(e);
                }
            }
        }
    }
}

pub(super) fn subscribe(pool: PgPool, after: Position, poll: Duration) -> EventBatches {
    let tail = Tail {
        pool,
        after,
        poll,
        listener: None,
        backoff: FIRST_RETRY,
        next_read: None,
    };
    Box::pin(stream::unfold(tail, |mut tail| async move {
        let batch = tail.next_batch().await;
        Some((batch, tail))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_log_is_read_again_at_once_and_a_busy_one_after_the_spacing() {
        // Given a read that began now
        let started = tokio::time::Instant::now();
        // When it found one commit of a quiet log, or a few events short of busy
        // Then the next read may begin as soon as an append is announced
        assert_eq!(next_read_at(started, 1), None);
        assert_eq!(next_read_at(started, BUSY_READ - 1), None);
        // When it found a busy log's events: after the spacing
        assert_eq!(
            next_read_at(started, BUSY_READ),
            Some(started + READ_SPACING)
        );
        assert_eq!(
            next_read_at(started, BATCH - 1),
            Some(started + READ_SPACING)
        );
        // When it found a full page, the tail is behind: at once
        assert_eq!(next_read_at(started, BATCH), None);
    }
}
