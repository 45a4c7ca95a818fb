//! The event log on its own: how many single-event appends per second 1 and
//! 16 concurrent writers get through the Postgres adapter, and how fast a
//! subscriber catches up on the result. Runs in a scratch database it drops.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::{EventStore, ExpectedVersion, Metadata, NewEvent};
use tasklog_platform::testing::TestDb;
use uuid::Uuid;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds each writer count runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Writer counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 16])]
    writers: Vec<usize>,
}

fn event() -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TaskTitleChanged".into(),
        schema_version: 1,
        data: json!({"title": "benchmark", "occurred_at": "2026-01-01T00:00:00Z"}),
        metadata: Metadata {
            actor_id: Some(Uuid::new_v4()),
            ..Metadata::default()
        },
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = TestDb::new()
        .await
        .context("scratch database (set TEST_DATABASE_URL)")?;
    let store = PgEventStore::new(db.pool().clone());
    store.migrate().await?;
    println!("event log benchmark, scratch database {}", db.name());

    for &writers in &args.writers {
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let started = Instant::now();
        let counts = futures::future::join_all((0..writers).map(|_| {
            let store = store.clone();
            async move {
                let stream = format!("task-{}", Uuid::now_v7());
                let mut n = 0_u64;
                while Instant::now() < deadline {
                    store
                        .append(&stream, ExpectedVersion::Any, vec![event()])
                        .await?;
                    n += 1;
                }
                anyhow::Ok(n)
            }
        }))
        .await;
        let total: u64 = counts
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .sum();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "append  writers={writers:<3} events={total:<8} {:>9.0} events/s",
            total as f64 / secs
        );
    }

    let head = store.head().await?.context("no events written")?;
    let started = Instant::now();
    let mut sub = store.subscribe_all(None);
    let mut seen = 0_u64;
    while let Some(batch) = sub.next().await {
        let batch = batch?;
        seen += batch.len() as u64;
        if batch.last().map(|e| e.position) >= Some(head) {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "catch-up subscriber  events={seen:<8} {:>9.0} events/s",
        seen as f64 / secs
    );
    Ok(())
}
