//! `run` as a service: leases and takeover, outages, being killed mid-batch,
//! graceful shutdown, health and metrics.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tasklog_platform::testing::redis_url;
use tasklog_projector::lease::{CHANGES_LEASE, COUNTS_LEASE, TASKS_LEASE, WEBHOOKS_LEASE, holder};

use crate::helpers::{World, owners};
use tasklog_platform::testing::TcpProxy as Proxy;

/// Starts the real binary on this world, named `instance`.
fn spawn_binary(w: &World, instance: &str) -> Child {
    spawn_binary_on(w, instance, w.db.url())
}

/// The same, reaching Postgres at `database_url` (a proxy's, say).
fn spawn_binary_on(w: &World, instance: &str, database_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tasklog-projector"))
        .arg("run")
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", &w.prefix)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DATABASE_MAX_CONNECTIONS", "10")
        .env("PROJECTOR_LEASE_POLL_MS", "200")
        .env("PROJECTOR_INSTANCE", instance)
        .env("RUST_LOG", "warn")
        // The development key-encryption key needs development said.
        .env("TASKLOG_ENV", "development")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the projector binary starts")
}

async fn holder_name(w: &World, key: i64) -> Option<String> {
    holder(w.pool(), key)
        .await
        .expect("pg_locks readable")
        .map(|h| h.application_name)
}

#[tokio::test]
async fn a_standby_takes_over_when_the_holder_is_killed_and_the_result_is_exact() {
    let mut w = World::new().await;
    tasklog_readmodel::migrate(w.pool()).await.unwrap();
    let people = owners(3);
    let mut a = spawn_binary(&w, "instance-a");
    w.eventually("instance a holds every lease", || async {
        holder_name(&w, TASKS_LEASE).await.as_deref() == Some("instance-a/tasks")
            && holder_name(&w, COUNTS_LEASE).await.as_deref() == Some("instance-a/counts")
            && holder_name(&w, CHANGES_LEASE).await.as_deref() == Some("instance-a/changes")
            && holder_name(&w, WEBHOOKS_LEASE).await.as_deref() == Some("instance-a/webhooks")
    })
    .await;
    let mut b = spawn_binary(&w, "instance-b");
    w.writer.busy_history(&people, 40).await;
    w.wait_caught_up().await;
    // The standby waits; it never holds a lease the other one has.
    assert_eq!(
        holder_name(&w, TASKS_LEASE).await.as_deref(),
        Some("instance-a/tasks")
    );

    a.kill().expect("kill -9 instance a");
    let _ = a.wait();
    w.eventually("instance b takes every lease", || async {
        holder_name(&w, TASKS_LEASE).await.as_deref() == Some("instance-b/tasks")
            && holder_name(&w, COUNTS_LEASE).await.as_deref() == Some("instance-b/counts")
            && holder_name(&w, CHANGES_LEASE).await.as_deref() == Some("instance-b/changes")
            && holder_name(&w, WEBHOOKS_LEASE).await.as_deref() == Some("instance-b/webhooks")
    })
    .await;
    w.writer.busy_history(&people, 40).await;
    w.wait_caught_up().await;
    let diffs = w.verify().await;
    let _ = b.kill();
    let _ = b.wait();
    assert!(diffs.is_empty(), "{diffs:#?}");
}

