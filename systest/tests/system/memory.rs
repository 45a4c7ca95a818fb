//! The services' memory: no transparent huge pages, so their RSS counts the
//! 4 KiB pages in use, not a whole 2 MiB page for each live object in one
//! (a quarter to a third of each service's peak RSS, bench/README.md
//! "Twelfth session").

use reqwest::StatusCode;
use serde_json::json;

use crate::start_with;

/// The kernel's THP mode (`always`, `madvise` or `never`), when it has THP.
fn thp_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = text.find('[')? + 1;
    let end = text[start..].find(']')? + start;
    Some(text[start..end].to_owned())
}

fn anon_huge_pages_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("AnonHugePages:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn the_services_hold_no_transparent_huge_pages() {
    let Some(mode) = thp_mode() else {
        eprintln!("SKIPPED: this kernel has no transparent huge pages");
        return;
    };
    if mode == "never" {
        eprintln!("SKIPPED: transparent huge pages are off on this machine (never)");
        return;
    }
    // Under `madvise` only the build keeps mimalloc from asking (`no_thp`);
    // under `always` the kernel gives them unasked, and the images turn
    // them off as deploy/Dockerfile does.
    let env: &[(&str, &str)] = if mode == "always" {
        &[("MIMALLOC_ALLOW_THP", "0")]
    } else {
        &[]
    };
    let system = start_with(env).await;
    let api = system.api();
    // Fresh memory in each service: an Argon2 hash (19 MiB), writes, the
    // projection and a read.
    let alice = api.register().await.unwrap();
    for i in 0..20 {
        let created = api
            .post("/v1/tasks", &alice, json!({"title": format!("task {i}")}))
            .await
            .unwrap();
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    }
    let list = api.get("/v1/tasks?limit=50", &alice).await.unwrap();
    assert_eq!(list.status, StatusCode::OK, "{list:?}");

    for service in [&system.command, &system.query, &system.projector] {
        let pid = service.pid().unwrap();
        assert_eq!(
            anon_huge_pages_kib(pid),
            0,
            "{} holds transparent huge pages (THP {mode})",
            service.name()
        );
    }
}
