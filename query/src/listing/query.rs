//! `ListQuery`: the parameters of `GET /v1/tasks`, parsed once into types the
//! read model takes, so a bad value never reaches SQL.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use tasklog_events::domain::{InvalidValue, Priority, Status, Tag};
use tasklog_platform::ApiError;

use super::params::QueryParams;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Longest `q` accepted: longer than any title plus description would be useless.
pub const MAX_Q_CHARS: usize = 200;

const PARAMS: &[&str] = &[
    "status",
    "priority",
    "tag",
    "q",
    "due_before",
    "due_after",
    "sort",
    "limit",
    "cursor",
    "page",
];

/// A column tasks can be listed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    DueAt,
    Priority,
    Title,
}

impl SortField {
    fn name(self) -> &'static str {
        match self {
            SortField::CreatedAt => "created_at",
            SortField::UpdatedAt => "updated_at",
            SortField::DueAt => "due_at",
            SortField::Priority => "priority",
            SortField::Title => "title",
        }
    }
}

/// A sort field and direction; ties always break on the id in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub field: SortField,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            field: SortField::CreatedAt,
            descending: true,
        }
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.descending {
            f.write_str("-")?;
        }
        f.write_str(self.field.name())
    }
}

impl FromStr for Sort {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (descending, name) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let field = match name {
            "created_at" => SortField::CreatedAt,
            "updated_at" => SortField::UpdatedAt,
            "due_at" => SortField::DueAt,
            "priority" => SortField::Priority,
            "title" => SortField::Title,
            _ => return Err(()),
        };
        Ok(Sort { field, descending })
    }
}

/// How the caller pages: after a cursor (the first page has none) or by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paging {
    /// The raw cursor; it is verified against the caller and sort later.
    Cursor(Option<String>),
    /// 1-based.
    Page(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub statuses: Vec<Status>,
    pub priorities: Vec<Priority>,
    /// Every tag must be present (`tag` may repeat).
    pub tags: Vec<String>,
    /// The substring to find in title or description, as given (matched case-insensitively).
    pub q: Option<String>,
    pub due_before: Option<DateTime<Utc>>,
    pub due_after: Option<DateTime<Utc>>,
    pub sort: Sort,
    pub limit: u32,
    pub paging: Paging,
}

impl ListQuery {
    /// Parses the raw query string of `GET /v1/tasks`.
    ///
    /// # Errors
    /// A 400 naming the first parameter at fault.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let params = QueryParams::parse(raw, PARAMS)?;
        let sort = match params.single("sort")? {
            None => Sort::default(),
            Some(s) => s.parse().map_err(|()| {
                ApiError::bad_param(
                    "sort",
                    "must be one of created_at, updated_at, due_at, priority, title, optionally prefixed with -",
                )
            })?,
        };
        let limit = params.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
        let paging = match (params.single("cursor")?, params.single("page")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_param(
                    "page",
                    "cannot be combined with cursor; use one way of paging",
                ));
            }
            (None, Some(raw)) => Paging::Page(
                raw.parse::<u32>()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| ApiError::bad_param("page", "must be a positive integer"))?,
            ),
            (Some(""), None) => {
                return Err(ApiError::bad_param("cursor", "must not be empty"));
            }
            (cursor, None) => Paging::Cursor(cursor.map(str::to_owned)),
        };
        let q = match params.single("q")? {
            Some(q) if q.chars().count() > MAX_Q_CHARS => {
                return Err(ApiError::bad_param(
                    "q",
                    format!("must be at most {MAX_Q_CHARS} characters"),
                ));
            }
            Some(q) if q.contains('\0') => {
                return Err(ApiError::bad_param("q", "must not contain NUL"));
            }
            // An empty search box asks for no filter.
            Some("") | None => None,
            Some(q) => Some(q.to_owned()),
        };
        Ok(ListQuery {
            statuses: enum_list(&params, "status")?,
            priorities: enum_list(&params, "priority")?,
            tags: tags(&params)?,
            q,
            due_before: params.time("due_before")?,
            due_after: params.time("due_after")?,
            sort,
            limit,
            paging,
        })
    }
}

