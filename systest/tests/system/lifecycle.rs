//! A user's whole day through the real services: every endpoint once, with
//! read-your-writes through X-Min-Position.

use reqwest::StatusCode;
use serde_json::json;

use crate::start;

#[tokio::test]
async fn a_task_lives_and_dies_through_commands_and_queries() {
    let system = start().await;
    let api = system.api();
    let alice = api.register().await.unwrap();
    let bob = api.register().await.unwrap();

    let created = api
        .post(
            "/v1/tasks",
            &alice,
            json!({"title": "Write the report", "priority": "high", "tags": ["Work", "q4"],
                   "due_at": "2020-01-01T00:00:00Z"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let before_patch = chrono_now();

    // Read-your-writes: the list reflects the create at once.
    let list = api
        .get_at("/v1/tasks", &alice, created.position().unwrap())
        .await
        .unwrap();
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    assert_eq!(list.body["tasks"][0]["id"], id.as_str());
    assert_eq!(list.body["tasks"][0]["tags"], json!(["q4", "work"]));
    let projected: u64 = list
        .header("x-projection-position")
        .unwrap()
        .parse()
        .unwrap();
    assert!(projected >= created.position().unwrap());

    let patched = api
        .patch(
            &format!("/v1/tasks/{id}"),
            &alice,
            json!({"status": "done"}),
        )
        .await
        .unwrap();
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    let task = api
        .get_at(
            &format!("/v1/tasks/{id}"),
            &alice,
            patched.position().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(task.body["status"], "done");
    assert!(task.body["completed_at"].is_string());
    assert_eq!(task.header("etag"), Some("\"1\""));

    // As of before the patch, the task was still to do.
    let then = api
        .get(&format!("/v1/tasks/{id}?as_of={before_patch}"), &alice)
        .await
        .unwrap();
    assert_eq!(then.status, StatusCode::OK, "{then:?}");
    assert_eq!(then.body["status"], "todo");
    assert_eq!(then.body["version"], 0);

    let stats = api
        .get_at("/v1/stats", &alice, patched.position().unwrap())
        .await
        .unwrap();
    assert_eq!(stats.status, StatusCode::OK, "{stats:?}");
    assert_eq!(stats.body["total"], 1);
    assert_eq!(stats.body["by_status"]["done"], 1);
    assert_eq!(stats.body["by_priority"]["high"], 1);
    assert_eq!(stats.body["overdue"], 0, "a done task is not overdue");

    // Another user sees nothing of it.
    let theirs = api.get(&format!("/v1/tasks/{id}"), &bob).await.unwrap();
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let stolen = api
        .patch(&format!("/v1/tasks/{id}"), &bob, json!({"title": "mine"}))
        .await
        .unwrap();
    assert_eq!(stolen.status, StatusCode::NOT_FOUND);

    let deleted = api
        .delete(&format!("/v1/tasks/{id}"), &alice)
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    let gone = api
        .get_at(
            &format!("/v1/tasks/{id}"),
            &alice,
            deleted.position().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let list = api.get("/v1/tasks", &alice).await.unwrap();
    assert_eq!(list.body["tasks"], json!([]));

    let history = api
        .get(&format!("/v1/tasks/{id}/history"), &alice)
        .await
        .unwrap();
    assert_eq!(history.status, StatusCode::OK, "{history:?}");
    let types: Vec<&str> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["TaskCreated", "TaskStatusChanged", "TaskDeleted"]);
    assert_eq!(
        history.body["events"][0]["actor_id"],
        alice.user_id.as_str()
    );

    let stats = api.get("/v1/stats", &alice).await.unwrap();
    assert_eq!(stats.body["total"], 0);
}

#[tokio::test]
async fn every_service_is_ready_and_stops_gracefully_on_sigterm() {
    let mut system = start().await;
    for service in [
        &mut system.command,
        &mut system.query,
        &mut system.projector,
    ] {
        let stopped = service
            .terminate(std::time::Duration::from_secs(15))
            .await
            .unwrap();
        assert!(
            stopped,
            "{} did not exit cleanly on SIGTERM:\n{}",
            service.name(),
            service.log_tail(20)
        );
    }
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
