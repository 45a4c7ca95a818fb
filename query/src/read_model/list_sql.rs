//! The SQL of a task list, built with bound parameters only, shaped so each
//! sort walks its `(owner_id, key, id)` index.
//!
//! Keyset paging compares `(key, id)` as a row, which btree indexes answer as
//! an index condition. `due_at` may be NULL: tasks without a due date sort
//! after every dated task ascending (`NULLS LAST`) and before them descending
//! (`NULLS FIRST`), exactly Postgres' defaults, so one index serves both
//! directions. A page that may cross the dated/undated boundary is a UNION ALL
//! of two index walks (each limited) instead of an OR that no index serves.

use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::listing::{Keyset, ListQuery, Sort, SortField, SortValue};

pub(super) const COLUMNS: &str = "id, title, description, status, priority, priority_rank, \
     due_at, tags, created_at, updated_at, completed_at, version";

fn column(field: SortField) -> &'static str {
    match field {
        SortField::CreatedAt => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::DueAt => "due_at",
        SortField::Priority => "priority_rank",
        // Byte order: the index is built on it, and it does not depend on the
        // database's locale.
        SortField::Title => "(title COLLATE \"C\")",
    }
}

fn order_by(sort: Sort) -> String {
    let dir = if sort.descending { "DESC" } else { "ASC" };
    let nulls = match (sort.field, sort.descending) {
        (SortField::DueAt, false) => " NULLS LAST",
        (SortField::DueAt, true) => " NULLS FIRST",
        _ => "",
    };
    format!(
        " ORDER BY {col} {dir}{nulls}, id {dir}",
        col = column(sort.field)
    )
}

/// `WHERE` with the owner and every filter of the query.
fn push_filters(b: &mut QueryBuilder<'static, Postgres>, owner: Uuid, q: &ListQuery) {
    b.push(" WHERE owner_id = ").push_bind(owner);
    if !q.statuses.is_empty() {
        let statuses: Vec<String> = q.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        b.push(" AND status = ANY(").push_bind(statuses).push(")");
    }
    if !q.priorities.is_empty() {
        let priorities: Vec<String> = q.priorities.iter().map(|p| p.as_str().to_owned()).collect();
        b.push(" AND priority = ANY(")
            .push_bind(priorities)
            .push(")");
    }
    if !q.tags.is_empty() {
        b.push(" AND tags @> ")
            .push_bind(q.tags.clone())
            .push("::text[]");
    }
    if let Some(text) = &q.q {
        // lower() in SQL, as the projector lower()s `search`: Rust and Postgres
        // disagree on a few characters. Escaping is unaffected by lower().
        b.push(" AND search LIKE '%' || lower(")
            .push_bind(escape_like(text))
            .push(") || '%'");
    }
    if let Some(t) = q.due_before {
        b.push(" AND due_at < ").push_bind(t);
    }
    if let Some(t) = q.due_after {
        b.push(" AND due_at > ").push_bind(t);
    }
}

/// Makes `%`, `_` and `\` match themselves under LIKE's default escape `\`.
pub(super) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One index walk of a keyset page.
enum Branch {
    All,
    /// `(key, id) > | < (value, id)`; for `due_at` only with a non-NULL value.
    After {
        value: SortValue,
        id: Uuid,
    },
    /// Undated tasks past `id`.
    NullAfter {
        id: Uuid,
    },
    Null,
    NotNull,
}

fn push_branch(b: &mut QueryBuilder<'static, Postgres>, sort: Sort, branch: &Branch) {
    let op = if sort.descending { "<" } else { ">" };
    let col = column(sort.field);
    match branch {
        Branch::All => {}
        Branch::After { value, id } => {
            b.push(format_args!(" AND ({col}, id) {op} ("));
            match value {
                SortValue::Time(t) => b.push_bind(*t),
                SortValue::Rank(r) => b.push_bind(*r),
                SortValue::Title(t) => b.push_bind(t.clone()).push("::text COLLATE \"C\""),
            };
            b.push(", ").push_bind(*id).push(")");
        }
        Branch::NullAfter { id } => {
            b.push(format_args!(" AND {col} IS NULL AND id {op} "))
                .push_bind(*id);
        }
        Branch::Null => {
            b.push(format_args!(" AND {col} IS NULL"));
        }
        Branch::NotNull => {
            b.push(format_args!(" AND {col} IS NOT NULL"));
        }
    }
}

