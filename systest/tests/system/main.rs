//! System tests: the three real binaries as processes, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod changes;
mod edge;
mod erasure;
mod error_tracking;
mod failures;
mod gateway;
mod lifecycle;
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

async fn start_with(env: &[(&str, &str)]) -> System {
    System::start_with(binaries(), env)
        .await
        .expect("the system starts")
}
