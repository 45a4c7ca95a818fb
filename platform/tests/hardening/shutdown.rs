//! Shutdown: readiness turns 503 first, and a request in flight when the
//! signal comes still gets its answer.

use std::time::Duration;

use tasklog_platform::server::DrainSettings;

use crate::support::{Options, spawn_with};

#[tokio::test]
async fn readiness_flips_at_shutdown_and_in_flight_requests_finish() {
    let app = spawn_with(Options {
        drain: DrainSettings {
            ready_delay: Duration::from_millis(300),
            drain_timeout: Duration::from_secs(10),
            ..DrainSettings::default()
        },
        ..Options::default()
    })
    .await;
    assert_eq!(app.get("/health/ready").send().await.unwrap().status(), 200);

    let in_flight = tokio::spawn(app.get("/v1/slow").send());
    // The slow request is in the handler once the server has counted it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.shutdown.cancel();
    let ready = app.get("/health/ready").send().await.unwrap();
    assert_eq!(
        ready.status(),
        503,
        "readiness turns as soon as shutdown starts"
    );
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "draining");

    let answered = in_flight.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "done");
    let live = app.get("/health/live");
    app.handle.await.unwrap().unwrap();
    assert!(app.health.is_draining());
    assert!(live.send().await.is_err(), "the listener is closed");
}
