//! What sealing adds to a create, in the process: a typical `TaskCreated`
//! turned into its stored payload (`to_new_event`, the plain serialisation
//! every create pays) against the same payload then sealed
//! (`sealing::seal`), and opened again (what every reader pays).
//! Prints nanoseconds per operation; under
//! `valgrind --tool=callgrind` the instruction counts of each step are in
//! the output too (bench/README.md, "Sealing").
//!
//!     cargo run --release -p tasklog-events --example seal_cost -- 200000

use std::hint::black_box;
use std::time::Instant;

use chrono::Utc;
use tasklog_events::Metadata;
use tasklog_events::domain::{
    Priority, Status, Tags, TaskCreated, TaskDescription, TaskEvent, TaskId, TaskTitle, UserId,
};
use tasklog_events::sealing::{DataKey, open, seal};
use tasklog_events::task_stream::to_new_event;
use uuid::Uuid;

fn event() -> TaskEvent {
    TaskEvent::Created(TaskCreated {
        task_id: TaskId(Uuid::now_v7()),
        owner_id: UserId(Uuid::now_v7()),
        title: TaskTitle::parse("Write the quarterly report for the board")
            .unwrap_or_else(|_| unreachable!()),
        description: TaskDescription::parse(
            &"Numbers, a summary of the quarter and the plan. ".repeat(4),
        )
        .unwrap_or_else(|_| unreachable!()),
        status: Status::Todo,
        priority: Priority::High,
        due_at: Some(Utc::now()),
        tags: Tags::parse(&["work", "q4", "board"]).unwrap_or_else(|_| unreachable!()),
        occurred_at: Utc::now(),
    })
}

fn per_op(label: &str, n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!("{label:<40} {ns:>10.0} ns/op");
    ns
}

#[inline(never)]
fn serialise(e: &TaskEvent, owner: Uuid) -> tasklog_events::NewEvent {
    to_new_event(
        e,
        Uuid::now_v7(),
        Metadata {
            owner_id: Some(owner),
            ..Metadata::default()
        },
    )
}

#[inline(never)]
fn seal_step(data: &mut serde_json::Value, key: &DataKey, owner: Uuid, id: Uuid) {
    seal(data, key, owner, id);
}

#[inline(never)]
fn open_step(data: &mut serde_json::Value, key: &DataKey, owner: Uuid, id: Uuid) {
    let _ = open(data, key, owner, id);
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let e = event();
    let owner = Uuid::now_v7();
    let key = DataKey::generate();
    let plain = serialise(&e, owner);
    println!(
        "payload: {} bytes plain, {} bytes sealed",
        plain.data.to_string().len(),
        {
            let mut d = plain.data.clone();
            seal(&mut d, &key, owner, plain.event_id);
            d.to_string().len()
        }
    );
    let ser = per_op("serialise (to_new_event)", n, || {
        black_box(serialise(black_box(&e), owner));
    });
    let clone = per_op("clone of the payload (baseline)", n, || {
        black_box(plain.data.clone());
    });
    let sealed = per_op("clone + seal", n, || {
        let mut d = plain.data.clone();
        seal_step(&mut d, &key, owner, plain.event_id);
        black_box(d);
    });
    let mut stored = plain.data.clone();
    seal(&mut stored, &key, owner, plain.event_id);
    let opened = per_op("clone + open", n, || {
        let mut d = stored.clone();
        open_step(&mut d, &key, owner, plain.event_id);
        black_box(d);
    });
    println!(
        "seal adds {:.0} ns to a create ({:.1}x the serialisation); open adds {:.0} ns to a read",
        sealed - clone,
        (sealed - clone) / ser,
        opened - clone
    );
}
