//! The password policy.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};

use crate::validation::{ValidationError, codes};

const FIELD: &str = "password";

/// The 10,000 most common passwords (source and licence in `data/README.md`), lowercase.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        // Shorter ones are refused as too short before the list is asked.
        .filter(|line| line.chars().count() >= Password::MIN_CHARS)
        .collect()
});

/// A password that meets Keel's policy: 8 to 128 characters (Unicode scalar values, not bytes),
/// anything printable, no control characters, not one of the 10,000 most common passwords
/// (compared without case and surrounding white space), and no composition rules (NIST SP
/// 800-63B).
///
/// It is kept exactly as sent, neither trimmed nor normalised, because it is verified exactly as
/// sent: a user whose password ends in a space must still get in. It never appears in `Debug`
/// output and cannot be serialized.
pub struct Password(SecretString);

impl Password {
    /// The shortest password accepted, in characters.
    pub const MIN_CHARS: usize = 8;
    /// The longest password accepted, in characters; it also bounds the work a hash costs.
    pub const MAX_CHARS: usize = 128;

    /// Checks `input` against the policy. Whatever the outcome, the caller's buffer is wiped.
    pub fn parse(mut input: String) -> Result<Self, ValidationError> {
        let outcome = Self::check(&input).map(|()| {
            // Copying into an exact-size secret, then wiping the original, leaves no stray copy
            // behind (turning the `String` into a boxed str could reallocate and leave one).
            Self(SecretString::from(input.as_str()))
        });
        input.zeroize();
        outcome
    }

    fn check(input: &str) -> Result<(), ValidationError> {
        if input.is_empty() {
            return Err(invalid(codes::REQUIRED, "a password is required"));
        }
        if input.chars().any(char::is_control) {
            return Err(invalid(
                codes::CONTROL_CHARACTERS,
                "a password must not contain control characters",
            ));
        }
        let chars = input.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(invalid(
                codes::TOO_SHORT,
                format!("a password has at least {} characters", Self::MIN_CHARS),
            ));
        }
        if chars > Self::MAX_CHARS {
            return Err(invalid(
                codes::TOO_LONG,
                format!("a password has at most {} characters", Self::MAX_CHARS),
            ));
        }
        if Self::is_common(input) {
            return Err(invalid(
                codes::TOO_COMMON,
                "this password is one of the most common ones; choose another",
            ));
        }
        Ok(())
    }

    /// Whether `input` is on the list of common passwords, ignoring case and surrounding white
    /// space (so `Password1 ` is as common as `password1`).
    pub fn is_common(input: &str) -> bool {
        let trimmed = input.trim();
        if trimmed.bytes().any(|b| b.is_ascii_uppercase()) || !trimmed.is_ascii() {
            COMMON.contains(trimmed.to_lowercase().as_str())
        } else {
            COMMON.contains(trimmed)
        }
    }

    /// The password itself, for hashing or verifying. Keep what it returns out of logs.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(FIELD, code, message)
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn code_of(input: &str) -> &'static str {
        Password::parse(input.to_owned()).unwrap_err().code
    }

    #[test]
    fn passwords_are_kept_exactly_as_sent() {
        for sent in [
            "correct horse battery staple",
            "  spaces around  ",
            "Ünïcödé-pässwörd",
            "zq8!kd2#",
        ] {
            assert_eq!(
                Password::parse(sent.to_owned()).unwrap().expose_secret(),
                sent
            );
        }
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert_eq!(code_of(""), codes::REQUIRED);
        assert_eq!(code_of("1234567"), codes::TOO_SHORT);
        assert!(Password::parse("zq8!kd2#".to_owned()).is_ok());
        // Seven characters, fourteen bytes: still too short.
        assert_eq!(code_of(&"é".repeat(7)), codes::TOO_SHORT);
        assert!(Password::parse("é".repeat(8)).is_ok());
        // 128 four-byte characters are 512 bytes and still allowed.
        assert!(Password::parse("🔑".repeat(128)).is_ok());
        assert_eq!(code_of(&"a".repeat(129)), codes::TOO_LONG);
    }

    #[test]
    fn the_most_common_passwords_are_refused_whatever_their_case() {
        for common in [
            "password",
            "12345678",
            "iloveyou1",
            "PassWord1",
            " qwertyuiop ",
        ] {
            assert_eq!(code_of(common), codes::TOO_COMMON, "{common:?}");
        }
        // The list has 10,000 entries; the last of them is refused too.
        let list = include_str!("../data/common-passwords.txt");
        assert_eq!(list.lines().count(), 10_000);
        let last_long = list.lines().rev().find(|p| p.chars().count() >= 8).unwrap();
        assert_eq!(code_of(last_long), codes::TOO_COMMON, "{last_long}");
        // Near misses are not common.
        assert!(Password::parse("password-of-ada".to_owned()).is_ok());
        assert!(Password::parse("correct horse battery".to_owned()).is_ok());
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(code_of("password\n"), codes::CONTROL_CHARACTERS);
        assert_eq!(code_of("pass\u{0000}word"), codes::CONTROL_CHARACTERS);
        assert_eq!(code_of("\tpassword"), codes::CONTROL_CHARACTERS);
    }

    #[test]
    fn debug_output_and_errors_never_show_the_password() {
        let password = Password::parse("hunter2hunter2".to_owned()).unwrap();
        assert_eq!(format!("{password:?}"), "Password([REDACTED])");
        let error = Password::parse("hunter2".to_owned()).unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
        assert_eq!(error.field, "password");
    }

    proptest! {
        #[test]
        fn any_printable_text_of_allowed_length_is_accepted(input in "\\PC{8,128}") {
            let password = Password::parse(input.clone()).unwrap();
            prop_assert_eq!(password.expose_secret(), input.as_str());
        }

        #[test]
        fn parsing_never_panics_and_respects_the_bounds(input in any::<String>()) {
            let chars = input.chars().count();
            let has_control = input.chars().any(char::is_control);
            let accepted = Password::parse(input).is_ok();
            prop_assert_eq!(accepted, (8..=128).contains(&chars) && !has_control);
        }
    }
}
