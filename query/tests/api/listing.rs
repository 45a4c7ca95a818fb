//! `GET /v1/tasks`: every filter, every sort in both directions by cursor and
//! by page, cursor stability while tasks are inserted, and page totals.

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use tasklog_events::domain::{Priority, Status, TaskPatch, TaskTitle};
use uuid::Uuid;

use crate::helpers::{NewTask, TestApp, ids, spawn_app, user};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

fn minutes(n: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(n)
}

#[tokio::test]
async fn every_filter_selects_exactly_its_tasks_and_only_the_callers() {
    let app = spawn_app().await;
    let alice = user();
    let bob = user();
    let spec =
        |title: &str, status, priority, tags: &[&str], due: Option<i64>, description: &str| {
            let mut t = NewTask::titled(title);
            t.status = status;
            t.priority = priority;
            t.tags = tags.iter().map(|s| (*s).to_owned()).collect();
            t.due_at = due.map(minutes);
            t.description = description.to_owned();
            t
        };
    let specs = [
        spec(
            "Buy milk",
            Status::Todo,
            Priority::High,
            &["home", "shop"],
            Some(10),
            "",
        ),
        spec(
            "Fix the garage door",
            Status::InProgress,
            Priority::Urgent,
            &["home"],
            Some(20),
            "hinges squeak",
        ),
        spec(
            "File taxes",
            Status::Done,
            Priority::Low,
            &["work"],
            None,
            "50% done",
        ),
        spec(
            "Plan sprint",
            Status::Todo,
            Priority::Medium,
            &["work", "team"],
            Some(30),
            "500 points a_b",
        ),
        spec(
            "Write report",
            Status::InProgress,
            Priority::High,
            &[],
            None,
            "about MILK prices",
        ),
    ];
    let mut by_title = std::collections::HashMap::new();
    for s in &specs {
        let (id, _) = app.create(&alice, s.clone()).await;
        by_title.insert(id.to_string(), s.title.clone());
        // Bob's copy matches every filter Alice's does: it must never show.
        app.create(&bob, s.clone()).await;
    }
    app.project().await;

    let titles = |tasks: &[serde_json::Value]| {
        let mut t: Vec<String> = ids(tasks).iter().map(|id| by_title[id].clone()).collect();
        t.sort();
        t
    };
    let cases: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "Buy milk",
                "File taxes",
                "Fix the garage door",
                "Plan sprint",
                "Write report",
            ],
        ),
        ("status=todo", &["Buy milk", "Plan sprint"]),
        (
            "status=todo,done",
            &["Buy milk", "File taxes", "Plan sprint"],
        ),
        (
            "status=todo&status=done",
            &["Buy milk", "File taxes", "Plan sprint"],
        ),
        (
            "status=in_progress",
            &["Fix the garage door", "Write report"],
        ),
        (
            "priority=high,urgent",
            &["Buy milk", "Fix the garage door", "Write report"],
        ),
        (
            "priority=low&priority=medium",
            &["File taxes", "Plan sprint"],
        ),
        ("tag=home", &["Buy milk", "Fix the garage door"]),
        ("tag=HOME", &["Buy milk", "Fix the garage door"]),
        ("tag=home&tag=shop", &["Buy milk"]),
        ("tag=work,team", &["Plan sprint"]),
        ("tag=nothing", &[]),
        ("q=milk", &["Buy milk", "Write report"]),
        ("q=MiLk", &["Buy milk", "Write report"]),
        ("q=squeak", &["Fix the garage door"]),
        ("q=50%25", &["File taxes"]),
        ("q=a_b", &["Plan sprint"]),
        ("q=_", &["Plan sprint"]),
        ("q=garage%20door", &["Fix the garage door"]),
        ("due_before=2030-01-01T00:20:00Z", &["Buy milk"]),
        (
            "due_after=2030-01-01T00:10:00Z",
            &["Fix the garage door", "Plan sprint"],
        ),
        (
            "due_after=2030-01-01T00:05:00Z&due_before=2030-01-01T00:25:00Z",
            &["Buy milk", "Fix the garage door"],
        ),
        ("due_before=2030-01-01T01:20:00%2B01:00", &["Buy milk"]),
        (
            "status=todo&priority=high&tag=shop&q=milk&due_before=2031-01-01T00:00:00Z",
            &["Buy milk"],
        ),
    ];
    for (query, want) in cases {
        let page = app.json(&alice, &format!("/v1/tasks?{query}")).await;
        let got = titles(page["tasks"].as_array().unwrap());
        assert_eq!(got, *want, "?{query}");
        assert!(page["next_cursor"].is_null(), "?{query}");
        // Page mode applies the same filters.
        let numbered = app.json(&alice, &format!("/v1/tasks?{query}&page=1")).await;
        assert_eq!(
            titles(numbered["tasks"].as_array().unwrap()),
            *want,
            "?{query}&page=1"
        );
        assert_eq!(numbered["pagination"]["total"], want.len(), "?{query}");
    }

    // The shape of a task.
    let page = app.json(&alice, "/v1/tasks?q=garage").await;
    let task = &page["tasks"][0];
    assert_eq!(task["title"], "Fix the garage door");
    assert_eq!(task["description"], "hinges squeak");
    assert_eq!(task["status"], "in_progress");
    assert_eq!(task["priority"], "urgent");
    assert_eq!(task["due_at"], "2030-01-01T00:20:00Z");
    assert_eq!(task["tags"], serde_json::json!(["home"]));
    assert_eq!(task["version"], 0);
    assert!(task["completed_at"].is_null());
    let keys: HashSet<&str> = task
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let want: HashSet<&str> = [
        "id",
        "title",
        "description",
        "status",
        "priority",
        "due_at",
        "tags",
        "created_at",
        "updated_at",
        "completed_at",
        "version",
    ]
    .into();
    assert_eq!(keys, want);
}

