//! The event-store contract against a real EventStoreDB/KurrentDB server, when
//! `EVENT_STORE_URL` (or `EVENTSTORE_URL`) names one; otherwise every case
//! passes without running and the run says so once, loudly.
//!
//! Example: `EVENT_STORE_URL=esdb://admin:changeit@localhost:2113?tls=false
//! cargo test -p tasklog-events --features eventstoredb --test eventstoredb`.
//! The cases write fresh random `task-` streams, so a shared server is fine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should fail loudly

#[cfg_attr(not(feature = "eventstoredb"), allow(dead_code))]
mod contract;

use std::io::Write;
use std::sync::Once;

static SAID: Once = Once::new();

/// Written past the test harness's capture, so it shows even when tests pass.
fn say_once(line: &str) {
    SAID.call_once(|| {
        let _ = writeln!(std::io::stderr(), "{line}");
    });
}

fn configured_url() -> Option<String> {
    ["EVENT_STORE_URL", "EVENTSTORE_URL"]
        .into_iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
}

#[cfg(not(feature = "eventstoredb"))]
#[test]
fn eventstoredb_contract_suite() {
    say_once(
        "eventstoredb contract suite SKIPPED: built without the `eventstoredb` feature \
         (cargo test --features eventstoredb)",
    );
    // Even so, a URL meant for this suite must not be silently ignored.
    assert!(
        configured_url().is_none(),
        "EVENT_STORE_URL is set but this build lacks the eventstoredb feature"
    );
}

#[cfg(feature = "eventstoredb")]
mod esdb {
    use std::sync::Arc;

    use tasklog_events::EventStore;
    use tasklog_events::store::eventstoredb::EsdbEventStore;
    use tasklog_events::store::{Backend, backend_for};

    use super::{configured_url, say_once};
    use crate::contract::Harness;

    async fn eventstoredb() -> Option<Harness> {
        let Some(url) = configured_url() else {
            say_once(
                "eventstoredb contract suite SKIPPED: EVENT_STORE_URL is not set \
                 (no EventStoreDB server here)",
            );
            return None;
        };
        let Backend::EventStoreDb(url) = backend_for(Some(&url)).expect("EVENT_STORE_URL") else {
            panic!("EVENT_STORE_URL does not name an EventStoreDB/KurrentDB server");
        };
        say_once("eventstoredb contract suite RUNNING against EVENT_STORE_URL");
        let store = EsdbEventStore::connect(&url).expect("EventStoreDB client");
        store.ping().await.expect("EventStoreDB answers");
        Some(Harness {
            store: Arc::new(store),
            _guard: Box::new(()),
        })
    }

    crate::contract_suite!(eventstoredb);

    /// EventStoreDB checks event ids per stream only: an id already stored under
    /// another stream is written again. Nothing short of a log-wide id index
    /// (which the server lacks) can refuse it; run with `--include-ignored` to
    /// see it fail against a server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "EventStoreDB keeps event ids per stream; no log-wide id index"]
    async fn a_known_id_under_another_stream_is_an_idempotency_mismatch() {
        let Some(h) = eventstoredb().await else {
            return;
        };
        crate::contract::a_known_id_under_another_stream_is_an_idempotency_mismatch(&*h.store)
            .await;
    }
}
