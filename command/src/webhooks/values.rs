//! Subscription values that cannot hold an invalid value: the target URL
//! (syntax and scheme; its addresses are `ssrf`'s), the event types, the
//! description; and the secret and delivery ids the service makes.

use tasklog_events::domain::TaskEvent;
use tasklog_platform::FieldError;
use uuid::Uuid;

/// Where deliveries may go, by deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Production: a delivery carries a user's data and its signature, so
    /// it travels over TLS only.
    pub require_https: bool,
    /// `WEBHOOK_ALLOW_PRIVATE=true`: loopback and private addresses allowed
    /// (local runs and tests).
    pub allow_private: bool,
}

/// A webhook target: absolute http(s) URL with a host, no credentials, no
/// fragment, at most 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub const MAX_CHARS: usize = 2_000;

    /// # Errors
    /// A `url` field error saying what is wrong.
    pub fn parse(raw: &str, policy: UrlPolicy) -> Result<Self, FieldError> {
        let bad = |m: &str| FieldError::new("url", m);
        let raw = raw.trim();
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(bad("must be at most 2000 characters"));
        }
        let url = url::Url::parse(raw).map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if !policy.require_https => {}
            "http" => return Err(bad("must use https")),
            _ => return Err(bad("must be an http or https URL")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "must not carry credentials (use the signature to authenticate us)",
            ));
        }
        if url.fragment().is_some() {
            return Err(bad("must not have a #fragment"));
        }
        Ok(Self(url))
    }

    /// The host as the resolver wants it (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The event types a subscription wants; empty means all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypes(Vec<String>);

impl EventTypes {
    /// # Errors
    /// A `types[i]` field error for an unknown type.
    pub fn parse(raw: Option<Vec<String>>) -> Result<Self, FieldError> {
        let mut types: Vec<String> = Vec::new();
        for (i, t) in raw.unwrap_or_default().iter().enumerate() {
            let t = t.trim();
            if !TaskEvent::TYPES.contains(&t) {
                return Err(FieldError::new(
                    format!("types[{i}]"),
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
        Ok(Self(types))
    }

    pub fn into_inner(self) -> Vec<String> {
        self.0
    }
}

/// At most 500 characters, trimmed; blank is none.
///
/// # Errors
/// A `description` field error when too long.
pub fn parse_description(raw: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(text) = raw.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > 500 {
        return Err(FieldError::new(
            "description",
            "must be at most 500 characters",
        ));
    }
    Ok(Some(text))
}

/// A new signing secret: 32 random bytes, hex, with a prefix that makes a
/// leaked one easy to recognise in logs and scanners.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut s = String::from("whsec_");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The `delivery_id` of one change to one subscription: the same on every
/// retry and after a worker restart (receivers deduplicate on it), new after
/// a replay (a new `epoch`), so a replayed change is not dropped as a duplicate.
pub fn delivery_id(webhook_id: Uuid, epoch: i32, commit: i64, prepare: i64) -> Uuid {
    Uuid::new_v5(
        &webhook_id,
        format!("{epoch}/{commit}/{prepare}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: UrlPolicy = UrlPolicy {
        require_https: true,
        allow_private: false,
    };
    const DEV: UrlPolicy = UrlPolicy {
        require_https: false,
        allow_private: true,
    };

    #[test]
    fn urls_are_checked_for_scheme_host_and_credentials() {
        for (raw, policy, ok) in [
            ("https://hooks.example.com/tasklog", PROD, true),
            ("http://hooks.example.com/tasklog", PROD, false),
            ("http://127.0.0.1:9000/hook", DEV, true),
            ("ftp://hooks.example.com/", DEV, false),
            ("not a url", DEV, false),
            ("/relative", DEV, false),
            ("https://user:pw@hooks.example.com/", PROD, false),
            ("https://hooks.example.com/#x", PROD, false),
            ("mailto:a@b.co", DEV, false),
        ] {
            assert_eq!(WebhookUrl::parse(raw, policy).is_ok(), ok, "{raw}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2_000));
        assert!(WebhookUrl::parse(&long, PROD).is_err());
    }

    #[test]
    fn types_must_be_event_types_and_are_deduplicated() {
        let t = EventTypes::parse(Some(vec![
            "TaskCreated".into(),
            "TaskDeleted".into(),
            "TaskCreated".into(),
        ]))
        .unwrap();
        assert_eq!(t.into_inner(), ["TaskCreated", "TaskDeleted"]);
        let e =
            EventTypes::parse(Some(vec!["TaskCreated".into(), "TaskExploded".into()])).unwrap_err();
        assert_eq!(e.field, "types[1]");
        assert!(EventTypes::parse(None).unwrap().into_inner().is_empty());
    }

    #[test]
    fn delivery_ids_are_stable_per_change_and_renewed_by_a_replay() {
        let w = Uuid::now_v7();
        assert_eq!(delivery_id(w, 0, 7, 7), delivery_id(w, 0, 7, 7));
        assert_ne!(delivery_id(w, 0, 7, 7), delivery_id(w, 0, 8, 8));
        assert_ne!(delivery_id(w, 0, 7, 7), delivery_id(w, 1, 7, 7));
        assert_ne!(
            delivery_id(w, 0, 7, 7),
            delivery_id(Uuid::now_v7(), 0, 7, 7)
        );
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 64);
    }
}
