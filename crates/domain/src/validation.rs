//! Validation errors: what was wrong with which field of an input, in a form the HTTP edge can
//! turn into a 422 with a per-field `errors` list.

use std::fmt;

use serde::Serialize;

/// The stable machine codes a [`ValidationError`] carries. Clients match on these, so they never
/// change once released.
pub mod codes {
    /// The value is empty (after trimming, where the field is trimmed).
    pub const REQUIRED: &str = "required";
    /// The value is shorter than the field allows.
    pub const TOO_SHORT: &str = "too_short";
    /// The value is longer than the field allows.
    pub const TOO_LONG: &str = "too_long";
    /// The value is one of the most common passwords (the shipped list of 10,000).
    pub const TOO_COMMON: &str = "too_common";
    /// The value contains control characters (or, in names and emails, invisible bidirectional
    /// formatting characters).
    pub const CONTROL_CHARACTERS: &str = "control_characters";
    /// The value is not an email address Keel accepts.
    pub const INVALID_EMAIL: &str = "invalid_email";
    /// The value contains characters that render as nothing (zero-width spaces, joiners where
    /// they join nothing, fillers, soft hyphens), which would let one address or name look
    /// like another, or a name look empty.
    pub const INVISIBLE_CHARACTERS: &str = "invisible_characters";
}

/// One thing wrong with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The field, named as clients name it (camelCase, as in the JSON body): `email`,
    /// `password`, `displayName`.
    pub field: &'static str,
    /// A stable snake_case machine code; see [`codes`].
    pub code: &'static str,
    /// A human-readable explanation. It never repeats the offending value, which may be a secret.
    pub message: String,
}

impl ValidationError {
    /// A validation error on `field` with machine `code` and human `message`.
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

/// Every validation error of one input, so a client that got several fields wrong learns about
/// all of them in one round trip.
///
/// ```
/// use keel_domain::{Email, Password, ValidationErrors};
///
/// let mut errors = ValidationErrors::new();
/// let email = errors.check(Email::parse("not an email"));
/// let password = errors.check(Password::parse("short".to_owned()));
/// let outcome = errors.finish(email.zip(password));
/// assert_eq!(outcome.unwrap_err().len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// No errors yet.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Records `error`.
    pub fn push(&mut self, error: ValidationError) {
        self.0.push(error);
    }

    /// Records the error of `result`, if any, and hands back its value otherwise; lets a caller
    /// validate every field before deciding, instead of stopping at the first bad one.
    pub fn check<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    /// `Ok(value)` when nothing was recorded and `value` is present, the recorded errors
    /// otherwise. Combine several checked fields with [`Option::zip`].
    ///
    /// A `None` with no recorded errors can only come from a value that was never checked; it
    /// yields `Err` with an empty list rather than a panic.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ValidationErrors> {
        match value {
            Some(value) if self.is_empty() => Ok(value),
            _ => Err(self),
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many errors were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The recorded errors, in the order they were recorded.
    pub fn iter(&self) -> std::slice::Iter<'_, ValidationError> {
        self.0.iter()
    }

    /// The recorded errors as a vector.
    pub fn into_vec(self) -> Vec<ValidationError> {
        self.0
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no validation errors");
        }
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            fmt::Display::fmt(error, f)?;
        }
        Ok(())
    }
}

impl From<ValidationError> for ValidationErrors {
    fn from(error: ValidationError) -> Self {
        Self(vec![error])
    }
}