/// The index walks that together give the rows after `after`, in order.
fn branches(sort: Sort, after: Option<&Keyset>) -> Vec<Branch> {
    let Some(Keyset { value, id }) = after else {
        return vec![Branch::All];
    };
    let id = *id;
    match (sort.field, value, sort.descending) {
        // Ascending, undated last: the rest of the dated ones, then every undated one.
        (SortField::DueAt, SortValue::Time(Some(_)), false) => vec![
            Branch::After {
                value: value.clone(),
                id,
            },
            Branch::Null,
        ],
        (SortField::DueAt, SortValue::Time(None), false) => vec![Branch::NullAfter { id }],
        // Descending, undated first: the rest of the undated ones, then every dated one.
        (SortField::DueAt, SortValue::Time(None), true) => {
            vec![Branch::NullAfter { id }, Branch::NotNull]
        }
        _ => vec![Branch::After {
            value: value.clone(),
            id,
        }],
    }
}

/// The rows after `after` (from the start when `None`), `limit` of them.
pub(super) fn keyset_page(
    prefix: &'static str,
    owner: Uuid,
    q: &ListQuery,
    after: Option<&Keyset>,
    limit: i64,
) -> QueryBuilder<'static, Postgres> {
    let order = order_by(q.sort);
    let walks = branches(q.sort, after);
    let mut b = QueryBuilder::new(prefix);
    let single = walks.len() == 1;
    if !single {
        b.push(format_args!("SELECT {COLUMNS} FROM ("));
    }
    for (i, walk) in walks.iter().enumerate() {
        if i > 0 {
            b.push(" UNION ALL ");
        }
        if !single {
            b.push("(");
        }
        b.push(format_args!("SELECT {COLUMNS} FROM readmodel.tasks"));
        push_filters(&mut b, owner, q);
        push_branch(&mut b, q.sort, walk);
        b.push(&order).push(" LIMIT ").push_bind(limit);
        if !single {
            b.push(")");
        }
    }
    if !single {
        b.push(") AS page")
            .push(&order)
            .push(" LIMIT ")
            .push_bind(limit);
    }
    b
}

/// Page `page` (1-based) of `limit` rows.
pub(super) fn numbered_page(
    prefix: &'static str,
    owner: Uuid,
    q: &ListQuery,
    limit: i64,
    offset: i64,
) -> QueryBuilder<'static, Postgres> {
    let mut b = QueryBuilder::new(prefix);
    b.push(format_args!("SELECT {COLUMNS} FROM readmodel.tasks"));
    push_filters(&mut b, owner, q);
    b.push(order_by(q.sort))
        .push(" LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    b
}

pub(super) fn count(
    prefix: &'static str,
    owner: Uuid,
    q: &ListQuery,
) -> QueryBuilder<'static, Postgres> {
    let mut b = QueryBuilder::new(prefix);
    b.push("SELECT count(*) FROM readmodel.tasks");
    push_filters(&mut b, owner, q);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(raw: &str, after: Option<&Keyset>) -> String {
        let q = ListQuery::parse(Some(raw)).unwrap();
        keyset_page("", Uuid::nil(), &q, after, 21).into_sql()
    }

    #[test]
    fn like_wildcards_in_the_search_match_themselves() {
        assert_eq!(escape_like(r"50%_off\now"), r"50\%\_off\\now");
    }

    #[test]
    fn every_value_is_bound_never_spliced() {
        let s = sql(
            "status=todo&priority=high&tag=x&q=%27;drop&due_before=2030-01-01T00:00:00Z&sort=title",
            Some(&Keyset {
                value: SortValue::Title("'; DROP TABLE x; --".into()),
                id: Uuid::nil(),
            }),
        );
        assert!(!s.contains("DROP") && !s.contains("drop"), "{s}");
        assert!(s.contains("((title COLLATE \"C\"), id) > ($"), "{s}");
    }

    #[test]
    fn a_due_date_page_that_may_cross_the_undated_boundary_walks_twice() {
        let dated = Keyset {
            value: SortValue::Time(chrono::DateTime::from_timestamp(0, 0)),
            id: Uuid::nil(),
        };
        let undated = Keyset {
            value: SortValue::Time(None),
            id: Uuid::nil(),
        };
        assert!(sql("sort=due_at", Some(&dated)).contains("UNION ALL"));
        assert!(!sql("sort=due_at", Some(&undated)).contains("UNION ALL"));
        assert!(sql("sort=-due_at", Some(&undated)).contains("UNION ALL"));
        assert!(!sql("sort=-due_at", Some(&dated)).contains("UNION ALL"));
        assert!(sql("sort=-due_at", None).contains("due_at DESC NULLS FIRST, id DESC"));
    }
}