/// The values of a repeatable enum parameter, without duplicates.
fn enum_list<T>(params: &QueryParams, name: &str) -> Result<Vec<T>, ApiError>
where
    T: FromStr<Err = InvalidValue> + PartialEq,
{
    let mut out = Vec::new();
    for raw in params.list(name) {
        let value = raw
            .trim()
            .parse::<T>()
            .map_err(|e| ApiError::bad_param(name, e.message))?;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    Ok(out)
}

/// Tags are stored lower-case: the filter is too, and must be a valid tag.
fn tags(params: &QueryParams) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for raw in params.list("tag") {
        let tag = Tag::parse(raw).map_err(|e| ApiError::bad_param("tag", e.message))?;
        let tag = tag.as_str().to_owned();
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<ListQuery, String> {
        ListQuery::parse(Some(raw)).map_err(|e| match e {
            ApiError::BadRequest { errors, .. } => errors[0].field.clone(),
            other => format!("not a 400: {other}"),
        })
    }

    #[test]
    fn defaults_are_newest_first_twenty_by_cursor() {
        let q = ListQuery::parse(None).unwrap();
        assert_eq!(q.sort.to_string(), "-created_at");
        assert_eq!(q.limit, 20);
        assert_eq!(q.paging, Paging::Cursor(None));
        assert!(q.statuses.is_empty() && q.priorities.is_empty() && q.tags.is_empty());
    }

    #[test]
    fn every_parameter_parses() {
        let q = parse(
            "status=todo,done&status=todo&priority=urgent&tag=Home&tag=work&q=Milk%20run\
             &due_before=2030-01-01T00:00:00Z&due_after=2029-01-01T00:00:00%2B01:00\
             &sort=-priority&limit=100&page=3",
        )
        .unwrap();
        assert_eq!(q.statuses, [Status::Todo, Status::Done]);
        assert_eq!(q.priorities, [Priority::Urgent]);
        assert_eq!(q.tags, ["home", "work"]);
        assert_eq!(q.q.as_deref(), Some("Milk run"));
        assert_eq!(
            q.due_before.unwrap().to_rfc3339(),
            "2030-01-01T00:00:00+00:00"
        );
        assert_eq!(
            q.due_after.unwrap().to_rfc3339(),
            "2028-12-31T23:00:00+00:00"
        );
        assert_eq!(
            q.sort,
            Sort {
                field: SortField::Priority,
                descending: true
            }
        );
        assert_eq!(q.limit, 100);
        assert_eq!(q.paging, Paging::Page(3));
        for s in ["created_at", "-updated_at", "due_at", "title", "-title"] {
            assert_eq!(parse(&format!("sort={s}")).unwrap().sort.to_string(), s);
        }
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let cases = [
            ("status=blocked", "status"),
            ("status=", "status"),
            ("status=todo,", "status"),
            ("priority=critical", "priority"),
            ("tag=", "tag"),
            (
                "tag=a%20very%20long%20tag%20that%20goes%20on%20and%20on",
                "tag",
            ),
            ("due_before=tomorrow", "due_before"),
            ("due_after=2030-01-01", "due_after"),
            ("sort=name", "sort"),
            ("sort=--title", "sort"),
            ("sort=title&sort=-title", "sort"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("limit=-1", "limit"),
            ("page=0", "page"),
            ("page=x", "page"),
            ("page=99999999999", "page"),
            ("page=1&cursor=abc", "page"),
            ("cursor=", "cursor"),
            ("q=%00", "q"),
            ("colour=red", "colour"),
        ];
        for (raw, field) in cases {
            assert_eq!(parse(raw).err().as_deref(), Some(field), "{raw}");
        }
        let long = "x".repeat(MAX_Q_CHARS + 1);
        assert_eq!(parse(&format!("q={long}")).err().as_deref(), Some("q"));
    }

    #[test]
    fn an_empty_search_is_no_filter() {
        assert_eq!(parse("q=").unwrap().q, None);
    }
}
