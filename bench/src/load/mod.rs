//! `tasklog-bench load`: registers users, seeds tasks, drives one scenario
//! over HTTP for a fixed time (closed or open loop), shows progress on stderr
//! and prints what it measured.

pub(crate) mod client;
mod cpu;
mod lag;
pub(crate) mod options;
mod pacing;
mod report;
mod scenarios;
mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use reqwest::StatusCode;
use uuid::Uuid;

use client::{Api, User};
use lag::LagTracker;
pub use options::Args;
use options::{LagProbe, Mode, Scenario};
use report::{LagReport, Machine, Report};
use scenarios::{Context, Slot, Task, Worker};
use stats::{Outcome, Stats};

/// Seeded tasks and the read side's catch-up get this long.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// After the run, the lag observer keeps watching this long for late projections.
const LAG_GRACE: Duration = Duration::from_secs(5);

struct Progress {
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mode = args.mode().map_err(anyhow::Error::msg)?;
    let (command_url, query_url) = args.targets();
    let workers = mode.workers();
    let api = Api::new(command_url, query_url, args.timeout, workers + 2)?;

    let users = register(&api, &args).await?;
    let seeded = if scenarios::needs_seed(args.scenario) {
        seed(&api, &users, args.tasks_per_user, workers).await?
    } else {
        Seeded::default()
    };
    if scenarios::reads(args.scenario) {
        wait_for_query_side(&api, &users[0], seeded.head).await?;
    }

    let shares = pacing::assign(users.len(), args.tasks_per_user, workers);
    let mut workers_state: Vec<Worker> = shares
        .into_iter()
        .enumerate()
        .map(|(w, share)| {
            let slots = share
                .users
                .into_iter()
                .map(|(u, tasks)| {
                    let mine = tasks
                        .into_iter()
                        .filter_map(|t| seeded.tasks.get(u).and_then(|ts| ts.get(t)).copied())
                        .collect();
                    Slot::new(users[u].clone(), mine)
                })
                .collect();
            Worker::new(slots, w as u64)
        })
        .collect();

