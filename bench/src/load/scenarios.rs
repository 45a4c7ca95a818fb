//! One step of each scenario, as a worker makes it: pick a user and a task,
//! send the request, record what came back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{Api, User};
use super::lag::LagTracker;
use super::options::{LagProbe, ListMix, Scenario};
use super::stats::{Outcome, Stats};

/// Titles draw from these words, so a search for one of them finds tasks.
pub const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];
const TAGS: &[&str] = &["home", "work", "bench", "later"];
const PRIORITIES: &[&str] = &["low", "medium", "high", "urgent"];
const STATUSES: &[&str] = &["todo", "in_progress", "done"];
/// Tasks a worker remembers per user from its own creates (mixed scenario).
const MAX_TASKS_PER_SLOT: usize = 1000;

#[derive(Debug, Clone, Copy)]
pub struct Task {
    pub id: Uuid,
    pub version: u64,
}

/// A user as one worker sees it: the tasks only this worker touches, and the
/// list walk in progress.
pub struct Slot {
    pub user: User,
    pub tasks: Vec<Task>,
    walk: Option<Walk>,
}

struct Walk {
    params: Vec<(&'static str, String)>,
    cursor: String,
    pages: usize,
}

impl Slot {
    pub fn new(user: User, tasks: Vec<Task>) -> Self {
        Self {
            user,
            tasks,
            walk: None,
        }
    }
}

/// What every worker shares.
pub struct Context {
    pub api: Api,
    pub scenario: Scenario,
    pub if_match_share: f64,
    pub conflict_share: f64,
    pub max_pages: usize,
    pub list_mix: ListMix,
    pub lag_probe: LagProbe,
    pub lag: Arc<LagTracker>,
}

pub struct Worker {
    slots: Vec<Slot>,
    next: usize,
    rng: StdRng,
    counter: u64,
}

fn outcome(status: Option<StatusCode>, wanted: StatusCode) -> Outcome {
    match status {
        None => Outcome::Transport,
        Some(s) if s == wanted => Outcome::Ok,
        Some(s) => Outcome::Status(s.as_u16()),
    }
}

impl Worker {
    pub fn new(slots: Vec<Slot>, seed: u64) -> Self {
        Self {
            slots,
            next: 0,
            rng: StdRng::seed_from_u64(seed),
            counter: 0,
        }
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.rng.random_range(0..WORDS.len())]
    }

    /// A new task's body: a searchable title, a random priority and a tag.
    pub fn new_task_body(&mut self) -> Value {
        self.counter += 1;
        let title = format!("{} {} {}", self.word(), self.word(), self.counter);
        let priority = PRIORITIES[self.rng.random_range(0..PRIORITIES.len())];
        let tag = TAGS[self.rng.random_range(0..TAGS.len())];
        json!({"title": title, "description": "made by tasklog-bench", "priority": priority, "tags": [tag]})
    }

    /// One request (two for a lag read-back); returns the main request's outcome.
    pub async fn step(&mut self, ctx: &Context, stats: &mut Stats, started: Instant) -> Outcome {
        if self.slots.is_empty() {
            return Outcome::Transport;
        }
        let slot = self.next % self.slots.len();
        self.next = self.next.wrapping_add(1);
        match ctx.scenario {
            Scenario::Create => self.create(ctx, stats, slot, started, false).await,
            Scenario::Patch => self.patch(ctx, stats, slot, started, true).await,
            Scenario::List => self.list(ctx, stats, slot, started).await,
            Scenario::Lag => self.create(ctx, stats, slot, started, true).await,
            Scenario::Mixed => {
                let r: f64 = self.rng.random();
                if r < 0.45 {
                    self.get(ctx, stats, slot, started).await
                } else if r < 0.90 {
                    self.list(ctx, stats, slot, started).await
                } else if r < 0.95 {
                    self.create(ctx, stats, slot, started, false).await
                } else {
                    self.patch(ctx, stats, slot, started, false).await
                }
            }
        }
    }

    async fn create(
        &mut self,
        ctx: &Context,
        stats: &mut Stats,
        slot: usize,
        started: Instant,
        lag: bool,
    ) -> Outcome {
        let body = self.new_task_body();
        let answer = ctx.api.create(&self.slots[slot].user, &body).await;
        let acked = Instant::now();
        let result = outcome(answer.status, StatusCode::CREATED);
        stats.record("create", result, acked - started);
        if let Some(ack) = answer.value {
            if lag {
                self.measure_lag(ctx, stats, slot, ack.id, ack.position, acked)
                    .await;
            } else if ctx.scenario == Scenario::Mixed
                && self.slots[slot].tasks.len() < MAX_TASKS_PER_SLOT
            {
                self.slots[slot].tasks.push(Task {
                    id: ack.id,
                    version: ack.version,
                });
            }
        }
        result
    }

