//! An error and its causes on one line, each said once.
//!
//! Many errors print their source inside their own message as well as
//! returning it from `source()` (sqlx's do, and so do ours that wrap them),
//! so `{:#}` on an `anyhow::Error` repeats the same text two or three times.

use std::fmt;

/// Displays `error: cause: cause`, leaving out a cause whose text the line
/// already holds.
pub struct Causes<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&line)
    }
}

/// `Causes` of an `anyhow::Error`.
#[must_use]
pub fn of(error: &anyhow::Error) -> Causes<'_> {
    Causes(error.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("postgres: {0}")]
    struct Wrapping(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        // Given an error that prints its source and returns it too,
        // with context on top
        let error =
            anyhow::Error::new(Wrapping(std::io::Error::other("relation x does not exist")))
                .context("verify failed");

        // When it is shown on one line
        let line = of(&error).to_string();

        // Then every message is there, none twice
        assert_eq!(line, "verify failed: postgres: relation x does not exist");
        assert!(format!("{error:#}").matches("does not exist").count() > 1);
    }

    #[test]
    fn causes_not_in_the_message_are_appended_in_order() {
        let error = anyhow::anyhow!("innermost")
            .context("middle")
            .context("outer");
        assert_eq!(of(&error).to_string(), "outer: middle: innermost");
    }
}
