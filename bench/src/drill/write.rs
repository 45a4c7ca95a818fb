//! `drill write`: creates, patches and deletes through the command service
//! from several workers, each on tasks of its own, recording every
//! acknowledged write. Halfway it closes a gate until nothing is in flight
//! and keeps it closed for a quiet moment (running `--pause-cmd`, e.g. a
//! differential backup); once `--events` writes are acknowledged it runs
//! `--kill-cmd` while the writes go on, then stops and saves the ledger.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{SecondsFormat, Utc};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::{Mutex, RwLock};
use url::Url;
use uuid::Uuid;

use super::ledger::{Kind, Ledger, Quiet, Write};
use crate::load::client::{Api, User};
use crate::load::options::{loopback_url, parse_duration};

/// A run that acknowledges nothing for this long has lost its service.
const STALL: Duration = Duration::from_secs(60);
const STATUSES: &[&str] = &["todo", "in_progress", "done"];
const PRIORITIES: &[&str] = &["low", "medium", "high", "urgent"];

#[derive(Args)]
pub struct WriteArgs {
    /// The command service (or the gateway), on this machine.
    #[arg(long, value_parser = loopback_url, default_value = "http://127.0.0.1:18100")]
    pub command_url: Url,
    /// Writes (one event each) to see acknowledged before the kill.
    #[arg(long, default_value_t = 3000)]
    pub events: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Users the writers act for.
    #[arg(long, default_value_t = 4)]
    pub users: usize,
    /// Shell command run halfway through, with no write in flight, just
    /// before the quiet moment.
    #[arg(long)]
    pub pause_cmd: Option<String>,
    /// How long the quiet moment lasts.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub quiet: Duration,
    /// Shell command that takes the server away once `--events` writes are
    /// acknowledged; the writers keep going while it runs.
    #[arg(long)]
    pub kill_cmd: Option<String>,
    /// Per request.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Where the ledger (JSON) goes.
    #[arg(long)]
    pub ledger: PathBuf,
}

struct Shared {
    api: Api,
    /// Writers hold it shared around each request; the quiet moment holds it alone.
    gate: RwLock<()>,
    acked: AtomicU64,
    stop: AtomicBool,
    killed: AtomicBool,
    /// Failed or unanswered requests before the kill, by status.
    failures: Mutex<BTreeMap<String, u64>>,
}

enum Action {
    Create,
    Patch(usize),
    Delete(usize),
}

pub async fn run(args: WriteArgs) -> anyhow::Result<()> {
    let api = Api::new(
        args.command_url.clone(),
        args.command_url.clone(),
        args.timeout,
        args.workers + 2,
    )?;
    let mut users = Vec::new();
    for _ in 0..args.users.max(1) {
        let email = format!("drill-{}@example.com", Uuid::new_v4().simple());
        users.push(api.register(&email, "drill password 1").await?);
    }
    let shared = Arc::new(Shared {
        api,
        gate: RwLock::new(()),
        acked: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        failures: Mutex::new(BTreeMap::new()),
    });
    let workers: Vec<_> = (0..args.workers.max(1))
        .map(|w| {
            let user = users[w % users.len()].clone();
            tokio::spawn(worker(shared.clone(), user, w as u64))
        })
        .collect();

    let steered = steer(&shared, &args).await;
    shared.stop.store(true, Ordering::SeqCst);
    let mut writes = Vec::new();
    for w in workers {
        writes.extend(w.await.context("a writer panicked")?);
    }
    let (quiet, killed_at) = steered?;
    writes.sort_by_key(|w| w.acked_at);
    let failures = std::mem::take(&mut *shared.failures.lock().await);
    let ledger = Ledger {
        writes,
        quiet: Some(quiet),
        killed_at,
        unacknowledged_before_kill: failures.values().sum(),
    };
    ledger.save(&args.ledger)?;
    let count = |k| ledger.writes.iter().filter(|w| w.kind == k).count();
    println!(
        "write: acknowledged={} creates={} patches={} deletes={} pitr_time={} killed_at={} failed_before_kill={failures:?}",
        ledger.writes.len(),
        count(Kind::Create),
        count(Kind::Patch),
        count(Kind::Delete),
        quiet.middle().to_rfc3339_opts(SecondsFormat::Micros, true),
        killed_at.map_or_else(
            || "-".to_owned(),
            |k| k.to_rfc3339_opts(SecondsFormat::Micros, true)
        ),
    );
    if ledger.unacknowledged_before_kill > 0 {
        anyhow::bail!("writes failed before the kill: {failures:?}");
    }
    Ok(())
}

