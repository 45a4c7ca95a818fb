//! The counts on a real Redis Cluster of the test's own: writes go on while
//! the projector is killed (SIGKILL) and restarted and the master holding a
//! counts partition in use is killed, so its replica is promoted with
//! whatever asynchronous replication had sent it. The counts must end exactly right
//! (each batch's deltas and checkpoint move in one script, so a lost tail is
//! lost whole and projected again) and `verify` must be green.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tasklog_readmodel::counts::{CountKeys, PARTITIONS, partition_of};
use tasklog_systest::{Api, RedisCluster, Session};
use uuid::Uuid;

use crate::start_with;

const PRIORITIES: [&str; 4] = ["low", "medium", "high", "urgent"];

/// What each user's live tasks are, by id: (status, priority).
type Model = Arc<Mutex<HashMap<String, HashMap<String, (String, String)>>>>;

async fn write_until(
    api: Api,
    who: Session,
    model: Model,
    last: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut i = 0_usize;
    let mut live: Vec<String> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let reply = if i % 5 == 0 && !live.is_empty() {
            let id = live.remove(i % live.len());
            let reply = api.delete(&format!("/v1/tasks/{id}"), &who).await.unwrap();
            if let Some(tasks) = model.lock().unwrap().get_mut(&who.user_id) {
                tasks.remove(&id);
            }
            reply
        } else if i % 3 == 0 && !live.is_empty() {
            let id = live[i % live.len()].clone();
            let status = if i % 2 == 0 { "done" } else { "in_progress" };
            let reply = api
                .patch(&format!("/v1/tasks/{id}"), &who, json!({"status": status}))
                .await
                .unwrap();
            if let Some(task) = model
                .lock()
                .unwrap()
                .get_mut(&who.user_id)
                .and_then(|t| t.get_mut(&id))
            {
                task.0 = status.to_owned();
            }
            reply
        } else {
            let priority = PRIORITIES[i % 4];
            let reply = api
                .post(
                    "/v1/tasks",
                    &who,
                    json!({"title": format!("task {i}"), "priority": priority}),
                )
                .await
                .unwrap();
            let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
            live.push(id.clone());
            model
                .lock()
                .unwrap()
                .entry(who.user_id.clone())
                .or_default()
                .insert(id, ("todo".to_owned(), priority.to_owned()));
            reply
        };
        assert!(reply.status.is_success(), "a write failed: {reply:?}");
        last.fetch_max(reply.position().unwrap(), Ordering::SeqCst);
    }
}

fn expected(tasks: &HashMap<String, (String, String)>) -> Value {
    let count = |f: &dyn Fn(&(String, String)) -> bool| tasks.values().filter(|t| f(t)).count();
    json!({
        "total": tasks.len(),
        "todo": count(&|t| t.0 == "todo"),
        "in_progress": count(&|t| t.0 == "in_progress"),
        "done": count(&|t| t.0 == "done"),
        "low": count(&|t| t.1 == "low"),
        "medium": count(&|t| t.1 == "medium"),
        "high": count(&|t| t.1 == "high"),
        "urgent": count(&|t| t.1 == "urgent"),
    })
}

fn answered(stats: &Value) -> Value {
    json!({
        "total": stats["total"],
        "todo": stats["by_status"]["todo"],
        "in_progress": stats["by_status"]["in_progress"],
        "done": stats["by_status"]["done"],
        "low": stats["by_priority"]["low"],
        "medium": stats["by_priority"]["medium"],
        "high": stats["by_priority"]["high"],
        "urgent": stats["by_priority"]["urgent"],
    })
}

#[tokio::test]
async fn counts_stay_exact_across_a_projector_kill_and_a_master_failover() {
    let mut cluster = RedisCluster::start().await.unwrap();
    let urls = cluster.urls();
    let mut system = start_with(&[("REDIS_CLUSTER_URLS", &urls)]).await;
    let api = system.api();
    let model: Model = Arc::default();
    let last = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut users = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..3 {
        let who = api.register().await.unwrap();
        users.push(who.clone());
        writers.push(tokio::spawn(write_until(
            api.clone(),
            who,
            model.clone(),
            last.clone(),
            stop.clone(),
        )));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    system.projector.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    system.projector.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // The counts are partitioned by owner, each partition under a hash tag
    // of its own: they spread over the masters.
    let keys = CountKeys::new(&system.redis_prefix);
    let masters: BTreeSet<u16> = (0..PARTITIONS)
        .map(|p| cluster.master_of(&keys.current(p)).unwrap())
        .collect();
    assert!(
        masters.len() > 1,
        "every partition on one master: {masters:?}"
    );
    // Kill the master of the first user's partition.
    let owner: Uuid = users[0].user_id.parse().unwrap();
    let counts_key = keys.current(partition_of(owner));
    let master = cluster.master_of(&counts_key).unwrap();
    cluster.kill(master);
    let promoted = cluster
        .wait_failover(&counts_key, master, Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(promoted, master, "the replica took over the counts' slot");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let position = last.load(Ordering::SeqCst);
    let model = model.lock().unwrap().clone();
    assert!(
        model.values().map(HashMap::len).sum::<usize>() > 10,
        "the load wrote something"
    );

    // Every user's counts, from Redis, exactly as written.
    for who in &users {
        let want = expected(model.get(&who.user_id).unwrap_or(&HashMap::new()));
        let mut last_seen = None;
        let mut exact = false;
        for _ in 0..300 {
            let stats = api.get_at("/v1/stats", who, position).await.unwrap();
            if stats.status == StatusCode::OK
                && stats.header("x-stats-source") == Some("redis")
                && answered(&stats.body) == want
            {
                exact = true;
                break;
            }
            last_seen = Some(stats);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(exact, "want {want}, last answer {last_seen:?}");
    }
    let (ok, output) = system.projector_cli(&["verify"]).await.unwrap();
    assert!(ok, "verify: {output}");
    assert!(output.contains("verify: 0 differences"), "{output}");
}
