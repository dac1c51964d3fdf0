//! The name a user is shown by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unicode_normalization::UnicodeNormalization;

use crate::email::Email;
use crate::validation::{
    ValidationError, codes, is_forbidden_in_text, is_invisible, shapes_visible_text,
};

const FIELD: &str = "displayName";

/// A user's display name: trimmed, in Unicode NFC, 1 to 64 characters, no control characters,
/// no invisible bidirectional overrides (which would let one name render as another), and no
/// invisible characters but the joiners and selectors that shape visible text (emoji
/// sequences, Persian and Indic scripts). A name must show at least one visible character.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// The longest name accepted, in characters.
    pub const MAX_CHARS: usize = 64;

    /// Checks `input` (surrounding whitespace is ignored) and returns the name.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let name: String = input.trim().nfc().collect();
        if name.is_empty() {
            return Err(invalid(codes::REQUIRED, "a display name must not be empty"));
        }
        if name.chars().any(is_forbidden_in_text) {
            return Err(invalid(
                codes::CONTROL_CHARACTERS,
                "a display name must not contain control characters",
            ));
        }
        if name
            .chars()
            .any(|c| is_invisible(c) && !shapes_visible_text(c))
        {
            return Err(invalid(
                codes::INVISIBLE_CHARACTERS,
                "a display name must not contain invisible characters",
            ));
        }
        if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
            return Err(invalid(
                codes::INVISIBLE_CHARACTERS,
                "a display name must show at least one visible character",
            ));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(invalid(
                codes::TOO_LONG,
                format!("a display name has at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(name))
    }

    /// A name as an earlier release stored it, which may predate the rules on invisible
    /// characters: kept as it is (in NFC) when it holds at least one character, so an old
    /// account keeps reading back. Never use it for new input.
    pub fn from_stored(stored: &str) -> Result<Self, ValidationError> {
        Self::parse(stored).or_else(|error| {
            if error.code == codes::INVISIBLE_CHARACTERS && !stored.trim().is_empty() {
                Ok(Self(stored.trim().nfc().collect()))
            } else {
                Err(error)
            }
        })
    }

    /// The default name of a user who gave none: the local part of their email as they typed
    /// it, cut to [`Self::MAX_CHARS`] characters.
    pub fn from_email(email: &Email) -> Self {
        // An `Email`'s local part is non-empty, in NFC and free of whitespace and of forbidden
        // and invisible characters, so the result satisfies `parse` (but for an address read
        // back leniently, which is never registered again).
        Self(email.local_part().chars().take(Self::MAX_CHARS).collect())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(FIELD, code, message)
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DisplayName").field(&self.0).finish()
    }
}

impl AsRef<str> for DisplayName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for DisplayName {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for DisplayName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DisplayName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn code_of(input: &str) -> &'static str {
        DisplayName::parse(input).unwrap_err().code
    }

    #[test]
    fn names_are_trimmed() {
        assert_eq!(
            DisplayName::parse("  Ada Lovelace \n").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert_eq!(DisplayName::parse("李").unwrap().as_str(), "李");
    }

    #[test]
    fn empty_and_blank_names_are_refused() {
        assert_eq!(code_of(""), codes::REQUIRED);
        assert_eq!(code_of(" \t "), codes::REQUIRED);
    }

    #[test]
    fn length_is_counted_in_characters_after_trimming() {
        assert!(DisplayName::parse(&"ü".repeat(64)).is_ok());
        assert!(DisplayName::parse(&format!("  {}  ", "a".repeat(64))).is_ok());
        assert_eq!(code_of(&"a".repeat(65)), codes::TOO_LONG);
    }

    #[test]
    fn control_and_bidi_characters_are_refused() {
        assert_eq!(code_of("Ada\nLovelace"), codes::CONTROL_CHARACTERS);
        assert_eq!(code_of("Ada\u{0000}"), codes::CONTROL_CHARACTERS);
        assert_eq!(code_of("evil\u{202E}gnp.exe"), codes::CONTROL_CHARACTERS);
        assert_eq!(DisplayName::parse("x\ny").unwrap_err().field, "displayName");
    }

    #[test]
    fn names_are_kept_in_nfc() {
        let decomposed = DisplayName::parse("Jose\u{301}").unwrap();
        assert_eq!(decomposed.as_str(), "Jos\u{e9}");
        assert_eq!(decomposed, DisplayName::parse("Jos\u{e9}").unwrap());
    }

    #[test]
    fn invisible_characters_are_refused_but_emoji_joiners_are_kept() {
        for bad in ["Ri\u{200B}ta", "\u{2060}Rita", "Ri\u{00AD}ta"] {
            assert_eq!(code_of(bad), codes::INVISIBLE_CHARACTERS, "{bad:?}");
        }
        // A name of nothing but invisible characters, even allowed ones, is no name.
        for blank in ["\u{200D}", "\u{3164}", "\u{200C} \u{200D}", "\u{FE0F}"] {
            assert_eq!(code_of(blank), codes::INVISIBLE_CHARACTERS, "{blank:?}");
        }
        for ok in [
            "\u{1F469}\u{200D}\u{1F4BB} Ada",
            "\u{2764}\u{FE0F}",
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
        ] {
            assert!(DisplayName::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn a_stored_name_of_an_earlier_release_still_reads_back() {
        assert_eq!(
            DisplayName::from_stored("Ri\u{200B}ta").unwrap().as_str(),
            "Ri\u{200B}ta"
        );
        assert!(DisplayName::from_stored("   ").is_err());
        assert!(DisplayName::from_stored("a\nb").is_err());
    }

    #[test]
    fn the_default_name_is_the_local_part_as_typed() {
        let email = Email::parse("Ada.Lovelace@Example.com").unwrap();
        assert_eq!(DisplayName::from_email(&email).as_str(), "Ada.Lovelace");
    }

    #[test]
    fn serde_uses_the_plain_string_and_validates_on_the_way_in() {
        let name = DisplayName::parse("Ada").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"Ada\"");
        let back: DisplayName = serde_json::from_str("\" Ada \"").unwrap();
        assert_eq!(back, name);
        assert!(serde_json::from_str::<DisplayName>("\"\"").is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_accepted_names_are_clean(input in any::<String>()) {
            if let Ok(name) = DisplayName::parse(&input) {
                let chars = name.as_str().chars().count();
                prop_assert!((1..=DisplayName::MAX_CHARS).contains(&chars));
                prop_assert_eq!(name.as_str(), name.as_str().trim());
                prop_assert!(!name.as_str().chars().any(char::is_control));
            }
        }

        #[test]
        fn the_default_name_of_any_email_is_a_valid_name(input in "\\PC{1,70}@[a-z]{1,10}\\.[a-z]{2,4}") {
            if let Ok(email) = Email::parse(&input) {
                let name = DisplayName::from_email(&email);
                prop_assert_eq!(DisplayName::parse(name.as_str()).unwrap(), name);
            }
        }
    }
}
