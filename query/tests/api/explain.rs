//! Every list query the service can build walks an index: EXPLAIN on a read
//! model of 200k tasks over 2k owners (`EXPLAIN_ROWS`/`EXPLAIN_OWNERS` scale it,
//! e.g. 1000000/10000 for the target) must show no Seq Scan on tasks.
//! `--nocapture` prints which index each query uses.

use std::collections::BTreeSet;

use sqlx::PgPool;
use tasklog_platform::testing::TestDb;
use tasklog_query::listing::{ListQuery, Paging};
use tasklog_query::read_model;
use uuid::Uuid;

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `rows` tasks spread evenly over `owners`, with every column varied.
async fn seed(db: &PgPool, rows: i64, owners: i64) {
    tasklog_readmodel::migrate(db).await.unwrap();
    // In chunks: the Postgres log shows events only below the oldest running
    // transaction of the whole server, so one long insert would stall every
    // other test's projection until it commits.
    const CHUNK: i64 = 20_000;
    let mut from = 1;
    while from <= rows {
        sqlx::query(
            "INSERT INTO readmodel.tasks (id, owner_id, title, description, status, priority, \
             due_at, tags, created_at, updated_at, completed_at, version) \
             SELECT gen_random_uuid(), \
                    ('00000000-0000-0000-0000-' || lpad(to_hex(g % $2), 12, '0'))::uuid, \
                    'task ' || g || ' ' || md5(g::text), md5((g * 7)::text), \
                    (ARRAY['todo','in_progress','done'])[1 + g % 3], \
                    (ARRAY['low','medium','high','urgent'])[1 + g % 4], \
                    CASE WHEN g % 5 = 0 THEN NULL ELSE now() + (g % 1000) * interval '1 hour' END, \
                    ARRAY['tag' || (g % 50), 'all'], \
                    now() - g * interval '1 second', now() - (g % 977) * interval '1 minute', NULL, 0 \
             FROM generate_series($1, $3) g",
        )
        .bind(from)
        .bind(owners)
        .bind((from + CHUNK - 1).min(rows))
        .execute(db)
        .await
        .unwrap();
        from += CHUNK;
    }
    // The view cannot be analysed: its current generation's table can.
    let generation: i32 = sqlx::query_scalar(
        "SELECT generation FROM readmodel.checkpoints WHERE projection = 'tasks'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::raw_sql(&format!("VACUUM ANALYZE readmodel.tasks_g{generation}"))
        .execute(db)
        .await
        .unwrap();
}

fn indexes(plan: &str) -> BTreeSet<String> {
    plan.split(['\n'])
        .filter_map(|line| {
            let line = line.trim_start_matches([' ', '-', '>']);
            [
                "Index Scan using ",
                "Index Only Scan using ",
                "Bitmap Index Scan on ",
                "Index Scan Backward using ",
            ]
            .iter()
            .find_map(|p| line.split_once(p).map(|(_, rest)| rest))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .collect()
}

#[tokio::test]
async fn every_list_query_plan_uses_an_index() {
    let rows = env_or("EXPLAIN_ROWS", 200_000);
    let owners = env_or("EXPLAIN_OWNERS", 2_000);
    let db = TestDb::new().await.unwrap();
    seed(db.pool(), rows, owners).await;
    let owner: Uuid = "00000000-0000-0000-0000-000000000007".parse().unwrap();
    let mut conn = db.pool().acquire().await.unwrap();

    let sorts = [
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
    ];
    let filters = [
        "",
        "status=todo",
        "status=todo,in_progress",
        "priority=urgent",
        "priority=high,urgent",
        "tag=tag7",
        "tag=tag7&tag=all",
        "q=abc",
        "q=task%201",
        "due_before=2999-01-01T00:00:00Z",
        "due_after=2000-01-01T00:00:00Z&due_before=2999-01-01T00:00:00Z",
        "status=done&priority=low&tag=all&q=task",
    ];
    let mut report = Vec::new();
    for sort in sorts {
        for filter in filters {
            let query = format!("sort={sort}&limit=20&{filter}");
            let q = ListQuery::parse(Some(&query)).unwrap();
            // A cursor from the middle of the list, so keyset conditions are planned too.
            let first = read_model::list(&mut *conn, owner, &q, None).await.unwrap();
            let mut afters = vec![None];
            if let Some(next) = first.next {
                afters.push(Some(next));
            }
            // Undated rows sort at one end: plan a cursor sitting among them too.
            if sort.ends_with("due_at") && filter.is_empty() {
                let undated =
                    ListQuery::parse(Some(&format!("sort={sort}&limit=100&{filter}"))).unwrap();
                let rows = read_model::list(&mut *conn, owner, &undated, None)
                    .await
                    .unwrap();
                if let Some(t) = rows.tasks.iter().find(|t| t.due_at.is_none()) {
                    afters.push(Some(t.keyset(q.sort.field)));
                }
            }
            for after in &afters {
                for plan in read_model::explain_list(&mut conn, owner, &q, after.as_ref())
                    .await
                    .unwrap()
                {
                    assert!(
                        !plan.contains("Seq Scan"),
                        "?{query} (cursor: {}):\n{plan}",
                        after.is_some()
                    );
                    report.push(format!(
                        "{query} cursor={} -> {:?}",
                        after.is_some(),
                        indexes(&plan)
                    ));
                }
            }
            let mut paged = q.clone();
            paged.paging = Paging::Page(3);
            for plan in read_model::explain_list(&mut conn, owner, &paged, None)
                .await
                .unwrap()
            {
                assert!(!plan.contains("Seq Scan"), "?{query}&page=3:\n{plan}");
                report.push(format!("{query}&page=3 -> {:?}", indexes(&plan)));
            }
        }
    }
    println!("{rows} rows over {owners} owners:\n{}", report.join("\n"));
}
