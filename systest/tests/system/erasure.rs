//! Erasure by crypto-shredding through the real services: after `DELETE
//! /v1/auth/me` none of the user's text (task titles, descriptions, tags,
//! name, email) is in a `pg_dump` of the database (the log, the accounts, the
//! read models) or in Redis, their tasks answer 404 everywhere, another
//! user's data is untouched, and `verify` and `rebuild` take the sealed
//! payloads left in the log as erased.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasklog_events::store::postgres::testing::stored_payloads;
use tasklog_systest::{Api, Session, System};
use uuid::Uuid;

use crate::{start, verify_passes};

/// Registers a user whose name and email carry `marker`.
async fn register(api: &Api, marker: &str) -> (Session, String, String) {
    let email = format!("{marker}-mail@example.com");
    let name = format!("{marker} Person");
    let reply = api
        .send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"email": email, "password": "correct horse battery", "name": name})),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let session = Session {
        user_id: reply.body["user"]["id"].as_str().unwrap().to_owned(),
        access_token: reply.body["access_token"].as_str().unwrap().to_owned(),
    };
    (session, name, email)
}

/// The whole database as `pg_dump` writes it.
async fn dump(system: &System) -> String {
    // pg_dump takes libpq's URL parameters, not sqlx's.
    let url = system.db.url().split('?').next().unwrap_or_default();
    let out = tokio::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(url)
        .output()
        .await
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every key under the system's prefix in Redis, with its value.
async fn redis_text(system: &System) -> String {
    let client = redis::Client::open(tasklog_platform::testing::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        // The counts' keys open with a hash tag: `{<prefix>counts}:...`.
        .arg(format!("*{}*", system.redis_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut text = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value: Vec<String> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
            ],
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            other => vec![format!("<{other}>")],
        };
        text.push_str(&format!("{key} = {value:?}\n"));
    }
    text
}

/// Redis as `redis_text` shows it, once `done` holds (10 s at most).
async fn redis_until(system: &System, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = redis_text(system).await;
        if done(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Redis never got there:\n{text}");
}

#[tokio::test]
async fn an_erased_users_text_is_gone_from_every_database_and_redis_and_others_keep_theirs() {
    let system = start().await;
    let api = system.api();
    let mark = format!("zq{}", &Uuid::new_v4().simple().to_string()[..10]);
    let (alice, alice_name, alice_email) = register(&api, &format!("{mark}alice")).await;
    let (bob, _, _) = register(&api, &format!("{mark}bob")).await;

    let secrets = [
        format!("{mark}-title"),
        format!("{mark}-renamed"),
        format!("{mark}-described"),
        format!("{mark}tag"),
        format!("{mark}-trashed"),
    ];
    let created = api
        .post(
            "/v1/tasks",
            &alice,
            json!({"title": secrets[0], "description": secrets[2], "tags": [secrets[3]], "priority": "high"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let kept_id = created.body["id"].as_str().unwrap().to_owned();
    let renamed = api
        .patch(
            &format!("/v1/tasks/{kept_id}"),
            &alice,
            json!({"title": secrets[1], "status": "done"}),
        )
        .await
        .unwrap();
    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
    let trashed = api
        .post("/v1/tasks", &alice, json!({"title": secrets[4]}))
        .await
        .unwrap();
    let trashed_id = trashed.body["id"].as_str().unwrap().to_owned();
    let deleted = api
        .delete(&format!("/v1/tasks/{trashed_id}"), &alice)
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    let bobs_title = format!("{mark}-bob-keeps");
    let bobs = api
        .post(
            "/v1/tasks",
            &bob,
            json!({"title": bobs_title, "tags": ["bobtag"]}),
        )
        .await
        .unwrap();
    let bobs_id = bobs.body["id"].as_str().unwrap().to_owned();
    let at = deleted.position().unwrap().max(bobs.position().unwrap());
    let list = api.get_at("/v1/tasks", &alice, at).await.unwrap();
    assert_eq!(list.body["tasks"][0]["title"], secrets[1].as_str());
    let trash = api.get_at("/v1/trash", &alice, at).await.unwrap();
    assert_eq!(trash.body["tasks"][0]["title"], secrets[4].as_str());

    // The log holds sealed payloads, the read models plain text: the dump
    // finds the text there before, so its absence after means something.
    let before = dump(&system).await;
    assert!(
        before.contains(&secrets[1]),
        "the read model holds the title"
    );
    let log = stored_payloads(system.db.pool(), &alice.user_id)
        .await
        .unwrap();
    assert!(log.len() >= 4);
    for data in &log {
        assert!(data.contains("\"sealed\""), "{data}");
        assert!(!data.contains(&mark), "plain text in the log: {data}");
    }

    // The counts are a projection of their own: alice's are there first.
    redis_until(&system, |r| {
        r.contains(&alice.user_id) && r.contains(&bob.user_id)
    })
    .await;

    let erased = api.delete("/v1/auth/me", &alice).await.unwrap();
    assert_eq!(erased.status, StatusCode::OK, "{erased:?}");
    let position = erased.position().unwrap();

    // Every projection past the erasure: the tasks (list), the change feed.
    let bobs_list = api.get_at("/v1/tasks", &bob, position).await.unwrap();
    assert_eq!(bobs_list.status, StatusCode::OK);
    assert_eq!(bobs_list.body["tasks"][0]["id"], bobs_id.as_str());
    let feed = api.get_at("/v1/changes", &bob, position).await.unwrap();
    assert_eq!(feed.status, StatusCode::OK);
    let redis = redis_until(&system, |r| {
        !r.contains(&alice.user_id) && r.contains(&bob.user_id)
    })
    .await;

    let after = dump(&system).await;
    for text in secrets.iter().chain([&alice_name, &alice_email]) {
        assert!(
            !after.contains(text.as_str()),
            "{text} is still in the dump"
        );
        assert!(!redis.contains(text.as_str()), "{text} is still in Redis");
    }
    assert!(
        !redis.contains(&alice.user_id),
        "alice's counts are still in Redis:\n{redis}"
    );
    assert!(
        redis.contains(&bob.user_id),
        "bob's counts are gone:\n{redis}"
    );
    assert!(
        after.contains(&bobs_title),
        "bob's task is gone from the read model"
    );

    // Alice's token outlives her account, and finds nothing.
    for path in [
        format!("/v1/tasks/{kept_id}"),
        format!("/v1/tasks/{kept_id}/history"),
        format!("/v1/tasks/{kept_id}?as_of=2100-01-01T00:00:00Z"),
        format!("/v1/tasks/{trashed_id}/history"),
    ] {
        let reply = api.get(&path, &alice).await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}: {reply:?}");
    }
    let empty: Value = api.get("/v1/trash", &alice).await.unwrap().body;
    assert_eq!(empty["tasks"], json!([]));
    let stats = api.get("/v1/stats", &alice).await.unwrap();
    assert_eq!(stats.body["total"], 0, "{stats:?}");
    let write = api
        .post("/v1/tasks", &alice, json!({"title": "after"}))
        .await
        .unwrap();
    assert_eq!(write.status, StatusCode::UNAUTHORIZED, "{write:?}");
    let patch = api
        .patch(
            &format!("/v1/tasks/{kept_id}"),
            &alice,
            json!({"title": "after"}),
        )
        .await
        .unwrap();
    assert_eq!(patch.status, StatusCode::NOT_FOUND, "{patch:?}");
    let again = api.delete("/v1/auth/me", &alice).await.unwrap();
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{again:?}");

    // Bob's task is whole, history included.
    let history = api
        .get(&format!("/v1/tasks/{bobs_id}/history"), &bob)
        .await
        .unwrap();
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(
        history.body["events"][0]["data"]["title"],
        bobs_title.as_str()
    );

    verify_passes(&system).await;
    let (rebuilt, output) = system.projector_cli(&["rebuild"]).await.unwrap();
    assert!(rebuilt, "rebuild failed:\n{output}");
    verify_passes(&system).await;
    assert!(!dump(&system).await.contains(&secrets[1]));
}
