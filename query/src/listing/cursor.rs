//! Opaque page cursors: the last row's sort key and id, and the sort they
//! belong to, signed with HMAC-SHA256 over the caller's id too, so a cursor
//! cannot be forged, edited, or replayed by another user or under another sort.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use tasklog_platform::ApiError;
use uuid::Uuid;

use super::query::{Sort, SortField};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a cursor: 128 bits is far beyond guessing.
const TAG_BYTES: usize = 16;
/// A title is at most 200 characters (800 bytes): anything much longer is not ours.
const MAX_CURSOR_CHARS: usize = 2048;
/// Domain separation, and room to change the format later.
const CONTEXT: &[u8] = b"tasklog-cursor-v1\0";

/// The key cursors are signed with. Debug never shows it.
#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

/// The sort key of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    /// `created_at`, `updated_at`, `due_at` (only `due_at` may be `None`).
    Time(Option<DateTime<Utc>>),
    /// `priority_rank`.
    Rank(i16),
    Title(String),
}

/// Where the next page starts: strictly after (`sort` order) this key and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub value: SortValue,
    pub id: Uuid,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// The sort, as in the query string.
    s: String,
    /// The sort key: microseconds since the epoch, a rank, a title, or null.
    k: Value,
    i: Uuid,
}

impl CursorKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    /// A key for this process only (development): cursors die with it.
    pub fn random() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    fn mac(&self, owner: Uuid, payload: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(CONTEXT);
        mac.update(owner.as_bytes());
        mac.update(payload);
        mac
    }

    /// A signed cursor holding `scope` (a list's sort, or `TRASH`), a sort
    /// key and an id.
    fn sign(&self, owner: Uuid, scope: String, k: Value, id: Uuid) -> String {
        let payload = Payload { s: scope, k, i: id };
        // A struct of a string, a JSON value and a UUID always serialises.
        let bytes = serde_json::to_vec(&payload).unwrap_or_default();
        let tag = self.mac(owner, &bytes).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&bytes),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// The payload of a cursor `sign` made for this caller.
    fn open(&self, owner: Uuid, cursor: &str) -> Result<Payload, ApiError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(invalid());
        }
        let (payload_b64, tag_b64) = cursor.split_once('.').ok_or_else(invalid)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| invalid())?;
        if tag.len() != TAG_BYTES {
            return Err(invalid());
        }
        self.mac(owner, &bytes)
            .verify_truncated_left(&tag)
            .map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }

    /// The cursor for the page after `keyset`, for this caller and sort.
    pub fn encode(&self, owner: Uuid, sort: Sort, keyset: &Keyset) -> String {
        let k = match &keyset.value {
            SortValue::Time(t) => time_key(*t),
            SortValue::Rank(r) => Value::from(*r),
            SortValue::Title(t) => Value::from(t.as_str()),
        };
        self.sign(owner, sort.to_string(), k, keyset.id)
    }

    /// Verifies and reads a cursor made by `encode` for this caller and sort.
    ///
    /// # Errors
    /// A 400 naming `cursor` when it is garbled, tampered with, another user's,
    /// or made under another sort.
    pub fn decode(&self, owner: Uuid, sort: Sort, cursor: &str) -> Result<Keyset, ApiError> {
        // Signed by us: what follows can only fail for a cursor of another sort.
        let payload = self.open(owner, cursor)?;
        if payload.s != sort.to_string() {
            return Err(ApiError::bad_param(
                "cursor",
                format!(
                    "was issued for sort={}, not sort={sort}; keep the sort while paging",
                    payload.s
                ),
            ));
        }
        let value = match (sort.field, &payload.k) {
            (SortField::DueAt, Value::Null) => SortValue::Time(None),
            (SortField::CreatedAt | SortField::UpdatedAt | SortField::DueAt, k) => {
                SortValue::Time(Some(time_of(k)?))
            }
            (SortField::Priority, k) => k
                .as_i64()
                .and_then(|r| i16::try_from(r).ok())
                .map(SortValue::Rank)
                .ok_or_else(invalid)?,
            (SortField::Title, Value::String(t)) => SortValue::Title(t.clone()),
            (SortField::Title, _) => return Err(invalid()),
        };
        Ok(Keyset {
            value,
            id: payload.i,
        })
    }

    /// The cursor for the trash's page after the task `id` deleted at `at`.
    pub fn encode_trash(&self, owner: Uuid, at: DateTime<Utc>, id: Uuid) -> String {
        self.sign(owner, TRASH.to_owned(), time_key(Some(at)), id)
    }

    /// Verifies and reads a cursor made by `encode_trash` for this caller.
    ///
    /// # Errors
    /// A 400 naming `cursor` when it is garbled, tampered with, another
    /// user's, or a list's.
    pub fn decode_trash(
        &self,
        owner: Uuid,
        cursor: &str,
    ) -> Result<(DateTime<Utc>, Uuid), ApiError> {
        let payload = self.open(owner, cursor)?;
        if payload.s != TRASH {
            return Err(ApiError::bad_param(
                "cursor",
                "was issued for a task list, not for the trash",
            ));
        }
        Ok((time_of(&payload.k)?, payload.i))
    }
}

