//! The JSON bodies of task commands and their conversion into parsed domain
//! values; every refused field is named in one 422.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use tasklog_events::domain::{Priority, Status, Tags, TaskDescription, TaskPatch, TaskTitle};
use tasklog_platform::ApiError;
use utoipa::ToSchema;

use crate::tasks::NewTask;
use crate::validation::{Validator, field_error};

/// `todo`, `in_progress` or `done` (documentation only; parsed by the domain).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum StatusName {
    Todo,
    InProgress,
    Done,
}

/// `low`, `medium`, `high` or `urgent` (documentation only).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum PriorityName {
    Low,
    Medium,
    High,
    Urgent,
}

/// `NewTask`. Serialised again (fixed field order) to hash the body for
/// `Idempotency-Key`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewTask)]
pub(crate) struct NewTaskRequest {
    /// 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    title: String,
    /// Up to 10,000 characters.
    #[schema(max_length = 10000)]
    description: Option<String>,
    #[schema(value_type = Option<StatusName>)]
    status: Option<String>,
    #[schema(value_type = Option<PriorityName>)]
    priority: Option<String>,
    due_at: Option<DateTime<Utc>>,
    /// Up to 20 tags of 1 to 32 characters; stored lower-case, duplicates folded.
    tags: Option<Vec<String>>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `TaskPatch`: fields left out are kept; `due_at: null` clears the due date;
/// `null` for any other field is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskPatch)]
pub(crate) struct TaskPatchRequest {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200, pattern = r"\S")]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 10000)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<StatusName>)]
    status: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PriorityName>)]
    priority: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>, nullable = true)]
    due_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    tags: Option<Option<Vec<String>>>,
}

impl NewTaskRequest {
    pub(crate) fn parse(&self) -> Result<NewTask, ApiError> {
        let mut v = Validator::default();
        let title = v.check(TaskTitle::parse(&self.title).map_err(field_error));
        let description = v.check(
            TaskDescription::parse(self.description.as_deref().unwrap_or_default())
                .map_err(field_error),
        );
        let status = v.check(parse_or_default::<Status>(self.status.as_deref()));
        let priority = v.check(parse_or_default::<Priority>(self.priority.as_deref()));
        let tags =
            v.check(Tags::parse(self.tags.as_deref().unwrap_or_default()).map_err(field_error));
        v.check(rfc3339_year(self.due_at.as_ref()));
        v.finish(|| {
            Some(NewTask {
                title: title?,
                description: description?,
                status: status?,
                priority: priority?,
                due_at: self.due_at,
                tags: tags?,
            })
        })
    }
}

/// RFC 3339 has four-digit years; chrono would accept more and answer times
/// no client can parse back.
fn rfc3339_year(at: Option<&DateTime<Utc>>) -> Result<(), tasklog_platform::FieldError> {
    use chrono::Datelike;
    match at {
        Some(t) if !(1..=9999).contains(&t.year()) => Err(tasklog_platform::FieldError::new(
            "due_at",
            "must be an RFC 3339 time in the years 0001 to 9999",
        )),
        _ => Ok(()),
    }
}

fn parse_or_default<T>(raw: Option<&str>) -> Result<T, tasklog_platform::FieldError>
where
    T: std::str::FromStr<Err = tasklog_events::domain::InvalidValue> + Default,
{
    raw.map_or_else(|| Ok(T::default()), str::parse)
        .map_err(field_error)
}

/// A present, non-null value parsed; `null` refused by name.
fn present<T, U>(
    v: &mut Validator,
    field: &str,
    raw: &Option<Option<U>>,
    parse: impl FnOnce(&U) -> Result<T, tasklog_events::domain::InvalidValue>,
) -> Option<T> {
    match raw {
        None => None,
        Some(None) => {
            v.refuse(field, "must not be null");
            None
        }
        Some(Some(value)) => v.check(parse(value).map_err(field_error)),
    }
}

impl TaskPatchRequest {
    pub(crate) fn parse(&self) -> Result<TaskPatch, ApiError> {
        let mut v = Validator::default();
        let title = present(&mut v, "title", &self.title, |s| TaskTitle::parse(s));
        let description = present(&mut v, "description", &self.description, |s| {
            TaskDescription::parse(s)
        });
        let status = present(&mut v, "status", &self.status, |s| s.parse::<Status>());
        let priority = present(&mut v, "priority", &self.priority, |s| {
            s.parse::<Priority>()
        });
        let tags = present(&mut v, "tags", &self.tags, |t| Tags::parse(t));
        v.check(rfc3339_year(self.due_at.flatten().as_ref()));
        v.finish(|| {
            Some(TaskPatch {
                title,
                description,
                status,
                priority,
                due_at: self.due_at,
                tags,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: &str) -> Result<TaskPatch, ApiError> {
        serde_json::from_str::<TaskPatchRequest>(json)
            .unwrap()
            .parse()
    }

    #[test]
    fn due_at_null_clears_and_absent_keeps() {
        assert_eq!(patch(r#"{"due_at": null}"#).unwrap().due_at, Some(None));
        assert_eq!(patch("{}").unwrap().due_at, None);
        assert!(
            patch(r#"{"due_at": "2030-01-01T00:00:00Z"}"#)
                .unwrap()
                .due_at
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn due_dates_keep_to_four_digit_years() {
        assert!(patch(r#"{"due_at": "9999-12-31T23:59:59Z"}"#).is_ok());
        assert!(patch(r#"{"due_at": "+10000-01-01T00:00:00Z"}"#).is_err());
        let body: NewTaskRequest =
            serde_json::from_str(r#"{"title": "T", "due_at": "-0001-01-01T00:00:00Z"}"#).unwrap();
        assert!(body.parse().is_err());
    }

    #[test]
    fn null_is_refused_for_every_other_field_by_name() {
        let Err(ApiError::Unprocessable { errors, .. }) =
            patch(r#"{"title": null, "status": null, "tags": null}"#)
        else {
            panic!("expected a 422");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["title", "status", "tags"]);
    }

    #[test]
    fn a_new_task_gets_the_defaults_and_reports_all_bad_fields() {
        let body: NewTaskRequest = serde_json::from_str(r#"{"title": " Milk "}"#).unwrap();
        let task = body.parse().unwrap();
        assert_eq!(
            (task.title.as_str(), task.status, task.priority),
            ("Milk", Status::Todo, Priority::Medium)
        );
        let body: NewTaskRequest =
            serde_json::from_str(r#"{"title": " ", "priority": "asap", "tags": [""]}"#).unwrap();
        let Err(ApiError::Unprocessable { errors, .. }) = body.parse() else {
            panic!("expected a 422");
        };
        assert_eq!(errors.len(), 3);
    }
}
