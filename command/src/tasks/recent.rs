//! The states of recently written tasks, so a change to one of them need not
//! read and open its whole stream first.
//!
//! An entry is a guess, never a source of truth: a change decided on it is
//! appended with the entry's version as the expected one, so the log refuses
//! it if anything was appended since (another instance, a batch, a revert).
//! Anything but a clean append (a conflict, a refusal, a precondition the
//! entry does not meet, a change that changes nothing) is decided again on
//! the stream as read (`change.rs`).

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use tasklog_events::domain::{TaskId, TaskState, UserId};

/// A task as of one version of its stream.
#[derive(Debug, Clone)]
pub struct Recent {
    pub state: TaskState,
    pub version: u64,
    pub position: u64,
}

#[derive(Clone)]
struct ByTextSize;

impl Weighter<TaskId, Arc<Recent>> for ByTextSize {
    fn weight(&self, _: &TaskId, recent: &Arc<Recent>) -> u64 {
        let text = match &recent.state {
            TaskState::Live(t) | TaskState::Deleted(t) => {
                t.title.as_str().len()
                    + t.description.as_str().len()
                    + t.tags.iter().map(|tag| tag.as_str().len()).sum::<usize>()
            }
            TaskState::Absent => 0,
        };
        // The fixed part of an entry (ids, times, enums, the map's slot).
        u64::try_from(text).unwrap_or(u64::MAX).saturating_add(256)
    }
}

/// Bounded by bytes of task text (`TASK_STATE_CACHE_MB`); 0 keeps nothing.
pub struct RecentTasks {
    cache: Option<Cache<TaskId, Arc<Recent>, ByTextSize>>,
}

impl RecentTasks {
    pub fn with_capacity_bytes(bytes: u64) -> Self {
        let cache = (bytes > 0).then(|| {
            // About 1 KiB per entry on average, as the weighter counts.
            let items = usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(16);
            Cache::with_weighter(items, bytes, ByTextSize)
        });
        Self { cache }
    }

    /// Keeps nothing: every change reads its stream.
    pub fn disabled() -> Self {
        Self { cache: None }
    }

    pub fn get(&self, id: TaskId) -> Option<Arc<Recent>> {
        let hit = self.cache.as_ref()?.get(&id);
        metrics::counter!("tasklog_task_state_cache_total",
            "result" => if hit.is_some() { "hit" } else { "miss" })
        .increment(1);
        hit
    }

    /// Remembers `recent` unless a later version of the task is known.
    pub fn remember(&self, id: TaskId, recent: Arc<Recent>) {
        let Some(cache) = &self.cache else { return };
        if cache
            .peek(&id)
            .is_some_and(|known| known.version > recent.version)
        {
            return;
        }
        cache.insert(id, recent);
    }

    pub fn forget(&self, id: TaskId) {
        if let Some(cache) = &self.cache {
            cache.remove(&id);
        }
    }

    /// Drops every task of `owner`: an erased user's text leaves memory too.
    pub fn forget_owner(&self, owner: UserId) {
        if let Some(cache) = &self.cache {
            cache.retain(|_, recent| match &recent.state {
                TaskState::Live(t) | TaskState::Deleted(t) => t.owner != owner,
                TaskState::Absent => true,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tasklog_events::domain::{Priority, Status, Tags, Task, TaskDescription, TaskTitle};
    use uuid::Uuid;

    use super::*;

    fn task(owner: UserId) -> (TaskId, TaskState) {
        let id = TaskId(Uuid::now_v7());
        let now = Utc::now();
        let task = Task {
            id,
            owner,
            title: TaskTitle::parse("t").unwrap(),
            description: TaskDescription::parse("").unwrap(),
            status: Status::Todo,
            priority: Priority::Medium,
            due_at: None,
            tags: Tags::parse::<&str>(&[]).unwrap(),
            created_at: now,
            updated_at: now,
            completed_at: None,
        };
        (id, TaskState::Live(task))
    }

    fn at(state: &TaskState, version: u64) -> Arc<Recent> {
        Arc::new(Recent {
            state: state.clone(),
            version,
            position: version,
        })
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let recent = RecentTasks::with_capacity_bytes(1 << 20);
        let (id, state) = task(UserId(Uuid::now_v7()));
        recent.remember(id, at(&state, 3));
        recent.remember(id, at(&state, 2));
        assert_eq!(recent.get(id).map(|r| r.version), Some(3));
        recent.remember(id, at(&state, 4));
        assert_eq!(recent.get(id).map(|r| r.version), Some(4));
    }

    #[test]
    fn forgetting_an_owner_drops_only_that_owners_tasks() {
        let recent = RecentTasks::with_capacity_bytes(1 << 20);
        let (erased, kept) = (UserId(Uuid::now_v7()), UserId(Uuid::now_v7()));
        let (a, state_a) = task(erased);
        let (b, state_b) = task(kept);
        recent.remember(a, at(&state_a, 0));
        recent.remember(b, at(&state_b, 0));
        recent.forget_owner(erased);
        assert!(recent.get(a).is_none());
        assert!(recent.get(b).is_some());
    }

    #[test]
    fn a_disabled_cache_keeps_nothing() {
        let recent = RecentTasks::disabled();
        let (id, state) = task(UserId(Uuid::now_v7()));
        recent.remember(id, at(&state, 0));
        assert!(recent.get(id).is_none());
        let zero = RecentTasks::with_capacity_bytes(0);
        zero.remember(id, at(&state, 0));
        assert!(zero.get(id).is_none());
    }
}