/// The quiet moment halfway, then the kill; returns when the writers may stop.
async fn steer(
    shared: &Shared,
    args: &WriteArgs,
) -> anyhow::Result<(Quiet, Option<chrono::DateTime<Utc>>)> {
    reach(shared, args.events / 2).await?;
    let quiet = {
        let _closed = shared.gate.write().await;
        if let Some(cmd) = &args.pause_cmd {
            shell(cmd).await?;
        }
        // The quiet moment starts after the command, so a backup it takes
        // ends before any moment inside it (a restore to such a moment may
        // then start from that backup).
        let from = Utc::now();
        tokio::time::sleep(args.quiet).await;
        Quiet {
            from,
            to: Utc::now(),
        }
    };
    reach(shared, args.events).await?;
    let mut killed_at = None;
    if let Some(cmd) = &args.kill_cmd {
        shared.killed.store(true, Ordering::SeqCst);
        killed_at = Some(Utc::now());
        shell(cmd).await?;
    }
    Ok((quiet, killed_at))
}

/// Waits until `n` writes are acknowledged, showing progress.
async fn reach(shared: &Shared, n: u64) -> anyhow::Result<()> {
    let mut last = (shared.acked.load(Ordering::SeqCst), Instant::now());
    let mut shown = Instant::now();
    loop {
        let acked = shared.acked.load(Ordering::SeqCst);
        if acked >= n {
            return Ok(());
        }
        if acked != last.0 {
            last = (acked, Instant::now());
        } else if last.1.elapsed() > STALL {
            anyhow::bail!("no write acknowledged for {STALL:?} (at {acked} of {n})");
        }
        if shown.elapsed() > Duration::from_secs(5) {
            eprintln!("drill write: {acked} acknowledged");
            shown = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn shell(cmd: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .await
        .with_context(|| format!("running {cmd}"))?;
    anyhow::ensure!(status.success(), "{cmd} failed: {status}");
    Ok(())
}

async fn worker(shared: Arc<Shared>, user: User, seed: u64) -> Vec<Write> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut live: Vec<Uuid> = Vec::new();
    let mut out = Vec::new();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let gate = shared.gate.read().await;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        n += 1;
        let roll = rng.random_range(0..100u32);
        let action = if live.len() < 4 || roll < 40 {
            Action::Create
        } else if roll < 92 {
            Action::Patch(rng.random_range(0..live.len()))
        } else {
            Action::Delete(rng.random_range(0..live.len()))
        };
        let title = format!("drill {seed}-{n}");
        let sent_at = Utc::now();
        let (kind, answer) = match action {
            Action::Create => {
                let body = json!({
                    "title": title,
                    "priority": PRIORITIES[rng.random_range(0..PRIORITIES.len())],
                    "tags": ["drill"],
                });
                (Kind::Create, shared.api.create(&user, &body).await)
            }
            Action::Patch(i) => {
                let body = json!({
                    "title": title,
                    "status": STATUSES[rng.random_range(0..STATUSES.len())],
                });
                (
                    Kind::Patch,
                    shared.api.patch(&user, live[i], &body, None).await,
                )
            }
            Action::Delete(i) => (Kind::Delete, shared.api.delete(&user, live[i]).await),
        };
        let acked_at = Utc::now();
        drop(gate);
        let ok = answer.status.is_some_and(|s| s.is_success());
        match answer.value.filter(|_| ok) {
            Some(ack) => {
                match action {
                    Action::Create => live.push(ack.id),
                    Action::Delete(i) => {
                        live.swap_remove(i);
                    }
                    Action::Patch(_) => {}
                }
                out.push(Write {
                    kind,
                    id: ack.id,
                    version: ack.version,
                    position: ack.position,
                    sent_at,
                    acked_at,
                });
                shared.acked.fetch_add(1, Ordering::SeqCst);
            }
            None => {
                if !shared.killed.load(Ordering::SeqCst) {
                    let status = answer
                        .status
                        .map_or_else(|| "no answer".to_owned(), |s| s.as_u16().to_string());
                    *shared.failures.lock().await.entry(status).or_default() += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    out
}
