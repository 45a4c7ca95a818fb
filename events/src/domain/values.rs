//! Value types of a task that cannot hold an invalid value (parse, don't validate).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a raw value was refused; `field` names what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub message: String,
}

impl InvalidValue {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// A task's id: a UUIDv7, so ids sort by creation time.
    TaskId
);
id_type!(
    /// The id of a registered user, owner of tasks and actor of commands.
    UserId
);

impl TaskId {
    /// The event stream that holds this task's history.
    pub fn stream_id(&self) -> String {
        format!("{}{}", Self::STREAM_PREFIX, self.0)
    }

    pub const STREAM_PREFIX: &'static str = "task-";

    /// The task id of a `task-<uuid>` stream name, if it is one.
    pub fn from_stream_id(stream_id: &str) -> Option<Self> {
        stream_id
            .strip_prefix(Self::STREAM_PREFIX)
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(Self)
    }
}

/// Counts characters as a client sees them (Unicode scalar values), not bytes.
fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Postgres cannot store U+0000 in `text` or `jsonb`: a value holding it
/// could never be appended or projected, so it is refused up front.
fn refuse_nul(field: &'static str, s: &str) -> Result<(), InvalidValue> {
    if s.contains('\0') {
        return Err(InvalidValue::new(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// A title: 1 to 200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskTitle(String);

impl TaskTitle {
    pub const MAX_CHARS: usize = 200;

    /// # Errors
    /// When the trimmed title is empty, longer than 200 characters or holds a NUL.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        refuse_nul("title", trimmed)?;
        match char_len(trimmed) {
            0 => Err(InvalidValue::new("title", "must not be empty")),
            n if n > Self::MAX_CHARS => Err(InvalidValue::new(
                "title",
                format!("must be at most {} characters", Self::MAX_CHARS),
            )),
            _ => Ok(Self(trimmed.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description: up to 10,000 characters, kept as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskDescription(String);

impl TaskDescription {
    pub const MAX_CHARS: usize = 10_000;

    /// # Errors
    /// When the description is longer than 10,000 characters or holds a NUL.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        refuse_nul("description", raw)?;
        if char_len(raw) > Self::MAX_CHARS {
            return Err(InvalidValue::new(
                "description",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tag: 1 to 32 characters, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    pub const MAX_CHARS: usize = 32;

    /// # Errors
    /// When the trimmed tag is empty, longer than 32 characters or holds a NUL.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let tag = raw.trim().to_lowercase();
        refuse_nul("tags", &tag)?;
        match char_len(&tag) {
            0 => Err(InvalidValue::new("tags", "a tag must not be empty")),
            n if n > Self::MAX_CHARS => Err(InvalidValue::new(
                "tags",
                format!("a tag must be at most {} characters", Self::MAX_CHARS),
            )),
            _ => Ok(Self(tag)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Up to 20 distinct tags, in a canonical (sorted) order so equal sets compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Tags(BTreeSet<Tag>);

impl Tags {
    pub const MAX: usize = 20;

    /// Folds duplicates (after lower-casing) before counting.
    ///
    /// # Errors
    /// When a tag is invalid or more than 20 distinct tags remain.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, InvalidValue> {
        let set = raw
            .iter()
            .map(|t| Tag::parse(t.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if set.len() > Self::MAX {
            return Err(InvalidValue::new(
                "tags",
                format!("at most {} distinct tags", Self::MAX),
            ));
        }
        Ok(Self(set))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|t| t.0.clone()).collect()
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Todo,
    InProgress,
    Done,
}

/// How urgent a task is; the order of the variants is the sort rank.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
    Urgent,
}

macro_rules! string_enum {
    ($ty:ident, $field:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl FromStr for $ty {
            type Err = InvalidValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(InvalidValue::new(
                        $field,
                        format!("must be one of {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(Status, "status", { Todo => "todo", InProgress => "in_progress", Done => "done" });
string_enum!(Priority, "priority", { Low => "low", Medium => "medium", High => "high", Urgent => "urgent" });

impl Priority {
    /// The rank used for sorting: low < medium < high < urgent.
    pub fn rank(self) -> i16 {
        match self {
            Priority::Low => 0,
            Priority::Medium => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }
}

impl TryFrom<String> for TaskTitle {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<TaskTitle> for String {
    fn from(v: TaskTitle) -> Self {
        v.0
    }
}
impl TryFrom<String> for TaskDescription {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<TaskDescription> for String {
    fn from(v: TaskDescription) -> Self {
        v.0
    }
}
impl TryFrom<String> for Tag {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Tag> for String {
    fn from(v: Tag) -> Self {
        v.0
    }
}
impl TryFrom<Vec<String>> for Tags {
    type Error = InvalidValue;
    fn try_from(v: Vec<String>) -> Result<Self, Self::Error> {
        Self::parse(&v)
    }
}
impl From<Tags> for Vec<String> {
    fn from(v: Tags) -> Self {
        v.to_strings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters() {
        let cases: &[(&str, Option<&str>)] = &[
            ("  Buy milk  ", Some("Buy milk")),
            ("", None),
            ("   \t\n", None),
            (&"é".repeat(200), Some(&"é".repeat(200))),
            (&"a".repeat(201), None),
        ];
        for (raw, want) in cases {
            let got = TaskTitle::parse(raw).ok();
            assert_eq!(got.as_ref().map(TaskTitle::as_str), *want, "input {raw:?}");
        }
    }

    #[test]
    fn descriptions_allow_empty_and_stop_at_ten_thousand_characters() {
        assert!(TaskDescription::parse("").is_ok());
        assert!(TaskDescription::parse(&"ß".repeat(10_000)).is_ok());
        let err = TaskDescription::parse(&"x".repeat(10_001)).unwrap_err();
        assert_eq!(err.field, "description");
    }

    #[test]
    fn tags_are_lower_cased_folded_and_limited() {
        let tags = Tags::parse(&["Home", "home", " HOME ", "work"]).unwrap();
        assert_eq!(tags.to_strings(), vec!["home", "work"]);

        let twenty: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        assert_eq!(Tags::parse(&twenty).unwrap().len(), 20);

        let mut twenty_one = twenty.clone();
        twenty_one.push("t20".into());
        assert_eq!(Tags::parse(&twenty_one).unwrap_err().field, "tags");

        // 21 raw tags that fold to 20 are fine.
        let mut folded = twenty;
        folded.push("T0".into());
        assert_eq!(Tags::parse(&folded).unwrap().len(), 20);

        assert!(Tags::parse(&[""]).is_err());
        assert!(Tags::parse(&["x".repeat(33)]).is_err());
        assert!(Tags::parse(&["x".repeat(32)]).is_ok());
    }

    #[test]
    fn nul_characters_are_refused_because_postgres_cannot_store_them() {
        assert_eq!(TaskTitle::parse("a\0b").unwrap_err().field, "title");
        assert_eq!(
            TaskDescription::parse("a\0").unwrap_err().field,
            "description"
        );
        assert_eq!(Tags::parse(&["ok", "\0"]).unwrap_err().field, "tags");
        assert!(TaskDescription::parse("line\nbreak\ttab").is_ok());
    }

    #[test]
    fn status_and_priority_parse_only_their_names() {
        assert_eq!("in_progress".parse::<Status>().unwrap(), Status::InProgress);
        assert!("In_Progress".parse::<Status>().is_err());
        assert!("doing".parse::<Status>().is_err());
        assert_eq!("urgent".parse::<Priority>().unwrap(), Priority::Urgent);
        assert!(Priority::Low < Priority::Urgent);
        assert_eq!(
            Priority::ALL.iter().map(|p| p.rank()).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn serde_refuses_invalid_values() {
        assert!(serde_json::from_str::<TaskTitle>("\"  \"").is_err());
        assert!(serde_json::from_str::<Tags>("[\"A\",\"a\"]").is_ok());
        assert!(serde_json::from_str::<Status>("\"blocked\"").is_err());
    }

    #[test]
    fn stream_ids_round_trip() {
        let id = TaskId(Uuid::now_v7());
        assert_eq!(TaskId::from_stream_id(&id.stream_id()), Some(id));
        assert_eq!(TaskId::from_stream_id("user-123"), None);
    }
}
