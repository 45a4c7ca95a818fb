//! Failures of the parts around the services, under load: the projector
//! killed, Postgres cut off, Redis gone. No acknowledged write may be lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tasklog_systest::{Api, Session, System};

use crate::{binaries, start, verify_passes};

struct Outcome {
    status: Option<StatusCode>,
    id: Option<String>,
    position: Option<u64>,
}

/// Creates tasks from `workers` concurrent clients until `stop` is set.
fn write_load(
    api: &Api,
    me: &Session,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    (0..workers)
        .map(|w| {
            let (api, me, stop) = (api.clone(), me.clone(), stop.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let reply = api
                        .post("/v1/tasks", &me, json!({"title": format!("load {w}-{n}")}))
                        .await;
                    outcomes.push(match reply {
                        Ok(r) => Outcome {
                            status: Some(r.status),
                            id: r.body["id"].as_str().map(str::to_owned),
                            position: r.position(),
                        },
                        Err(_) => Outcome {
                            status: None,
                            id: None,
                            position: None,
                        },
                    });
                }
                outcomes
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

/// Every task id the query side lists for `me`, read at `position` or later.
async fn listed_ids(api: &Api, me: &Session, position: u64) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut path = "/v1/tasks?limit=100".to_owned();
    loop {
        let page = api.get_at(&path, me, position).await.unwrap();
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        for task in page.body["tasks"].as_array().unwrap() {
            ids.insert(task["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/tasks?limit=100&cursor={cursor}"),
            None => return ids,
        }
    }
}

/// Waits for the projection to reach `position` (the projector may be
/// catching up after a restart, beyond a single request's bounded wait).
async fn wait_projected(api: &Api, me: &Session, position: u64) {
    for _ in 0..120 {
        let r = api.get_at("/v1/stats", me, position).await.unwrap();
        if r.status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the projection never reached {position}");
}

#[tokio::test]
async fn a_projector_killed_mid_load_loses_and_doubles_nothing() {
    let mut system = start().await;
    let api = system.api();
    let me = api.register().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&api, &me, 4, &stop);

    tokio::time::sleep(Duration::from_millis(800)).await;
    system.projector.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    system.projector.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    let outcomes = collect(load).await;

    let acked: BTreeSet<String> = outcomes
        .iter()
        .filter(|o| o.status == Some(StatusCode::CREATED))
        .filter_map(|o| o.id.clone())
        .collect();
    assert!(
        acked.len() > 10,
        "too little load to mean anything: {}",
        acked.len()
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.status == Some(StatusCode::CREATED)),
        "the projector's death must not fail a write"
    );
    let last = outcomes.iter().filter_map(|o| o.position).max().unwrap();
    wait_projected(&api, &me, last).await;
    assert_eq!(listed_ids(&api, &me, last).await, acked);
    let stats = api.get("/v1/stats", &me).await.unwrap();
    assert_eq!(stats.body["total"], acked.len());
    verify_passes(&system).await;
}

#[tokio::test]
async fn writes_during_a_postgres_outage_are_503s_and_every_2xx_is_in_the_log() {
    // Quick 503s, so the outage shows within its few seconds.
    let system = System::start_with(binaries(), &[("DATABASE_ACQUIRE_TIMEOUT_MS", "1000")])
        .await
        .unwrap();
    let api = system.api();
    let me = api.register().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&api, &me, 4, &stop);

    tokio::time::sleep(Duration::from_millis(500)).await;
    system.postgres.down();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    system.postgres.up();
    // Recovery by itself: the load runs on until writes succeed again.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::SeqCst);
    let outcomes = collect(load).await;

    let statuses: BTreeSet<u16> = outcomes
        .iter()
        .map(|o| o.status.map_or(0, |s| s.as_u16()))
        .collect();
    assert!(
        statuses.is_subset(&BTreeSet::from([201, 503])),
        "writes answer 201 or 503, nothing else: {statuses:?}"
    );
    assert!(statuses.contains(&503), "the outage was not seen");
    let tail = &outcomes[outcomes.len().saturating_sub(4)..];
    assert!(
        outcomes
            .iter()
            .rev()
            .take(20)
            .any(|o| o.status == Some(StatusCode::CREATED)),
        "writes did not recover after Postgres came back: {:?}",
        tail.iter().map(|o| o.status).collect::<Vec<_>>()
    );

    let acked: BTreeSet<String> = outcomes
        .iter()
        .filter(|o| o.status == Some(StatusCode::CREATED))
        .filter_map(|o| o.id.clone())
        .collect();
    // Every acknowledged write is in the log (history reads the log itself).
    for id in &acked {
        let history = api
            .get(&format!("/v1/tasks/{id}/history"), &me)
            .await
            .unwrap();
        assert_eq!(
            history.status,
            StatusCode::OK,
            "acked task {id} is not in the log"
        );
    }
    let last = outcomes.iter().filter_map(|o| o.position).max().unwrap();
    wait_projected(&api, &me, last).await;
    // A 503 write may still have committed (the reply was lost, not the
    // write); the listing holds every acknowledged one.
    assert!(listed_ids(&api, &me, last).await.is_superset(&acked));
    verify_passes(&system).await;
}

#[tokio::test]
async fn stats_answer_through_a_redis_outage_and_counts_catch_up() {
    let system = start().await;
    let api = system.api();
    let me = api.register().await.unwrap();
    let mut last = 0;
    for i in 0..3 {
        let r = api
            .post(
                "/v1/tasks",
                &me,
                json!({"title": format!("before {i}"), "priority": "low"}),
            )
            .await
            .unwrap();
        last = r.position().unwrap();
    }
    wait_projected(&api, &me, last).await;

    system.redis.down();
    for i in 0..2 {
        let r = api
            .post(
                "/v1/tasks",
                &me,
                json!({"title": format!("during {i}"), "priority": "urgent"}),
            )
            .await
            .unwrap();
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "writes do not need Redis: {r:?}"
        );
        last = r.position().unwrap();
    }
    let stats = api.get_at("/v1/stats", &me, last).await.unwrap();
    assert_eq!(
        stats.status,
        StatusCode::OK,
        "stats answer from Postgres: {stats:?}"
    );
    assert_eq!(stats.body["total"], 5);
    assert_eq!(stats.body["by_priority"]["urgent"], 2);

    system.redis.up();
    // Once Redis is back the projector catches its counts up exactly.
    verify_passes(&system).await;
    let stats = api.get("/v1/stats", &me).await.unwrap();
    assert_eq!(stats.body["total"], 5);
    assert_eq!(stats.body["by_priority"]["low"], 3);
}
