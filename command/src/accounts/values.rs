//! Account values that cannot hold an invalid value: email, password, name.

use secrecy::{ExposeSecret, SecretString};
use tasklog_platform::FieldError;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// An email address as registered: trimmed and NFKC-normalised as shown,
/// with a key for uniqueness and lookups that also ignores case, so two
/// spellings a reader cannot tell apart (full-width letters, ligatures,
/// another case) are one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    shown: String,
    key: String,
}

impl Email {
    pub const MAX_CHARS: usize = 254;

    /// A deliberately loose check (`local@domain.tld`, no spaces): the only
    /// real test of an address is mail reaching it. Invisible format
    /// characters (zero-width spaces and joiners, direction marks, soft
    /// hyphens) are refused: they would make look-alike addresses.
    ///
    /// # Errors
    /// When the address is empty, too long or not shaped like an address.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = |m: &str| Err(FieldError::new("email", m));
        if raw.chars().any(is_format) {
            return bad("must not contain invisible format characters");
        }
        let email: String = raw.trim().nfkc().collect();
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
        Ok(Self {
            key: Self::key_of(&email),
            shown: email,
        })
    }

    /// The uniqueness key of what a client typed at login: trimmed,
    /// NFKC-normalised, lower-cased. Never fails: an address that could not
    /// be registered simply matches no account.
    pub fn key_of(raw: &str) -> String {
        let folded: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        // Lower-casing can produce characters NFKC would write otherwise.
        folded.nfkc().collect()
    }

    pub fn as_str(&self) -> &str {
        &self.shown
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

fn is_format(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// A password of 8 to 128 characters, kept secret so it never lands in a log.
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;
    /// How much of a password its strength is estimated on.
    pub const STRENGTH_CHARS: usize = 64;

    /// # Errors
    /// When shorter than 8 or longer than 128 characters.
    pub fn parse(raw: String) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(FieldError::new("password", "must be 8 to 128 characters"));
        }
        Ok(Self(SecretString::from(raw)))
    }

    /// Refuses a password an attacker would try early: a common or breached
    /// one, a keyboard walk, a date, or one made of the user's own email or
    /// name (zxcvbn's estimate below 10^6 guesses, its score 0 or 1). Only
    /// the first `STRENGTH_CHARS` characters are estimated, which bounds the
    /// work; a password that strong there is strong.
    ///
    /// # Errors
    /// When the password is too easy to guess.
    pub fn refuse_guessable(&self, user_inputs: &[&str]) -> Result<(), FieldError> {
        let head: String = self.expose().chars().take(Self::STRENGTH_CHARS).collect();
        let entropy = zxcvbn::zxcvbn(&head, user_inputs);
        if entropy.score() >= zxcvbn::Score::Two {
            return Ok(());
        }
        Err(FieldError::new(
            "password",
            "is too common or too easy to guess; a few unrelated words make a strong one",
        ))
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
    fn emails_that_look_alike_share_one_key() {
        let plain = Email::parse("ann@example.com").unwrap();
        for alike in [
            "Ann@Example.COM",
            "\u{ff41}nn@example.com", // full-width a
            " ANN@EXAMPLE.COM ",
        ] {
            assert_eq!(Email::parse(alike).unwrap().key(), plain.key(), "{alike:?}");
            assert_eq!(Email::key_of(alike), plain.key(), "{alike:?}");
        }
        assert_eq!(
            Email::parse("\u{ff21}nn@example.com").unwrap().as_str(),
            "Ann@example.com"
        );
        for invisible in [
            "a\u{200b}nn@example.com",
            "ann\u{200d}@example.com",
            "\u{202e}ann@example.com",
            "an\u{ad}n@example.com",
        ] {
            assert_eq!(
                Email::parse(invisible).unwrap_err().field,
                "email",
                "{invisible:?}"
            );
        }
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
    fn guessable_passwords_are_refused() {
        let inputs = ["ann.lee@example.com", "Ann Lee"];
        for weak in [
            "12345678",
            "password1",
            "qwertyuiop",
            "iloveyou",
            "ann.lee@example.com",
        ] {
            let password = Password::parse(weak.into()).unwrap();
            assert_eq!(
                password.refuse_guessable(&inputs).unwrap_err().field,
                "password",
                "{weak}"
            );
        }
        // Every password the tests, the demo and the load generator use.
        for strong in [
            "correct horse battery",
            "correct horse",
            "tidy-otter-42-lamp",
            "bench-password-1",
            "drill password 1",
            "demo-password-1",
            "fuzzing is a long walk",
            "vq3-Lm9-pT2x",
        ] {
            let password = Password::parse(strong.to_string()).unwrap();
            assert!(password.refuse_guessable(&inputs).is_ok(), "{strong}");
        }
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
