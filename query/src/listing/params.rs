//! A query string as named values, refusing unknown names and repeats of
//! single-valued ones, each refusal a 400 naming the parameter.

use chrono::{DateTime, Utc};
use tasklog_platform::ApiError;

/// The decoded `name=value` pairs of a query string, in order.
#[derive(Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Decodes `raw` (without the `?`), accepting only `allowed` names.
    ///
    /// # Errors
    /// A 400 naming the first unknown parameter.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        if let Some((name, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_param(
                name,
                format!("unknown parameter; expected one of {}", allowed.join(", ")),
            ));
        }
        Ok(Self(pairs))
    }

    /// Every value of `name`, comma-separated lists split, in order.
    pub fn list(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
    }

    /// The one value of `name`, if given.
    ///
    /// # Errors
    /// A 400 when it is given more than once.
    pub fn single(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(ApiError::bad_param(name, "may be given only once"));
        }
        Ok(first)
    }

    /// The one value of `limit`, from 1 to `max`, or `default`.
    ///
    /// # Errors
    /// A 400 naming `limit` when repeated, not a number, or out of range.
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.single("limit")? {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=max).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_param("limit", format!("must be an integer from 1 to {max}"))
                }),
        }
    }

    /// The one value of `name` as an RFC 3339 time.
    ///
    /// # Errors
    /// A 400 when repeated or not a time.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.single(name)?
            .map(|raw| parse_time(name, raw))
            .transpose()
    }
}

/// Parses an RFC 3339 time. A space where the offset's `+` belongs is taken
/// as `+`: clients often forget that `+` in a query string means a space.
///
/// # Errors
/// A 400 naming `name`.
pub fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    let repaired = raw.trim_start().replace(' ', "+");
    DateTime::parse_from_rfc3339(&repaired)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_param(name, "must be an RFC 3339 time, e.g. 2030-01-31T12:00:00Z")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_comma_separated_values_are_one_list() {
        let p =
            QueryParams::parse(Some("status=todo,done&status=in_progress"), &["status"]).unwrap();
        assert_eq!(
            p.list("status").collect::<Vec<_>>(),
            ["todo", "done", "in_progress"]
        );
    }

    #[test]
    fn unknown_and_repeated_single_parameters_are_named() {
        let e = QueryParams::parse(Some("stauts=todo"), &["status"]).unwrap_err();
        assert!(e.to_string().contains("stauts"), "{e}");
        let p = QueryParams::parse(Some("sort=title&sort=-title"), &["sort"]).unwrap();
        assert!(p.single("sort").unwrap_err().to_string().contains("sort"));
    }

    #[test]
    fn times_accept_offsets_even_with_an_unencoded_plus() {
        let utc = parse_time("t", "2030-01-01T12:00:00Z").unwrap();
        assert_eq!(parse_time("t", "2030-01-01T14:00:00 02:00").unwrap(), utc);
        assert_eq!(parse_time("t", "2030-01-01T14:00:00+02:00").unwrap(), utc);
        for bad in ["", "yesterday", "2030-01-01", "2030-13-01T00:00:00Z"] {
            assert!(parse_time("t", bad).is_err(), "{bad:?}");
        }
    }
}