    async fn measure_lag(
        &mut self,
        ctx: &Context,
        stats: &mut Stats,
        slot: usize,
        id: Uuid,
        position: u64,
        acked: Instant,
    ) {
        match ctx.lag_probe {
            LagProbe::Header => {
                if let Some(lag) = ctx.lag.expect(position, acked) {
                    stats.record_lag(lag);
                }
            }
            LagProbe::MinPosition => {
                let answer = ctx
                    .api
                    .get(&self.slots[slot].user, id, Some(position))
                    .await;
                let seen = Instant::now();
                let result = outcome(answer.status, StatusCode::OK);
                stats.record("read_back", result, seen - acked);
                if result == Outcome::Ok {
                    stats.record_lag(seen - acked);
                }
            }
        }
    }

    async fn patch(
        &mut self,
        ctx: &Context,
        stats: &mut Stats,
        slot: usize,
        started: Instant,
        provoke: bool,
    ) -> Outcome {
        if self.slots[slot].tasks.is_empty() {
            return self.create(ctx, stats, slot, started, false).await;
        }
        let index = self.rng.random_range(0..self.slots[slot].tasks.len());
        let task = self.slots[slot].tasks[index];
        self.counter += 1;
        let body = if self.rng.random_bool(0.7) {
            json!({"title": format!("{} {} {}", self.word(), self.word(), self.counter)})
        } else {
            json!({"status": STATUSES[self.rng.random_range(0..STATUSES.len())],
                   "priority": PRIORITIES[self.rng.random_range(0..PRIORITIES.len())]})
        };
        let r: f64 = self.rng.random();
        let conflict_share = if provoke { ctx.conflict_share } else { 0.0 };
        let (op, if_match, wanted) = if r < conflict_share {
            // A version the task is not at: past it, or ahead of a new task.
            let stale = task.version.checked_sub(1).unwrap_or(task.version + 1);
            ("patch_stale", Some(stale), StatusCode::PRECONDITION_FAILED)
        } else if r < conflict_share + ctx.if_match_share {
            ("patch_if_match", Some(task.version), StatusCode::OK)
        } else {
            ("patch_blind", None, StatusCode::OK)
        };
        let answer = ctx
            .api
            .patch(&self.slots[slot].user, task.id, &body, if_match)
            .await;
        let done = Instant::now();
        let result = match (outcome(answer.status, wanted), op) {
            (Outcome::Ok, "patch_stale") => Outcome::Expected,
            (other, _) => other,
        };
        stats.record(op, result, done - started);
        if let Some(ack) = answer.value {
            self.slots[slot].tasks[index].version = ack.version;
        }
        result
    }

    async fn get(
        &mut self,
        ctx: &Context,
        stats: &mut Stats,
        slot: usize,
        started: Instant,
    ) -> Outcome {
        if self.slots[slot].tasks.is_empty() {
            return self.list(ctx, stats, slot, started).await;
        }
        let index = self.rng.random_range(0..self.slots[slot].tasks.len());
        let id = self.slots[slot].tasks[index].id;
        let answer = ctx.api.get(&self.slots[slot].user, id, None).await;
        let result = outcome(answer.status, StatusCode::OK);
        stats.record("get", result, started.elapsed());
        result
    }

    /// A walk's next page when one is under way, else a new first page:
    /// plain, filtered or searched.
    async fn list(
        &mut self,
        ctx: &Context,
        stats: &mut Stats,
        slot: usize,
        started: Instant,
    ) -> Outcome {
        let (op, mut params, pages) = match self.slots[slot].walk.take() {
            Some(walk) => {
                let mut params = walk.params;
                params.push(("cursor", walk.cursor));
                ("list_next", params, walk.pages)
            }
            None => {
                let r: f64 = match ctx.list_mix {
                    ListMix::All => self.rng.random(),
                    ListMix::First => 0.0,
                };
                let (op, params) = if r < 0.5 {
                    ("list_first", vec![])
                } else if r < 0.7 {
                    let status = STATUSES[self.rng.random_range(0..STATUSES.len())];
                    ("list_filter", vec![("status", status.to_owned())])
                } else if r < 0.85 {
                    let tag = TAGS[self.rng.random_range(0..TAGS.len())];
                    (
                        "list_filter",
                        vec![
                            ("priority", "high,urgent".to_owned()),
                            ("tag", tag.to_owned()),
                        ],
                    )
                } else {
                    ("list_search", vec![("q", self.word().to_owned())])
                };
                (op, params, 0)
            }
        };
        params.push(("limit", "20".to_owned()));
        let answer = ctx.api.list(&self.slots[slot].user, &params, None).await;
        let result = outcome(answer.status, StatusCode::OK);
        stats.record(op, result, started.elapsed());
        if let Some(Some(cursor)) = answer.value {
            if pages + 1 < ctx.max_pages && ctx.list_mix == ListMix::All {
                params.retain(|(k, _)| *k != "cursor" && *k != "limit");
                self.slots[slot].walk = Some(Walk {
                    params,
                    cursor,
                    pages: pages + 1,
                });
            }
        }
        result
    }
}

/// Whether a scenario needs tasks to exist before it starts.
pub fn needs_seed(scenario: Scenario) -> bool {
    !matches!(scenario, Scenario::Create)
}

/// Whether a scenario reads from the query side (which must then have caught up with the seed).
pub fn reads(scenario: Scenario) -> bool {
    matches!(scenario, Scenario::List | Scenario::Mixed | Scenario::Lag)
}

/// Polls are spaced this much by default in the header lag probe.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(2);