    let lag = Arc::new(LagTracker::default());
    let ctx = Arc::new(Context {
        api: api.clone(),
        scenario: args.scenario,
        if_match_share: args.if_match_share,
        conflict_share: args.conflict_share,
        max_pages: args.max_pages.max(1),
        list_mix: args.list_mix,
        lag_probe: args.lag_probe,
        lag: lag.clone(),
    });
    let progress = Arc::new(Progress {
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    let observer = (args.scenario == Scenario::Lag && args.lag_probe == LagProbe::Header)
        .then(|| tokio::spawn(observe(api.clone(), lag.clone(), progress.clone())));

    eprintln!("running {:?} for {:?}", args.scenario, args.duration);
    let cpu_before = cpu::sample(&args.cpu, args.cpu_database.as_deref());
    let started = Instant::now();
    let deadline = started + args.duration;
    let ticket = Arc::new(AtomicU64::new(0));
    let show = tokio::spawn(show_progress(progress.clone(), started));
    let handles: Vec<_> = workers_state
        .drain(..)
        .map(|worker| {
            let ctx = ctx.clone();
            let progress = progress.clone();
            let ticket = ticket.clone();
            tokio::spawn(drive(
                worker, ctx, progress, mode, started, deadline, ticket,
            ))
        })
        .collect();
    let mut stats = Stats::default();
    for h in handles {
        stats.merge(&h.await.context("a worker panicked")?);
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu::sample(&args.cpu, args.cpu_database.as_deref());

    let mut lag_report = None;
    if args.scenario == Scenario::Lag {
        let mut polls = None;
        if let Some(observer) = observer {
            let until = Instant::now() + LAG_GRACE;
            while lag.pending() > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            progress.stop.store(true, Ordering::Relaxed);
            let (observed, count, spent) = observer.await.context("the lag observer panicked")?;
            stats.merge(&observed);
            polls = Some((count, spent));
        }
        progress.stop.store(true, Ordering::Relaxed);
        lag_report = stats.lag().map(|lag_ms| LagReport {
            probe: args.lag_probe,
            lag_ms,
            unresolved: lag.pending(),
            polls: polls.map(|(n, _)| n),
            #[allow(clippy::cast_precision_loss)]
            poll_interval_ms: polls
                .map(|(n, spent)| spent.as_secs_f64() * 1000.0 / (n.max(1) as f64)),
        });
    }
    progress.stop.store(true, Ordering::Relaxed);
    let _ = show.await;

    let total = stats.total().summary(elapsed);
    let cpu = cpu::between(&cpu_before, &cpu_after, total.ok);
    let report = Report {
        scenario: args.scenario,
        mode,
        users: users.len(),
        duration_s: args.duration.as_secs_f64(),
        elapsed_s: elapsed.as_secs_f64(),
        planned_requests: match mode {
            Mode::Open { rate, .. } => Some(pacing::tickets_within(args.duration, rate)),
            Mode::Closed { .. } => None,
        },
        cpu_per_ok_us: (!cpu.is_empty()).then(|| cpu.values().map(|c| c.per_ok_us).sum()),
        cpu,
        total,
        ops: stats
            .ops
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.summary(elapsed)))
            .collect(),
        lag: lag_report,
        rss: args
            .rss
            .iter()
            .filter_map(|(name, pid)| report::read_rss(*pid).map(|r| (name.clone(), r)))
            .collect::<BTreeMap<_, _>>(),
        machine: Machine::describe(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

/// One worker: closed loop, one request after another until the deadline;
/// open loop, takes the next ticket, waits for its time, and counts latency
/// from that time.
async fn drive(
    mut worker: Worker,
    ctx: Arc<Context>,
    progress: Arc<Progress>,
    mode: Mode,
    started: Instant,
    deadline: Instant,
    ticket: Arc<AtomicU64>,
) -> Stats {
    let mut stats = Stats::default();
    loop {
        let due = match mode {
            Mode::Closed { .. } => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
            Mode::Open { rate, .. } => {
                let n = ticket.fetch_add(1, Ordering::Relaxed);
                let due = started + pacing::intended_offset(n, rate);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
        };
        let outcome = worker.step(&ctx, &mut stats, due).await;
        progress.done.fetch_add(1, Ordering::Relaxed);
        if matches!(outcome, Outcome::Status(_) | Outcome::Transport) {
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    stats
}

/// The lag observer (header probe): asks the query service for the
/// projection position it knows back to back, spaced a little so it does not
/// become the load, and settles writes as the position moves. It asks
/// `/health/live`, whose answer carries the same `X-Projection-Position` as a
/// task read but costs no database round trip, so a poll takes a fraction of
/// a millisecond and the figure is late by little more than the spacing.
/// Returns its lag figures, polls and time spent.
async fn observe(
    api: Api,
    lag: Arc<LagTracker>,
    progress: Arc<Progress>,
) -> (Stats, u64, Duration) {
    let mut stats = Stats::default();
    let mut polls = 0_u64;
    let started = Instant::now();
    while !progress.stop.load(Ordering::Relaxed) {
        let answer = api.projection_position().await;
        let at = Instant::now();
        polls += 1;
        if let Some(Some(position)) = answer.value {
            for l in lag.observe(position, at) {
                stats.record_lag(l);
            }
        }
        tokio::time::sleep(scenarios::DEFAULT_PROBE_INTERVAL).await;
    }
    (stats, polls, started.elapsed())
}

async fn show_progress(progress: Arc<Progress>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    while !progress.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let done = progress.done.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4.0}s] {:>7} req/s  {:>9} done  {:>6} errors",
            started.elapsed().as_secs_f64(),
            done - last,
            done,
            errors
        );
        last = done;
    }
}

async fn register(api: &Api, args: &Args) -> anyhow::Result<Vec<User>> {
    let run = Uuid::new_v4().simple().to_string();
    eprintln!("registering {} users", args.users);
    let users: Vec<anyhow::Result<User>> = futures::stream::iter(0..args.users)
        .map(|i| {
            let email = format!("bench-{}-{i}@example.com", &run[..12]);
            async move { api.register(&email, "bench-password-1").await }
        })
        .buffered(args.register_concurrency.max(1))
        .collect()
        .await;
    users.into_iter().collect()
}

#[derive(Default)]
struct Seeded {
    /// Per user, the tasks created for it.
    tasks: Vec<Vec<Task>>,
    /// The highest position acknowledged.
    head: u64,
}

async fn seed(
    api: &Api,
    users: &[User],
    per_user: usize,
    concurrency: usize,
) -> anyhow::Result<Seeded> {
    eprintln!("seeding {} tasks", users.len() * per_user);
    let mut body_maker = Worker::new(Vec::new(), u64::MAX);
    let jobs: Vec<(usize, serde_json::Value)> = (0..users.len())
        .flat_map(|u| std::iter::repeat_n(u, per_user))
        .map(|u| (u, body_maker.new_task_body()))
        .collect();
    let results: Vec<(usize, Option<client::Ack>, Option<StatusCode>)> =
        futures::stream::iter(jobs)
            .map(|(u, body)| async move {
                let answer = api.create(&users[u], &body).await;
                (u, answer.value, answer.status)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let mut seeded = Seeded {
        tasks: vec![Vec::new(); users.len()],
        head: 0,
    };
    for (u, ack, status) in results {
        let ack = ack.with_context(|| format!("seeding a task failed with {status:?}"))?;
        seeded.head = seeded.head.max(ack.position);
        seeded.tasks[u].push(Task {
            id: ack.id,
            version: ack.version,
        });
    }
    Ok(seeded)
}

/// Waits until the query side has projected the seed, so reads find it.
async fn wait_for_query_side(api: &Api, user: &User, head: u64) -> anyhow::Result<()> {
    eprintln!("waiting for the query side to reach position {head}");
    let until = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let answer = api
            .list(user, &[("limit", "1".to_owned())], Some(head))
            .await;
        match answer.status {
            Some(StatusCode::OK) => return Ok(()),
            _ if Instant::now() >= until => {
                anyhow::bail!(
                    "the query side did not reach position {head} (last answer {:?})",
                    answer.status
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
