//! System tests: the three real binaries as processes, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod changes;
mod edge;
mod erasure;
mod error_tracking;
mod failures;
mod gateway;
mod lifecycle;
mod memory;
mod otel;
mod readmodel_server;
mod redis_cluster;
mod replicas;
mod webhooks;

use tasklog_systest::{Binaries, System};

fn binaries() -> Binaries {
    Binaries {
        command: env!("CARGO_BIN_EXE_systest-command").into(),
        query: env!("CARGO_BIN_EXE_systest-query").into(),
        projector: env!("CARGO_BIN_EXE_systest-projector").into(),
    }
}

async fn start() -> System {
    System::start(binaries()).await.expect("the system starts")
}

/// Waits until `tasklog-projector verify` is green (the Redis counts may
/// still be catching up a moment after the tables), at most 20 s.
async fn verify_passes(system: &System) {
    let mut last = String::new();
    for _ in 0..40 {
        let (ok, output) = system.projector_cli(&["verify"]).await.unwrap();
        if ok {
            return;
        }
        last = output;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("projector verify keeps failing:\n{last}");
}

async fn start_with(env: &[(&str, &str)]) -> System {
    System::start_with(binaries(), env)
        .await
        .expect("the system starts")
}
