//! Account values that cannot hold an invalid value: email, password, name.

use secrecy::{ExposeSecret, SecretString};
use tasklog_platform::FieldError;

/// An email address as registered: trimmed, compared case-insensitively by
/// the database (a unique index on `lower(email)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_CHARS: usize = 254;

    /// A deliberately loose check (`local@domain.tld`, no spaces): the only
    /// real test of an address is mail reaching it.
    ///
    /// # Errors
    /// When the address is empty, too long or not shaped like an address.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim();
        let bad = |m: &str| Err(FieldError::new("email", m));
        if email.chars().count() > Self::MAX_CHARS {
            return bad("must be at most 254 characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return bad("must be an email address");
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        let odd = |c: char| c.is_whitespace() || c.is_control();
        if local.is_empty() || !domain_ok || email.chars().any(odd) {
            return bad("must be an email address");
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 128 characters, kept secret so it never lands in a log.
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    /// # Errors
    /// When shorter than 8 or longer than 128 characters.
    pub fn parse(raw: String) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(FieldError::new("password", "must be 8 to 128 characters"));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// A display name: 1 to 100 characters, stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub const MAX_CHARS: usize = 100;

    /// # Errors
    /// When empty after trimming or longer than 100 characters.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        // Control characters have no place in a display name, and Postgres
        // cannot store NUL at all.
        if name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "must not contain control characters",
            ));
        }
        match name.chars().count() {
            0 => Err(FieldError::new("name", "must not be empty")),
            n if n > Self::MAX_CHARS => {
                Err(FieldError::new("name", "must be at most 100 characters"))
            }
            _ => Ok(Self(name.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_loosely_checked() {
        let cases: &[(&str, Option<&str>)] = &[
            ("  Ann@Example.com ", Some("Ann@Example.com")),
            ("a+tag@sub.example.org", Some("a+tag@sub.example.org")),
            ("", None),
            ("no-at-sign.example.com", None),
            ("@example.com", None),
            ("ann@localhost", None),
            ("ann@.example.com", None),
            ("ann@example..com", None),
            ("an n@example.com", None),
            ("a\0n@example.com", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                Email::parse(raw).ok().as_ref().map(Email::as_str),
                *want,
                "{raw:?}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long).unwrap_err().field, "email");
    }

    #[test]
    fn passwords_are_counted_in_characters() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("é".repeat(128)).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
        assert_eq!(
            Password::parse(String::new()).err().unwrap().field,
            "password"
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(UserName::parse("  Ann  ").unwrap().as_str(), "Ann");
        assert!(UserName::parse(" \t ").is_err());
        assert!(UserName::parse("A\0B").is_err());
        assert!(UserName::parse("A\u{7}B").is_err());
        assert!(UserName::parse(&"n".repeat(100)).is_ok());
        assert_eq!(UserName::parse(&"n".repeat(101)).unwrap_err().field, "name");
    }
}