impl FromIterator<ValidationError> for ValidationErrors {
    fn from_iter<I: IntoIterator<Item = ValidationError>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Extend<ValidationError> for ValidationErrors {
    fn extend<I: IntoIterator<Item = ValidationError>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl IntoIterator for ValidationErrors {
    type Item = ValidationError;
    type IntoIter = std::vec::IntoIter<ValidationError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a ValidationError;
    type IntoIter = std::slice::Iter<'a, ValidationError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Characters refused in names and emails: control characters, and the invisible bidirectional
/// formatting characters that can make one name render as another (Trojan Source style).
/// Passwords are checked separately: they are never displayed, so only control characters
/// matter there.
pub(crate) fn is_forbidden_in_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Characters that render as nothing: Unicode's default-ignorable code points (zero-width
/// space, joiners, word joiner, soft hyphen, variation selectors, tags, the byte-order mark...)
/// and the Hangul and Braille fillers that fonts draw blank. In an email every one of them is
/// refused: two addresses that look the same must be the same address. Names may keep the few
/// that shape visible text ([`shapes_visible_text`]).
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The invisible characters that a name legitimately contains: the zero-width joiner and
/// non-joiner (emoji sequences, Persian and Indic scripts), variation selectors (text or emoji
/// presentation) and emoji tag characters (subdivision flags). They change how the visible
/// characters around them render, never add text of their own.
pub(crate) fn shapes_visible_text(c: char) -> bool {
    matches!(
        c,
        '\u{200C}' | '\u{200D}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0020}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(field: &'static str) -> ValidationError {
        ValidationError::new(field, codes::REQUIRED, "must not be empty")
    }

    #[test]
    fn an_error_displays_its_field_and_message() {
        assert_eq!(error("email").to_string(), "email: must not be empty");
    }

    #[test]
    fn errors_display_all_of_them() {
        let errors: ValidationErrors = [error("email"), error("password")].into_iter().collect();
        assert_eq!(
            errors.to_string(),
            "email: must not be empty; password: must not be empty"
        );
    }

    #[test]
    fn finish_succeeds_only_without_errors() {
        let mut errors = ValidationErrors::new();
        let a = errors.check(Ok::<_, ValidationError>(1));
        let b = errors.check(Ok::<_, ValidationError>(2));
        assert_eq!(errors.finish(a.zip(b)), Ok((1, 2)));

        let mut errors = ValidationErrors::new();
        let a = errors.check(Ok::<_, ValidationError>(1));
        let b = errors.check(Err::<i32, _>(error("b")));
        let c = errors.check(Err::<i32, _>(error("c")));
        let failed = errors.finish(a.zip(b).zip(c)).unwrap_err();
        let fields: Vec<_> = failed.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["b", "c"]);
    }

    #[test]
    fn finish_without_a_value_is_never_ok() {
        assert!(ValidationErrors::new().finish(None::<()>).is_err());
    }

    #[test]
    fn errors_serialize_as_a_list_of_objects() {
        let errors = ValidationErrors::from(ValidationError::new(
            "displayName",
            codes::TOO_LONG,
            "at most 64 characters",
        ));
        assert_eq!(
            serde_json::to_value(&errors).unwrap(),
            serde_json::json!([{
                "field": "displayName",
                "code": "too_long",
                "message": "at most 64 characters",
            }])
        );
    }

    #[test]
    fn bidi_overrides_and_controls_are_forbidden_but_ordinary_text_is_not() {
        assert!(is_forbidden_in_text('\u{202E}'));
        assert!(is_forbidden_in_text('\u{0007}'));
        assert!(is_forbidden_in_text('\u{009F}'));
        assert!(!is_forbidden_in_text('é'));
        assert!(!is_forbidden_in_text('名'));
    }

    #[test]
    fn zero_width_characters_and_fillers_are_invisible_but_letters_are_not() {
        for c in [
            '\u{200B}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{3164}',
        ] {
            assert!(is_invisible(c), "{:04X}", u32::from(c));
        }
        for c in ['a', 'é', '名', ' ', '\u{0301}'] {
            assert!(!is_invisible(c), "{:04X}", u32::from(c));
        }
        // Joiners shape emoji and scripts; a zero-width space shapes nothing.
        assert!(shapes_visible_text('\u{200D}'));
        assert!(shapes_visible_text('\u{FE0F}'));
        assert!(!shapes_visible_text('\u{200B}'));
    }
}
