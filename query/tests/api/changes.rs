//! `GET /v1/changes`: exactly the caller's changes, in log order, paged by
//! `next_after` without gaps or repeats (also while writes go on), filtered,
//! refusing bad input; and every feed query reads one owner's rows by index
//! (EXPLAIN on `CHANGES_ROWS` changes over `CHANGES_OWNERS` owners; 200k over
//! 2k by default, 1000000/5000 for the figure).

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;
use tasklog_events::EventStore;
use tasklog_events::domain::{Status, TaskPatch, TaskTitle};
use tasklog_platform::testing::TestDb;
use tasklog_query::read_model::{After, ChangeFilter, explain_changes};
use uuid::Uuid;

use crate::helpers::{NewTask, TestApp, User, field, problem, spawn_app, user};

/// `(task_id, version)` of every event of `owner` in the log, in log order.
async fn logged(app: &TestApp, owner: &User) -> Vec<(String, u64)> {
    let all = app.store.read_all(None, 100_000).await.unwrap();
    all.into_iter()
        .filter(|e| e.metadata.owner_id == Some(owner.id))
        .map(|e| {
            (
                e.stream_id.trim_start_matches("task-").to_owned(),
                e.version,
            )
        })
        .collect()
}

fn keys(changes: &[Value]) -> Vec<(String, u64)> {
    changes
        .iter()
        .map(|c| {
            (
                c["task_id"].as_str().unwrap().to_owned(),
                c["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every change of a walk by `next_after`, `limit` at a time.
async fn walk(app: &TestApp, who: &User, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .json(who, &format!("/v1/changes?after={after}&limit={limit}"))
            .await;
        let changes = page["changes"].as_array().unwrap().clone();
        let next = page["next_after"].as_u64().unwrap();
        if changes.is_empty() {
            assert_eq!(next, after, "an empty page keeps the place");
            return out;
        }
        assert!(next > after);
        out.extend(changes);
        after = next;
    }
}

/// A patch that changes title and status: two events in one commit.
fn two_changes() -> TaskPatch {
    TaskPatch {
        title: Some(TaskTitle::parse("renamed").unwrap()),
        status: Some(Status::Done),
        ..TaskPatch::default()
    }
}

#[tokio::test]
async fn the_feed_holds_exactly_the_callers_changes_in_log_order() {
    let app = spawn_app().await;
    let (a, b) = (user(), user());
    let (first, _) = app.create(&a, NewTask::titled("one")).await;
    let (second, _) = app.create(&a, NewTask::titled("two")).await;
    app.create(&b, NewTask::titled("not yours")).await;
    app.update(&a, first, two_changes(), Utc::now()).await;
    app.delete(&a, second, Utc::now()).await;
    app.project().await;

    let page = app.json(&a, "/v1/changes").await;
    let changes = page["changes"].as_array().unwrap();
    assert_eq!(keys(changes), logged(&app, &a).await);
    assert_eq!(changes.len(), 5);
    let types: Vec<&str> = changes
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "TaskCreated",
            "TaskCreated",
            "TaskTitleChanged",
            "TaskStatusChanged",
            "TaskDeleted"
        ]
    );
    assert_eq!(changes[2]["position"], changes[3]["position"], "one commit");
    assert_eq!(changes[0]["actor_id"], a.id.to_string());
    assert_eq!(changes[0]["data"]["title"], "one");
    assert_eq!(page["next_after"], changes[4]["position"]);

    let theirs = app.json(&b, "/v1/changes").await;
    assert_eq!(
        keys(theirs["changes"].as_array().unwrap()),
        logged(&app, &b).await
    );
    assert_eq!(theirs["changes"].as_array().unwrap().len(), 1);

    // A page of one never splits the two-event commit, and loses nothing.
    assert_eq!(keys(&walk(&app, &a, 1).await), logged(&app, &a).await);

    let deleted = app.json(&a, "/v1/changes?type=TaskDeleted").await;
    assert_eq!(deleted["changes"].as_array().unwrap().len(), 1);
    let one_task = app.json(&a, &format!("/v1/changes?task_id={first}")).await;
    assert_eq!(one_task["changes"].as_array().unwrap().len(), 3);
    let later = app.json(&a, "/v1/changes?since=2100-01-01T00:00:00Z").await;
    assert!(later["changes"].as_array().unwrap().is_empty());
    let other_task = app.json(&b, &format!("/v1/changes?task_id={first}")).await;
    assert!(
        other_task["changes"].as_array().unwrap().is_empty(),
        "never another user's"
    );
}

#[tokio::test]
async fn pages_have_no_gap_or_repeat_while_writes_go_on() {
    let app = spawn_app().await;
    let (a, b) = (user(), user());
    let mut seen: Vec<Value> = Vec::new();
    let mut after = 0;
    for round in 0..12 {
        for i in 0..3 {
            let (id, _) = app
                .create(&a, NewTask::titled(&format!("a{round}-{i}")))
                .await;
            app.create(&b, NewTask::titled("b")).await;
            if i == 1 {
                app.update(&a, id, two_changes(), Utc::now()).await;
            }
        }
        app.project().await;
        // Read two small pages per round: the walk falls behind, then catches up.
        for _ in 0..2 {
            let page = app
                .json(&a, &format!("/v1/changes?after={after}&limit=2"))
                .await;
            seen.extend(page["changes"].as_array().unwrap().iter().cloned());
            after = page["next_after"].as_u64().unwrap();
        }
    }
    loop {
        let page = app
            .json(&a, &format!("/v1/changes?after={after}&limit=2"))
            .await;
        let changes = page["changes"].as_array().unwrap();
        if changes.is_empty() {
            break;
        }
        seen.extend(changes.iter().cloned());
        after = page["next_after"].as_u64().unwrap();
    }
    assert_eq!(keys(&seen), logged(&app, &a).await);
    assert_eq!(seen.len(), 12 * 5);
}

#[tokio::test]
async fn bad_feed_parameters_are_400s_naming_them_and_anonymous_callers_401() {
    let app = spawn_app().await;
    let a = user();
    for (query, name) in [
        ("after=abc", "after"),
        ("after=-3", "after"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("type=TaskExploded", "type"),
        ("task_id=nope", "task_id"),
        ("until=soon", "until"),
        ("colour=red", "colour"),
    ] {
        let response = app
            .get(&a, &format!("/v1/changes?{query}"))
            .send()
            .await
            .unwrap();
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(field(&body), name, "{query}");
    }
    let response = app.anonymous("/v1/changes").send().await.unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;
}

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn every_feed_query_reads_only_the_callers_rows_by_index() {
    let db = TestDb::new().await.unwrap();
    let pool = db.pool();
    tasklog_readmodel::migrate(pool).await.unwrap();
    let rows = env_or("CHANGES_ROWS", 200_000);
    let owners = env_or("CHANGES_OWNERS", 2_000);
    const CHUNK: i64 = 50_000;
    let mut from = 1;
    while from <= rows {
        // Owner g % owners, task g % (owners * 5): five tasks each, in log order.
        sqlx::query(
            "INSERT INTO readmodel.changes (owner_id, commit_position, prepare_position, task_id, \
             version, event_type, data, actor_id, recorded_at) \
             SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(g % $2), 12, '0'))::uuid, g, g, \
                    ('00000000-0000-0000-0001-' || lpad(to_hex(g % ($2 * 5)), 12, '0'))::uuid, \
                    g / ($2 * 5), (ARRAY['TaskCreated','TaskTitleChanged','TaskDeleted'])[1 + g % 3], \
                    '{}'::jsonb, NULL, now() - ($3 - g) * interval '1 second' \
             FROM generate_series($1, $4) g",
        )
        .bind(from)
        .bind(owners)
        .bind(rows)
        .bind((from + CHUNK - 1).min(rows))
        .execute(pool)
        .await
        .unwrap();
        from += CHUNK;
    }
    sqlx::raw_sql("VACUUM ANALYZE readmodel.changes")
        .execute(pool)
        .await
        .unwrap();
    let owner: Uuid = "00000000-0000-0000-0000-000000000007".parse().unwrap();
    let task: Uuid = "00000000-0000-0000-0001-000000000007".parse().unwrap();
    let filters = [
        ChangeFilter::default(),
        ChangeFilter {
            types: vec!["TaskDeleted".into()],
            ..ChangeFilter::default()
        },
        ChangeFilter {
            task_id: Some(task),
            ..ChangeFilter::default()
        },
        ChangeFilter {
            since: Some(Utc::now() - chrono::Duration::hours(1)),
            ..ChangeFilter::default()
        },
    ];
    let per_owner = rows / owners;
    for filter in &filters {
        for after in [
            After::default(),
            After {
                commit: rows / 2,
                prepare: None,
            },
        ] {
            let plan = explain_changes(pool, owner, after, filter, 500)
                .await
                .unwrap();
            println!("{filter:?} after {after:?}:\n{plan}\n");
            assert!(!plan.contains("Seq Scan"), "{plan}");
            // changes_deleted (the trash's, readmodel 0006) is per owner too,
            // and serves type=TaskDeleted.
            assert!(
                ["changes_pkey", "changes_task", "changes_deleted"]
                    .iter()
                    .any(|index| plan.contains(index)),
                "{plan}"
            );
            // Only the owner's rows are ever read: what a filter removes is
            // at most the owner's own changes.
            let removed: i64 = plan
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Rows Removed by Filter: "))
                .filter_map(|n| n.trim().parse::<i64>().ok())
                .sum();
            assert!(removed <= per_owner, "{removed} rows removed: {plan}");
        }
    }
}
