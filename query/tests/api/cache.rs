//! Lists answered from memory: served again while their owner's rows are
//! unchanged, never once the projector has announced a change (or a rebuild),
//! and not at all while the announcements cannot arrive.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tasklog_events::EventStore;
use tasklog_projector::rebuild::{Quiet, RebuildOptions, rebuild};

use crate::helpers::{
    NewTask, TestApp, User, spawn_app, spawn_app_behind_proxy, spawn_app_with, user,
};

fn titles(page: &Value) -> Vec<&str> {
    page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["title"].as_str().expect("a title"))
        .collect()
}

/// Changes a title in the read model without the projector, so without an
/// announcement: only a page read from Postgres can show it.
async fn retitle_behind_its_back(app: &TestApp, id: uuid::Uuid, title: &str) {
    sqlx::query("UPDATE readmodel.tasks SET title = $2 WHERE id = $1")
        .bind(id)
        .bind(title)
        .execute(app.db.pool())
        .await
        .expect("update");
}

async fn list(app: &TestApp, who: &User, path: &str) -> (StatusCode, Option<Value>) {
    let response = app.get(who, path).send().await.expect("request sent");
    let status = response.status();
    let body = if status == StatusCode::OK {
        Some(response.json().await.expect("json"))
    } else {
        None
    };
    (status, body)
}

#[tokio::test]
async fn a_page_is_served_again_until_its_owner_changes() {
    let app = spawn_app().await;
    let alice = user();
    let (one, _) = app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    assert_eq!(titles(&app.json(&alice, "/v1/tasks").await), ["one"]);

    retitle_behind_its_back(&app, one, "changed behind its back").await;
    assert_eq!(
        titles(&app.json(&alice, "/v1/tasks").await),
        ["one"],
        "the same query is answered from memory"
    );
    assert_eq!(
        titles(&app.json(&alice, "/v1/tasks?limit=19").await),
        ["changed behind its back"],
        "another query reads Postgres"
    );

    // A real change to alice's tasks is announced: her pages are read again.
    app.create(&alice, NewTask::titled("two")).await;
    app.project().await;
    let mut now = titles(&app.json(&alice, "/v1/tasks").await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    now.sort();
    assert_eq!(now, ["changed behind its back", "two"]);
}

#[tokio::test]
async fn a_wait_that_times_out_leaves_other_users_pages_alone() {
    let app = spawn_app_with(&[("MIN_POSITION_TIMEOUT_MS", "100")]).await;
    let (alice, bob) = (user(), user());
    let (one, _) = app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    assert_eq!(titles(&app.json(&alice, "/v1/tasks").await), ["one"]);
    retitle_behind_its_back(&app, one, "changed behind its back").await;

    // Bob waits for a write the projector has not reached: a genuine timeout.
    let (_, unprojected) = app.create(&bob, NewTask::titled("pending")).await;
    let response = app
        .get(&bob, "/v1/tasks")
        .header("x-min-position", unprojected.position.commit.to_string())
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    assert_eq!(
        titles(&app.json(&alice, "/v1/tasks").await),
        ["one"],
        "nothing of alice's changed: her page is still answered from memory"
    );
}

#[tokio::test]
async fn a_rebuild_drops_every_page() {
    let app = spawn_app().await;
    let (alice, bob) = (user(), user());
    let (one, _) = app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    retitle_behind_its_back(&app, one, "corrupted").await;
    assert_eq!(titles(&app.json(&alice, "/v1/tasks").await), ["corrupted"]);

    let store: Arc<dyn EventStore> = Arc::new(app.store.clone());
    rebuild(
        app.db.pool(),
        store,
        None,
        RebuildOptions::default(),
        &mut Quiet,
    )
    .await
    .expect("rebuild");
    // Notices arrive in commit order: once bob's is heard, the swap's was too.
    app.create(&bob, NewTask::titled("later")).await;
    app.project().await;
    assert_eq!(
        titles(&app.json(&alice, "/v1/tasks").await),
        ["one"],
        "the rebuilt read model, not the page kept from before"
    );
}

#[tokio::test]
async fn no_page_is_served_while_announcements_cannot_arrive() {
    let app = spawn_app_behind_proxy(&[("DATABASE_ACQUIRE_TIMEOUT_MS", "300")]).await;
    let alice = user();
    app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    assert_eq!(list(&app, &alice, "/v1/tasks").await.0, StatusCode::OK);

    let proxy = app.proxy.as_ref().expect("a proxy");
    proxy.down();
    // The listener notices its connection is gone at once; until then a kept
    // page may still be served.
    let mut status = StatusCode::OK;
    for _ in 0..500 {
        status = list(&app, &alice, "/v1/tasks").await.0;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Projected while the service hears nothing.
    app.create(&alice, NewTask::titled("two")).await;
    app.project_unheard().await;
    proxy.up();
    let mut page = None;
    for _ in 0..500 {
        if let (StatusCode::OK, Some(body)) = list(&app, &alice, "/v1/tasks").await {
            page = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let page = page.expect("lists recover");
    assert_eq!(titles(&page).len(), 2, "{page}");
}

/// The listener's connection dies without a reset (an idle NAT drop, a
/// failover): no error ever arrives on it. Without a heartbeat the service
/// would keep serving the kept page and reporting the old position for good;
/// with it, the silence is noticed within seconds, the cache goes off and
/// the listener reconnects and resyncs (`eventually`: 30 s).
#[tokio::test]
async fn a_listener_whose_connection_goes_silent_is_noticed_and_resynced() {
    let app = spawn_app_behind_proxy(&[("DATABASE_ACQUIRE_TIMEOUT_MS", "300")]).await;
    let alice = user();
    app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    assert_eq!(titles(&app.json(&alice, "/v1/tasks").await), ["one"]);
    assert_eq!(titles(&app.json(&alice, "/v1/tasks").await), ["one"]);

    // Every connection open now hears nothing more; new ones work.
    app.proxy.as_ref().expect("a proxy").silence_open();
    app.create(&alice, NewTask::titled("two")).await;
    let reached = app.project_unheard().await.expect("a position").commit;

    let mut last = None;
    for _ in 0..300 {
        let response = app.get(&alice, "/v1/tasks").send().await.expect("sent");
        let position: u64 = response.headers()["x-projection-position"]
            .to_str()
            .ok()
            .and_then(|p| p.parse().ok())
            .expect("a position");
        if response.status() == StatusCode::OK {
            let page: Value = response.json().await.expect("json");
            if titles(&page).len() == 2 && position >= reached {
                return;
            }
            last = Some((position, page));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still the old answer after 30 s: {last:?} (projected to {reached})");
}
