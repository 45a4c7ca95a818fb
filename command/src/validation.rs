//! Collects every field error of a request body, so a client learns all that
//! is wrong with it in one 422 instead of one field per round trip.

use tasklog_events::domain::InvalidValue;
use tasklog_platform::{ApiError, FieldError};

#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

/// A domain value's refusal as a field error of the request.
pub fn field_error(e: InvalidValue) -> FieldError {
    FieldError::new(e.field, e.message)
}

impl Validator {
    /// Keeps the value, or records why it was refused.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.errors.push(e)).ok()
    }

    /// Records a refusal found outside a parser.
    pub fn refuse(&mut self, field: &str, message: &str) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Builds the result when nothing was refused. `build` sees every checked
    /// value present (its `?`s cannot fail then).
    ///
    /// # Errors
    /// A 422 naming every refused field.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        if !self.errors.is_empty() {
            let detail = self
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ApiError::Unprocessable {
                detail,
                errors: self.errors,
            });
        }
        build().ok_or_else(|| ApiError::internal(anyhow::anyhow!("validated value missing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refused_field_is_reported_together() {
        let mut v = Validator::default();
        let a = v.check::<u8>(Err(FieldError::new("title", "must not be empty")));
        let b = v.check(Ok(2_u8));
        v.refuse("tags", "too many");
        let Err(ApiError::Unprocessable { detail, errors }) = v.finish(|| Some((a?, b?))) else {
            panic!("expected a 422");
        };
        assert_eq!(errors.len(), 2);
        assert_eq!(detail, "title: must not be empty; tags: too many");
    }

    #[test]
    fn nothing_refused_builds_the_value() {
        let mut v = Validator::default();
        let a = v.check(Ok(1_u8));
        assert_eq!(v.finish(|| Some(a? + 1)).unwrap(), 2);
    }
}