/// What the seeded tasks hold, to compute the order every sort must give.
#[derive(Debug, Clone)]
struct Seeded {
    id: Uuid,
    title: String,
    rank: i16,
    due: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
}

fn expected(seeded: &[Seeded], sort: &str) -> Vec<String> {
    let descending = sort.starts_with('-');
    let field = sort.trim_start_matches('-');
    let mut rows = seeded.to_vec();
    rows.sort_by(|a, b| {
        let key = match field {
            "created_at" => a.created.cmp(&b.created),
            "updated_at" => a.updated.cmp(&b.updated),
            "priority" => a.rank.cmp(&b.rank),
            "title" => a.title.as_bytes().cmp(b.title.as_bytes()),
            // Undated last ascending; reversed (so first) descending.
            "due_at" => match (a.due, b.due) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            other => panic!("unknown sort {other}"),
        };
        let ordering = key.then(a.id.cmp(&b.id));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    rows.iter().map(|r| r.id.to_string()).collect()
}

/// 23 tasks with ties in every key, undated ones, and titles that byte order
/// and a locale would order differently.
async fn seed_for_sorting(app: &TestApp, who: &crate::helpers::User) -> Vec<Seeded> {
    let titles = [
        "apple", "Apple", "Zebra", "été", "banana", "apple", "10", "9", "a b", "ab",
    ];
    let priorities = [
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Urgent,
    ];
    let mut seeded = Vec::new();
    for i in 0..23_i64 {
        let mut t = NewTask::titled(titles[usize::try_from(i).unwrap() % titles.len()]);
        t.priority = priorities[usize::try_from(i).unwrap() % 4];
        // Every third undated; the dated ones share due dates in pairs.
        t.due_at = (i % 3 != 0).then(|| minutes(100 + i / 2));
        // Creation times tie in threes.
        t.at = minutes(i / 3);
        let (id, _) = app.create(who, t.clone()).await;
        let mut updated = t.at;
        if i % 4 == 0 {
            let at = minutes(50 - i);
            let patch = TaskPatch {
                title: Some(TaskTitle::parse(&format!("{} (edited)", t.title)).unwrap()),
                ..TaskPatch::default()
            };
            app.update(who, id, patch, at).await;
            updated = at;
            t.title = format!("{} (edited)", t.title);
        }
        seeded.push(Seeded {
            id,
            title: t.title,
            rank: t.priority.rank(),
            due: t.due_at,
            created: t.at,
            updated,
        });
    }
    seeded
}

#[tokio::test]
async fn every_sort_in_both_directions_walks_every_task_once_by_cursor_and_by_page() {
    let app = spawn_app().await;
    let alice = user();
    let seeded = seed_for_sorting(&app, &alice).await;
    // Someone else's tasks interleave in every index.
    seed_for_sorting(&app, &user()).await;
    app.project().await;
    for sort in [
        "created_at",
        "-created_at",
        "updated_at",
        "-updated_at",
        "due_at",
        "-due_at",
        "priority",
        "-priority",
        "title",
        "-title",
    ] {
        let want = expected(&seeded, sort);
        for limit in [1, 4, 7, 23, 100] {
            let walked = app
                .walk(&alice, &format!("sort={sort}&limit={limit}"))
                .await;
            assert_eq!(ids(&walked), want, "sort={sort} limit={limit} by cursor");
            let mut numbered = Vec::new();
            let pages = 23_usize.div_ceil(limit);
            for page in 1..=pages {
                let body = app
                    .json(
                        &alice,
                        &format!("/v1/tasks?sort={sort}&limit={limit}&page={page}"),
                    )
                    .await;
                assert_eq!(body["pagination"]["total"], 23);
                assert_eq!(body["pagination"]["pages"], pages);
                assert_eq!(body["pagination"]["page"], page);
                assert_eq!(body["pagination"]["limit"], limit);
                numbered.extend(body["tasks"].as_array().unwrap().iter().cloned());
            }
            assert_eq!(ids(&numbered), want, "sort={sort} limit={limit} by page");
        }
    }
    // The default is newest first.
    assert_eq!(
        ids(&app.walk(&alice, "limit=5").await),
        expected(&seeded, "-created_at")
    );
}

#[tokio::test]
async fn a_cursor_walk_sees_every_original_task_once_while_tasks_are_inserted() {
    let app = spawn_app().await;
    let alice = user();
    let seeded = seed_for_sorting(&app, &alice).await;
    app.project().await;
    let originals: HashSet<String> = seeded.iter().map(|s| s.id.to_string()).collect();
    for sort in ["title", "-created_at", "due_at", "-due_at", "priority"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut round = 0;
        loop {
            let path = match &cursor {
                None => format!("/v1/tasks?sort={sort}&limit=10"),
                Some(c) => format!("/v1/tasks?sort={sort}&limit=10&cursor={c}"),
            };
            assert!(round < 3000, "sort={sort}: the walk does not end");
            let page = app.json(&alice, &path).await;
            seen.extend(ids(page["tasks"].as_array().unwrap()));
            // Between pages, others write: new tasks land before and after the cursor.
            for j in 0..3 {
                round += 1;
                let mut t = NewTask::titled(["aaa", "mmm", "zzz"][j]);
                t.due_at = (j != 1).then(|| minutes(90 + round));
                t.priority = [Priority::Low, Priority::High, Priority::Urgent][j];
                t.at = minutes(round);
                app.create(&alice, t).await;
            }
            app.project().await;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "sort={sort}: a task came twice");
        let seen_originals = seen.iter().filter(|id| originals.contains(*id)).count();
        assert_eq!(
            seen_originals,
            originals.len(),
            "sort={sort}: an original task was skipped"
        );
    }
}

#[tokio::test]
async fn pages_count_totals_and_a_page_past_the_end_is_empty() {
    let app = spawn_app().await;
    let alice = user();
    for i in 0..7 {
        let mut t = NewTask::titled(&format!("task {i}"));
        t.status = if i < 5 { Status::Todo } else { Status::Done };
        app.create(&alice, t).await;
    }
    app.project().await;
    let body = app.json(&alice, "/v1/tasks?limit=3&page=3").await;
    assert_eq!(body["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["pagination"],
        serde_json::json!({"page": 3, "limit": 3, "total": 7, "pages": 3})
    );
    assert!(body.get("next_cursor").is_none());
    let body = app.json(&alice, "/v1/tasks?limit=3&page=4").await;
    assert_eq!(body["tasks"], serde_json::json!([]));
    assert_eq!(body["pagination"]["total"], 7);
    let body = app.json(&alice, "/v1/tasks?status=done&page=1").await;
    assert_eq!(
        body["pagination"],
        serde_json::json!({"page": 1, "limit": 20, "total": 2, "pages": 1})
    );
    let nobody = app.json(&user(), "/v1/tasks?page=1").await;
    assert_eq!(
        nobody["pagination"],
        serde_json::json!({"page": 1, "limit": 20, "total": 0, "pages": 0})
    );
    let empty = app.json(&user(), "/v1/tasks").await;
    assert_eq!(empty, serde_json::json!({"tasks": [], "next_cursor": null}));
}

#[tokio::test]
async fn deleted_tasks_leave_the_list_and_changes_show_in_it() {
    let app = spawn_app().await;
    let alice = user();
    let (keep, _) = app.create(&alice, NewTask::titled("keep")).await;
    let (gone, _) = app.create(&alice, NewTask::titled("gone")).await;
    app.project().await;
    app.delete(&alice, gone, Utc::now()).await;
    let patch = TaskPatch {
        status: Some(Status::Done),
        ..TaskPatch::default()
    };
    app.update(&alice, keep, patch, Utc::now()).await;
    app.project().await;
    let page = app.json(&alice, "/v1/tasks").await;
    let tasks = page["tasks"].as_array().unwrap();
    assert_eq!(ids(tasks), [keep.to_string()]);
    assert_eq!(tasks[0]["status"], "done");
    assert_eq!(tasks[0]["version"], 1);
    assert!(tasks[0]["completed_at"].is_string());
}
