//! Measurements, not tests: ignored by default. Run with
//! `cargo test -p tasklog-projector --test projector -- --ignored --nocapture measure`.

use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tasklog_events::domain::{Priority, Status};
use tasklog_platform::testing::redis_url;
use tasklog_readmodel::notice::{self, Notice};

use crate::helpers::{World, owners};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Append-to-visible latency of the live projection at a steady write rate
/// (`LAG_RATE` appends/s for `LAG_SECONDS`): for each append, the time until
/// the projector's NOTIFY reports a checkpoint at or past its position.
#[tokio::test]
#[ignore = "a measurement; run explicitly"]
async fn measure_live_projection_lag_at_a_steady_write_rate() {
    let rate = env_or("LAG_RATE", 100);
    let seconds = env_or("LAG_SECONDS", 10);
    let mut w = World::new().await;
    let running = w.start_projector(&redis_url(), &[]).await;
    let mut listener = PgListener::connect_with(w.pool()).await.unwrap();
    listener.listen(notice::CHANNEL).await.unwrap();
    let seen = tokio::spawn(async move {
        let mut seen: Vec<(u64, Instant)> = Vec::new();
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await {
            if let Some(notice) = Notice::parse(n.payload()) {
                seen.push((notice.commit, Instant::now()));
            }
        }
        seen
    });

    let people = owners(20);
    let mut appended: Vec<(u64, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    for i in 0..rate * seconds {
        tick.tick().await;
        let owner = people[(i % 20) as usize];
        let before = Instant::now();
        w.writer
            .create(
                owner,
                &format!("Lag probe {i}"),
                Status::Todo,
                Priority::Medium,
            )
            .await;
        let head = w.head().await.unwrap();
        appended.push((head.commit, before));
    }
    let achieved = appended.len() as f64 / started.elapsed().as_secs_f64();
    w.wait_caught_up().await;
    let seen = seen.await.unwrap();
    running.stop().await;

    let mut lags: Vec<Duration> = appended
        .iter()
        .filter_map(|(commit, at)| {
            seen.iter()
                .find(|(c, t)| c >= commit && t >= at)
                .map(|(_, t)| t.duration_since(*at))
        })
        .collect();
    lags.sort();
    let pct = |p: f64| lags[((lags.len() as f64 - 1.0) * p) as usize];
    println!(
        "live lag at {achieved:.0} appends/s over {seconds} s ({} appends, {} measured): \
         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        appended.len(),
        lags.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        lags[lags.len() - 1]
    );
    assert!(!lags.is_empty());
}