/// A partition: the holder's connections go silent (no FIN, no reset). The
/// server must end the holder's lease session within seconds, not after its
/// TCP keepalive default of two hours, so the standby takes over (`eventually`
/// gives it 30 s). Fails without the lease session's `idle_session_timeout`.
#[tokio::test]
async fn a_standby_takes_over_when_the_holder_is_cut_off_without_a_reset() {
    let mut w = World::new().await;
    tasklog_projector::migrate(w.pool()).await.unwrap();
    let people = owners(2);
    let proxy = Proxy::start("127.0.0.1:5432", true).await.unwrap();
    let options: sqlx::postgres::PgConnectOptions = w.db.url().parse().unwrap();
    let via_proxy = sqlx::ConnectOptions::to_url_lossy(&options.port(proxy.port())).to_string();
    let mut a = spawn_binary_on(&w, "instance-a", &via_proxy);
    w.eventually("instance a holds both leases", || async {
        holder_name(&w, TASKS_LEASE).await.as_deref() == Some("instance-a/tasks")
            && holder_name(&w, COUNTS_LEASE).await.as_deref() == Some("instance-a/counts")
    })
    .await;
    let mut b = spawn_binary(&w, "instance-b");
    w.writer.busy_history(&people, 10).await;
    w.wait_caught_up().await;

    proxy.silence();
    w.eventually(
        "instance b takes both leases from the silent holder",
        || async {
            holder_name(&w, TASKS_LEASE).await.as_deref() == Some("instance-b/tasks")
                && holder_name(&w, COUNTS_LEASE).await.as_deref() == Some("instance-b/counts")
        },
    )
    .await;
    w.writer.busy_history(&people, 10).await;
    w.wait_caught_up().await;
    let diffs = w.verify().await;
    for child in [&mut a, &mut b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[tokio::test]
async fn with_redis_down_the_read_model_goes_on_and_the_counts_catch_up_exactly() {
    let mut w = World::new().await;
    let people = owners(4);
    let proxy = Proxy::start("127.0.0.1:6379", true).await.unwrap();
    let redis_via_proxy = format!("redis://127.0.0.1:{}", proxy.port());
    let running = w.start_projector(&redis_via_proxy, &[]).await;
    w.writer.busy_history(&people, 10).await;
    w.wait_caught_up().await;

    proxy.down();
    let counts_before = w.counts_checkpoint().await;
    w.writer.busy_history(&people, 30).await;
    let head = w.head().await;
    w.eventually(
        "the read model reaches the head while Redis is down",
        || async { w.tasks_checkpoint().await >= head },
    )
    .await;
    assert_eq!(
        w.counts_checkpoint().await,
        counts_before,
        "counts moved without Redis"
    );

    proxy.up();
    w.wait_caught_up().await;
    let diffs = w.verify().await;
    running.stop().await;
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[tokio::test]
async fn killed_in_the_middle_of_large_batches_then_restarted_the_result_is_exact() {
    let mut w = World::new().await;
    let people = owners(5);
    w.writer.busy_history(&people, 400).await;
    let running = w
        .start_projector(&redis_url(), &[("PROJECTOR_BATCH_SIZE", "20")])
        .await;
    w.eventually("some batches are in", || async {
        w.tasks_checkpoint().await.is_some()
    })
    .await;
    // Usually mid-stream (about 40 batches of 20); exact either way.
    running.kill().await;

    let running = w.start_projector(&redis_url(), &[]).await;
    w.wait_caught_up().await;
    let diffs = w.verify().await;
    running.stop().await;
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[tokio::test]
async fn health_metrics_and_a_graceful_stop_that_releases_the_leases() {
    let mut w = World::new().await;
    let running = w.start_projector(&redis_url(), &[]).await;
    let base = format!("http://127.0.0.1:{}", running.port);
    let client = reqwest::Client::new();
    w.writer.busy_history(&owners(1), 5).await;
    w.wait_caught_up().await;

    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let live = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    // The lag sampler runs every 200 ms in tests.
    let mut text = String::new();
    for _ in 0..100 {
        text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("projector_lag_events")
            && text.contains("projector_batch_apply_seconds_bucket")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for metric in [
        "projector_lease_held{projection=\"tasks\"}",
        "projector_lease_held{projection=\"counts\"}",
        "projector_checkpoint_commit_position{projection=\"tasks\"}",
        "projector_lag_events{projection=\"tasks\"}",
        "projector_lag_milliseconds{projection=\"counts\"}",
        "projector_batch_apply_seconds_bucket",
        "projector_batch_events_bucket",
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }

    assert!(holder(w.pool(), TASKS_LEASE).await.unwrap().is_some());
    running.stop().await;
    assert!(
        holder(w.pool(), TASKS_LEASE).await.unwrap().is_none(),
        "tasks lease kept after stop"
    );
    assert!(
        holder(w.pool(), COUNTS_LEASE).await.unwrap().is_none(),
        "counts lease kept after stop"
    );
}

#[tokio::test]
async fn readiness_names_the_failing_check_when_postgres_is_unreachable() {
    let w = World::new().await;
    let proxy = Proxy::start("127.0.0.1:5432", true).await.unwrap();
    let options: sqlx::postgres::PgConnectOptions = w.db.url().parse().unwrap();
    let via_proxy = sqlx::ConnectOptions::to_url_lossy(&options.port(proxy.port())).to_string();
    let app = tasklog_projector::Application::build(w.settings(
        &redis_url(),
        &[
            ("DATABASE_URL", via_proxy.as_str()),
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "300"),
        ],
    ))
    .await
    .unwrap();
    let port = app.port();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::new();
    proxy.down();
    let ready = client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["checks"]["postgres"]
            .as_str()
            .unwrap_or("")
            .starts_with("down"),
        "{body}"
    );
    proxy.up();
    let mut status = 0;
    for _ in 0..100 {
        status = client
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "ready again once Postgres is back");
    shutdown.cancel();
    let _ = task.await;
}

fn binary(w: &World, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tasklog-projector"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", w.db.url())
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", &w.prefix)
        .env("TASKLOG_ENV", "development")
        .output()
        .expect("the projector binary runs")
}

#[tokio::test]
async fn the_verify_command_exits_non_zero_on_a_difference_and_zero_when_clean() {
    let mut w = World::new().await;
    let ids = w.writer.busy_history(&owners(2), 12).await;
    tasklog_projector::catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let clean = binary(&w, &["verify"]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    let progress = String::from_utf8_lossy(&clean.stderr);
    assert!(
        progress.contains("verify: replaying the log and comparing: "),
        "{progress}"
    );
    assert!(String::from_utf8_lossy(&clean.stdout).contains("verify: 0 differences"));

    sqlx::query("UPDATE readmodel.tasks SET status = 'done' WHERE id = $1 AND status <> 'done'")
        .bind(ids[1].0)
        .execute(w.pool())
        .await
        .unwrap();
    let dirty = binary(&w, &["verify"]);
    assert_eq!(dirty.status.code(), Some(1));
    let out = String::from_utf8_lossy(&dirty.stdout);
    assert!(out.contains(&format!("task {}: status", ids[1])), "{out}");

    // `rebuild` repairs it; `status` reports where things stand.
    let rebuilt = binary(&w, &["rebuild"]);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    // Not a terminal: plain lines, a phase line and a count line per phase
    // with work to count, no bar's control characters.
    let progress = String::from_utf8_lossy(&rebuilt.stderr);
    assert!(
        progress.contains("rebuild: replaying the log (")
            && progress.contains("rebuild: replaying the log: ")
            && progress.contains(" events, ")
            && progress.contains("rebuild: loading rows (COPY): ")
            && progress.contains("rebuild: done ("),
        "{progress}"
    );
    assert!(
        !progress.contains('\r') && !progress.contains('\x1b'),
        "{progress:?}"
    );
    assert!(binary(&w, &["verify"]).status.success());
    let status = binary(&w, &["status"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains("tasks   generation 2"), "{out}");
    assert!(out.contains("lag 0 events"), "{out}");
}

#[tokio::test]
async fn status_and_verify_only_read_a_database_no_service_has_migrated() {
    let db = tasklog_platform::testing::TestDb::new().await.unwrap();
    let schemas = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('eventlog', 'readmodel')",
        )
        .fetch_one(db.pool())
        .await
        .unwrap()
    };
    for args in [&["status"][..], &["verify", "--skip-redis"][..]] {
        let command = args[0];
        let out = Command::new(env!("CARGO_BIN_EXE_tasklog-projector"))
            .args(args)
            .env_clear()
            .env("DATABASE_URL", db.url())
            .env("REDIS_URL", redis_url())
            .env(
                "REDIS_PREFIX",
                format!("tltest:{}:", uuid::Uuid::new_v4().simple()),
            )
            .env("TASKLOG_ENV", "development")
            .output()
            .expect("the projector binary runs");
        // Nothing to report on: it says so and fails, without making the
        // schemas (or waiting on the lock that guards making them).
        assert!(
            !out.status.success(),
            "{command} succeeded on an empty database"
        );
        // The reason, said once (sqlx's errors repeat their cause).
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("does not exist").count(), 1, "{command}: {err}");
        assert_eq!(schemas().await, 0, "{command} created a schema");
    }
}

#[tokio::test]
async fn status_waits_for_a_server_that_is_not_reachable_yet_and_then_answers() {
    let w = World::new().await;
    tasklog_projector::migrate(w.pool()).await.unwrap();
    // The server refuses connections at first, as while a stack starts.
    let proxy = Proxy::start("127.0.0.1:5432", false).await.unwrap();
    let options: sqlx::postgres::PgConnectOptions = w.db.url().parse().unwrap();
    let via_proxy = sqlx::ConnectOptions::to_url_lossy(&options.port(proxy.port())).to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_tasklog-projector"))
        .arg("status")
        .env_clear()
        .env("DATABASE_URL", &via_proxy)
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", &w.prefix)
        .env("TASKLOG_ENV", "development")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the projector binary starts");
    // Longer than a pool's acquire timeout (2 s): one failed try is not the end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.up();
    let out = tokio::task::spawn_blocking(move || status.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("tasks   generation"), "{stdout}");
    // The wait is said (logs go to stdout, as the services').
    assert!(
        stdout.contains("reaching the event log failed; retrying"),
        "{stdout}"
    );
}

#[tokio::test]
async fn copy_log_copies_a_log_into_another_keeping_ids_and_versions_and_can_rerun() {
    let mut source = World::new().await;
    source.writer.busy_history(&owners(2), 15).await;
    let target = tasklog_platform::testing::TestDb::new().await.unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tasklog-projector"))
            .args(["copy-log", "--from", source.db.url(), "--to", target.url()])
            .env_clear()
            .output()
            .expect("copy-log runs")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = run();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains(" 0 events copied"));
    // The position to resume from is in the progress lines.
    let progress = String::from_utf8_lossy(&again.stderr);
    assert!(
        progress.contains("copy-log: copying: ") && progress.contains("already there, at "),
        "{progress}"
    );

    let copied = tasklog_events::store::postgres::PgEventStore::new(target.pool().clone());
    let key = |e: &tasklog_events::RecordedEvent| {
        (e.stream_id.clone(), e.version, e.event_id, e.data.clone())
    };
    let from: Vec<_> = source.all_events().await.iter().map(key).collect();
    let to: Vec<_> = crate::helpers::all_events_of(&copied)
        .await
        .iter()
        .map(key)
        .collect();
    assert!(!from.is_empty());
    assert_eq!(from, to);
}

#[tokio::test]
async fn through_a_postgres_outage_the_projector_recovers_by_itself_and_stays_exact() {
    let mut w = World::new().await;
    let people = owners(3);
    let proxy = Proxy::start("127.0.0.1:5432", true).await.unwrap();
    let options: sqlx::postgres::PgConnectOptions = w.db.url().parse().unwrap();
    let via_proxy = sqlx::ConnectOptions::to_url_lossy(&options.port(proxy.port())).to_string();
    let running = w
        .start_projector(
            &redis_url(),
            &[
                ("DATABASE_URL", via_proxy.as_str()),
                ("DATABASE_ACQUIRE_TIMEOUT_MS", "300"),
            ],
        )
        .await;
    w.writer.busy_history(&people, 10).await;
    w.wait_caught_up().await;

    proxy.down();
    // Writers reach Postgres directly; the projector cannot.
    w.writer.busy_history(&people, 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.up();

    w.wait_caught_up().await;
    let diffs = w.verify().await;
    w.eventually("the instance holds its leases again", || async {
        holder(w.pool(), TASKS_LEASE).await.unwrap().is_some()
    })
    .await;
    running.stop().await;
    assert!(diffs.is_empty(), "{diffs:#?}");
}
