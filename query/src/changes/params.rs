//! The change feed's parameters: where to start (`after`, or an SSE event id
//! in `Last-Event-ID`), the filters and the page size, each refusal a 400
//! naming the parameter.

use tasklog_events::domain::TaskEvent;
use tasklog_platform::ApiError;
use uuid::Uuid;

use crate::listing::QueryParams;
use crate::read_model::{After, ChangeFilter};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 500;

/// `GET /v1/changes`, parsed.
#[derive(Debug, Clone)]
pub struct FeedQuery {
    pub after: After,
    pub filter: ChangeFilter,
    pub limit: u32,
}

impl FeedQuery {
    /// # Errors
    /// A 400 naming the first bad parameter.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let p = QueryParams::parse(
            raw,
            &["after", "limit", "type", "task_id", "since", "until"],
        )?;
        let after = p
            .single("after")?
            .map(|v| parse_after("after", v))
            .transpose()?
            .unwrap_or_default();
        let limit = p.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
        let mut types = Vec::new();
        for t in p.list("type").map(str::trim) {
            if !TaskEvent::TYPES.contains(&t) {
                return Err(ApiError::bad_param(
                    "type",
                    format!(
                        "unknown event type {t:?}; expected one of {}",
                        TaskEvent::TYPES.join(", ")
                    ),
                ));
            }
            if !types.iter().any(|k| k == t) {
                types.push(t.to_owned());
            }
        }
        let task_id = p
            .single("task_id")?
            .map(|v| {
                v.trim()
                    .parse::<Uuid>()
                    .map_err(|_| ApiError::bad_param("task_id", "must be a UUID"))
            })
            .transpose()?;
        let since = p.time("since")?;
        let until = p.time("until")?;
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                return Err(ApiError::bad_param("until", "must not be before since"));
            }
        }
        Ok(Self {
            after,
            filter: ChangeFilter {
                types,
                task_id,
                since,
                until,
            },
            limit,
        })
    }
}

/// A place to resume after: a log position (`<commit>`, as `next_after` and
/// `Ack.position` give it) or an SSE event id (`<commit>` or
/// `<commit>/<prepare>`, the latter inside a commit holding several changes).
///
/// # Errors
/// A 400 naming `name` for anything else, or a number beyond what the log
/// stores (2^63 - 1).
pub fn parse_after(name: &str, raw: &str) -> Result<After, ApiError> {
    let number = |s: &str| s.parse::<u64>().ok().and_then(|n| i64::try_from(n).ok());
    let raw = raw.trim();
    let parsed = match raw.split_once('/') {
        None => number(raw).map(|commit| After {
            commit,
            prepare: None,
        }),
        Some((c, p)) => number(c).zip(number(p)).map(|(commit, prepare)| After {
            commit,
            prepare: Some(prepare),
        }),
    };
    parsed.ok_or_else(|| {
        ApiError::bad_param(
            name,
            "must be a log position: an integer from 0 to 9223372036854775807",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_no_parameters_then_the_feed_starts_at_the_beginning_with_100() {
        let q = FeedQuery::parse(None).unwrap();
        assert_eq!(q.after, After::default());
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert!(q.filter.types.is_empty());
    }

    #[test]
    fn given_filters_then_they_are_read_and_types_deduplicated() {
        let q = FeedQuery::parse(Some(
            "after=42&limit=500&type=TaskCreated,TaskDeleted&type=TaskCreated\
             &task_id=0190a0e8-7c4a-7cc0-8000-000000000001&since=2030-01-01T00:00:00Z",
        ))
        .unwrap();
        assert_eq!(q.after.commit, 42);
        assert_eq!(q.limit, 500);
        assert_eq!(q.filter.types, ["TaskCreated", "TaskDeleted"]);
        assert!(q.filter.task_id.is_some() && q.filter.since.is_some());
    }

    #[test]
    fn given_bad_input_then_the_400_names_the_parameter() {
        for (raw, name) in [
            ("after=abc", "after"),
            ("after=-1", "after"),
            ("after=9223372036854775808", "after"),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("type=TaskExploded", "type"),
            ("task_id=42", "task_id"),
            ("since=yesterday", "since"),
            (
                "since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z",
                "until",
            ),
            ("owner=me", "owner"),
        ] {
            let e = FeedQuery::parse(Some(raw)).unwrap_err();
            assert!(e.to_string().contains(name), "{raw}: {e}");
        }
    }

    #[test]
    fn event_ids_inside_a_commit_carry_the_prepare_position() {
        assert_eq!(
            parse_after("Last-Event-ID", "7/12").unwrap(),
            After {
                commit: 7,
                prepare: Some(12)
            }
        );
        for bad in ["", "7/", "/7", "7/x", "1.5"] {
            assert!(parse_after("Last-Event-ID", bad).is_err(), "{bad:?}");
        }
    }
}