/// The scope of trash cursors; no list sort is spelt like it.
const TRASH: &str = "trash";

fn invalid() -> ApiError {
    ApiError::bad_param("cursor", "is not a cursor this service issued")
}

/// A time as a cursor holds it: microseconds since the epoch, or null.
fn time_key(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::from(t.timestamp_micros()))
}

fn time_of(k: &Value) -> Result<DateTime<Utc>, ApiError> {
    k.as_i64()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sort(s: &str) -> Sort {
        s.parse().unwrap()
    }

    fn field(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { errors, .. } => errors[0].field.clone(),
            other => format!("not a 400: {other}"),
        }
    }

    #[test]
    fn cursors_round_trip_every_kind_of_sort_key() {
        let key = CursorKey::random();
        let owner = Uuid::new_v4();
        let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        for (s, value) in [
            ("-created_at", SortValue::Time(Some(t))),
            ("updated_at", SortValue::Time(Some(t))),
            ("due_at", SortValue::Time(None)),
            ("-due_at", SortValue::Time(Some(t))),
            ("priority", SortValue::Rank(3)),
            (
                "-title",
                SortValue::Title("Ünïcode \"quoted\" title".into()),
            ),
        ] {
            let keyset = Keyset {
                value,
                id: Uuid::now_v7(),
            };
            let cursor = key.encode(owner, sort(s), &keyset);
            assert!(
                cursor
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            );
            assert_eq!(key.decode(owner, sort(s), &cursor).unwrap(), keyset, "{s}");
        }
    }

    #[test]
    fn trash_cursors_round_trip_and_are_no_list_cursors() {
        let key = CursorKey::random();
        let owner = Uuid::new_v4();
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let cursor = key.encode_trash(owner, at, id);
        assert_eq!(key.decode_trash(owner, &cursor).unwrap(), (at, id));
        assert!(key.decode_trash(Uuid::new_v4(), &cursor).is_err());
        let as_list = key.decode(owner, sort("-created_at"), &cursor).unwrap_err();
        assert!(as_list.to_string().contains("sort=trash"), "{as_list}");
    }

    #[test]
    fn garbled_tampered_foreign_and_cross_sort_cursors_are_refused() {
        let key = CursorKey::random();
        let owner = Uuid::new_v4();
        let keyset = Keyset {
            value: SortValue::Rank(1),
            id: Uuid::now_v7(),
        };
        let cursor = key.encode(owner, sort("priority"), &keyset);
        let (payload, tag) = cursor.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap())
                .unwrap()
                .replace("\"k\":1", "\"k\":2"),
        );
        let bad = [
            "garbage".to_owned(),
            "a.b".to_owned(),
            format!("{payload}."),
            format!("{forged_payload}.{tag}"),
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; TAG_BYTES])),
            format!("{cursor}x"),
            "x".repeat(MAX_CURSOR_CHARS + 1),
        ];
        for c in &bad {
            assert_eq!(
                field(key.decode(owner, sort("priority"), c).unwrap_err()),
                "cursor",
                "{c}"
            );
        }
        assert!(
            key.decode(Uuid::new_v4(), sort("priority"), &cursor)
                .is_err()
        );
        assert!(
            CursorKey::random()
                .decode(owner, sort("priority"), &cursor)
                .is_err()
        );
        assert_eq!(
            field(key.decode_trash(owner, &cursor).unwrap_err()),
            "cursor"
        );
        let other_sort = key.decode(owner, sort("-priority"), &cursor).unwrap_err();
        assert!(
            other_sort.to_string().contains("sort=priority"),
            "{other_sort}"
        );
    }
}
