//! Tenant isolation: another user's task does not exist for you.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{problem, spawn_app, unique_email};

#[tokio::test]
async fn another_users_task_is_404_for_patch_and_delete_and_stays_unchanged() {
    let app = spawn_app().await;
    let ann = app.register(&unique_email()).await;
    let bob = app.register(&unique_email()).await;
    let id = app.create_task(&ann, json!({"title": "Ann's"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let patch = problem(
        app.patch_task(&bob, &id, &json!({"title": "mine now"}))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let delete = problem(app.delete_task(&bob, &id).await, StatusCode::NOT_FOUND).await;
    // Exactly what an absent task answers: nothing tells Bob it exists.
    let absent = problem(
        app.delete_task(&bob, &uuid::Uuid::now_v7().to_string())
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(patch, absent);
    assert_eq!(delete, absent);
    // Even naming the right version is a 404, not a 412 or a 200.
    let conditional = app
        .request(Method::DELETE, &format!("/v1/tasks/{id}"))
        .bearer_auth(&bob.token)
        .header("if-match", "\"0\"")
        .send()
        .await
        .unwrap();
    problem(conditional, StatusCode::NOT_FOUND).await;

    assert_eq!(app.stream(&id).await.len(), 1);
    assert_eq!(
        app.patch_task(&ann, &id, &json!({"title": "still Ann's"}))
            .await
            .status(),
        StatusCode::OK
    );
}
