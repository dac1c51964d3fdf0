//! Email addresses, checked pragmatically, normalised to NFC and matched case-insensitively.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unicode_normalization::UnicodeNormalization;

use crate::validation::{ValidationError, codes, is_forbidden_in_text, is_invisible};

const FIELD: &str = "email";

/// An email address Keel accepts.
///
/// The check is deliberately pragmatic, not RFC 5322: one `@`, a non-empty local part of at most
/// 64 characters, a non-empty domain made of non-empty dot-separated labels, no whitespace,
/// control or invisible characters, at most 254 characters in all. Whether the address exists
/// is a question only a confirmation mail can answer.
///
/// The address is kept as the user typed it (trimmed, in Unicode NFC) for display, and in a
/// canonical form for matching: NFC, then lowercased. Two `Email`s are equal, and hash alike,
/// when their canonical forms are, so `José@example.com` typed as one precomposed `é` and as
/// `e` + a combining accent is one address, and so is `JOSÉ@EXAMPLE.COM`.
///
/// Releases before 0.2 (v1.1 of the contract) matched on the lowercased address without
/// normalising it. [`legacy_forms`](Self::legacy_forms) lists the other keys such a release
/// may have indexed the same address under, so stores that outlive an upgrade keep finding
/// (and keep refusing to duplicate) the accounts it wrote.
#[derive(Clone)]
pub struct Email {
    given: String,
    canonical: String,
    /// Canonical forms of earlier releases that differ from `canonical` (usually none).
    legacy: Vec<String>,
}

impl Email {
    /// The longest address accepted, in characters (the SMTP path limit leaves 254 for it).
    pub const MAX_CHARS: usize = 254;
    /// The longest local part (before the `@`) accepted, in characters.
    pub const MAX_LOCAL_CHARS: usize = 64;

    /// Checks `input` (surrounding whitespace is ignored) and returns the address.
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        Self::parse_with(input, false)
    }

    /// Like [`parse`](Self::parse), but accepting the invisible characters that releases before
    /// 0.2 let through. Use it only to read back what an older release stored, and to look an
    /// address up at login (so such an account still signs in with the exact address it was
    /// registered with); never to accept a new address.
    pub fn parse_lenient(input: &str) -> Result<Self, ValidationError> {
        Self::parse_with(input, true)
    }

    fn parse_with(input: &str, allow_invisible: bool) -> Result<Self, ValidationError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid(codes::REQUIRED, "an email address is required"));
        }
        if trimmed.chars().any(is_forbidden_in_text) {
            return Err(invalid(
                codes::CONTROL_CHARACTERS,
                "an email address must not contain control characters",
            ));
        }
        if !allow_invisible && trimmed.chars().any(is_invisible) {
            return Err(invalid(
                codes::INVISIBLE_CHARACTERS,
                "an email address must not contain invisible characters",
            ));
        }
        let given: String = trimmed.nfc().collect();
        if given.chars().count() > Self::MAX_CHARS {
            return Err(invalid(
                codes::TOO_LONG,
                format!(
                    "an email address has at most {} characters",
                    Self::MAX_CHARS
                ),
            ));
        }
        if given.chars().any(char::is_whitespace) {
            return Err(invalid(
                codes::INVALID_EMAIL,
                "an email address must not contain spaces",
            ));
        }
        let Some((local, domain)) = given.split_once('@') else {
            return Err(invalid(
                codes::INVALID_EMAIL,
                "an email address needs an @ between its local part and its domain",
            ));
        };
        // Quoted local parts may contain an `@`, but nobody registers with one; refusing a
        // second `@` keeps the split unambiguous.
        if domain.contains('@') {
            return Err(invalid(
                codes::INVALID_EMAIL,
                "an email address has exactly one @",
            ));
        }
        if local.is_empty() {
            return Err(invalid(
                codes::INVALID_EMAIL,
                "an email address needs something before the @",
            ));
        }
        if domain.is_empty() {
            return Err(invalid(
                codes::INVALID_EMAIL,
                "an email address needs a domain after the @",
            ));
        }
        if local.chars().count() > Self::MAX_LOCAL_CHARS {
            return Err(invalid(
                codes::TOO_LONG,
                format!(
                    "the part before the @ has at most {} characters",
                    Self::MAX_LOCAL_CHARS
                ),
            ));
        }
        if domain.split('.').any(str::is_empty) {
            return Err(invalid(
                codes::INVALID_EMAIL,
                "the domain of an email address must not start or end with a dot or contain two dots in a row",
            ));
        }
        // Lowercasing can (rarely) undo composition, so normalise once more after it.
        let canonical: String = given.to_lowercase().nfc().collect();
        // What a release before 0.2 used as the key: the address as typed, lowercased. The
        // same address typed decomposed (macOS input methods, some mail clients) is the only
        // other spelling worth trying: every other form of it is rare to the point of absence.
        let mut legacy = Vec::new();
        for form in [
            trimmed.to_lowercase(),
            trimmed.nfd().collect::<String>().to_lowercase(),
        ] {
            if form != canonical && !legacy.contains(&form) {
                legacy.push(form);
            }
        }
        Ok(Self {
            given,
            canonical,
            legacy,
        })
    }

    /// The address as the user gave it (trimmed, NFC): what Keel shows back.
    pub fn as_str(&self) -> &str {
        &self.given
    }

    /// The NFC, lowercased form that Keel matches and indexes addresses by.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The keys that releases before 0.2 may have indexed this address under, where they differ
    /// from [`canonical`](Self::canonical): the address as typed and its decomposed form, each
    /// lowercased. Empty for almost every address (plain ASCII has none).
    pub fn legacy_forms(&self) -> &[String] {
        &self.legacy
    }

    /// The part before the `@`, as given.
    pub fn local_part(&self) -> &str {
        // `parse` guarantees exactly one `@`; the fallback is never taken.
        self.given
            .split_once('@')
            .map_or(self.given.as_str(), |(local, _)| local)
    }

    /// The part after the `@`, as given.
    pub fn domain(&self) -> &str {
        self.given.split_once('@').map_or("", |(_, domain)| domain)
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(FIELD, code, message)
}

impl PartialEq for Email {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for Email {}

impl Hash for Email {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Email").field(&self.given).finish()
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.given
    }
}

impl FromStr for Email {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.given)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use proptest::prelude::*;

    use super::*;

    fn code_of(input: &str) -> &'static str {
        Email::parse(input).unwrap_err().code
    }

    fn hash_of(email: &Email) -> u64 {
        let mut hasher = DefaultHasher::new();
        email.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn ordinary_addresses_are_accepted() {
        for ok in [
            "a@b",
            "alice@example.com",
            "first.last+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "用户@例子.广告",
            "user@localhost",
        ] {
            let email = Email::parse(ok).unwrap();
            assert_eq!(email.as_str(), ok);
        }
    }

    #[test]
    fn surrounding_whitespace_is_trimmed_and_the_case_kept() {
        let email = Email::parse("  \tAlice@Example.COM\n").unwrap();
        assert_eq!(email.as_str(), "Alice@Example.COM");
        assert_eq!(email.canonical(), "alice@example.com");
        assert_eq!(email.local_part(), "Alice");
        assert_eq!(email.domain(), "Example.COM");
        assert_eq!(email.to_string(), "Alice@Example.COM");
    }

    #[test]
    fn addresses_match_case_insensitively() {
        let a = Email::parse("Alice@Example.com").unwrap();
        let b = Email::parse("aLICE@eXAMPLE.COM").unwrap();
        assert_eq!(a, b);
        assert_eq!(hash_of(&a), hash_of(&b));
        assert_ne!(a, Email::parse("alice@example.org").unwrap());
        // Unicode lowercasing, not only ASCII.
        assert_eq!(
            Email::parse("ÉLODIE@exemple.fr").unwrap(),
            Email::parse("élodie@EXEMPLE.FR").unwrap()
        );
    }

    #[test]
    fn empty_input_is_required() {
        assert_eq!(code_of(""), codes::REQUIRED);
        assert_eq!(code_of("   "), codes::REQUIRED);
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "@",
            "alice@@example.com",
            "a@b@example.com",
            "alice smith@example.com",
            "alice@exa mple.com",
            "alice@example.com.",
            "alice@.example.com",
            "alice@example..com",
            "alice@\u{00A0}example.com",
        ] {
            assert_eq!(code_of(bad), codes::INVALID_EMAIL, "{bad:?}");
        }
    }

    #[test]
    fn control_characters_are_refused() {
        for bad in [
            "ali\u{0000}ce@example.com",
            "alice@exam\nple.com",
            "ali\u{007F}ce@example.com",
            "ali\u{202E}ce@example.com",
        ] {
            assert_eq!(code_of(bad), codes::CONTROL_CHARACTERS, "{bad:?}");
        }
    }

    #[test]
    fn length_limits_count_characters() {
        let local_64 = "l".repeat(64);
        assert!(Email::parse(&format!("{local_64}@example.com")).is_ok());
        let local_65 = "l".repeat(65);
        assert_eq!(code_of(&format!("{local_65}@example.com")), codes::TOO_LONG);
        // 64 two-byte characters are 128 bytes but still 64 characters.
        let wide_local = "é".repeat(64);
        assert!(Email::parse(&format!("{wide_local}@example.com")).is_ok());

        let domain = |len: usize| {
            let mut d = "d".repeat(len - 4);
            d.push_str(".com");
            d
        };
        let at_limit = format!("a@{}", domain(252));
        assert_eq!(at_limit.chars().count(), 254);
        assert!(Email::parse(&at_limit).is_ok());
        let over = format!("a@{}", domain(253));
        assert_eq!(code_of(&over), codes::TOO_LONG);
        // The limit applies after trimming.
        assert!(Email::parse(&format!("   {at_limit}   ")).is_ok());
    }

    #[test]
    fn composed_and_decomposed_spellings_are_one_address() {
        let composed = Email::parse("jos\u{e9}@example.com").unwrap();
        let decomposed = Email::parse("jose\u{301}@example.com").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(hash_of(&composed), hash_of(&decomposed));
        // Both are kept (and shown) composed.
        assert_eq!(decomposed.as_str(), "jos\u{e9}@example.com");
        assert_eq!(decomposed.canonical(), "jos\u{e9}@example.com");
        assert_eq!(Email::parse("JOSE\u{301}@Example.com").unwrap(), composed);
    }

    #[test]
    fn invisible_characters_are_refused_but_read_back_leniently() {
        for bad in [
            "rita\u{200B}@example.com",
            "rita@exa\u{200D}mple.com",
            "\u{FEFF}rita@example.com",
            "ri\u{00AD}ta@example.com",
            "rita\u{2060}@example.com",
            "\u{200B}",
        ] {
            assert_eq!(code_of(bad), codes::INVISIBLE_CHARACTERS, "{bad:?}");
        }
        // An account an older release let in still reads back and matches its own spelling,
        // and only that one: it is not the visible address it imitates.
        let old = Email::parse_lenient("rita\u{200B}@example.com").unwrap();
        assert_eq!(old.as_str(), "rita\u{200B}@example.com");
        assert_ne!(old, Email::parse("rita@example.com").unwrap());
        // Control characters stay refused either way.
        assert_eq!(
            Email::parse_lenient("ri\u{0}ta@example.com")
                .unwrap_err()
                .code,
            codes::CONTROL_CHARACTERS
        );
    }

    #[test]
    fn legacy_forms_list_the_keys_of_earlier_releases_only_where_they_differ() {
        assert!(
            Email::parse("Ada@Example.com")
                .unwrap()
                .legacy_forms()
                .is_empty()
        );
        // Typed composed: an earlier release keyed it the same, but a decomposed registration
        // of the same address would have had another key.
        let composed = Email::parse("Jos\u{e9}@example.com").unwrap();
        assert_eq!(composed.legacy_forms(), ["jose\u{301}@example.com"]);
        // Typed decomposed: the earlier key is the decomposed spelling itself.
        let decomposed = Email::parse("Jose\u{301}@example.com").unwrap();
        assert_eq!(decomposed.legacy_forms(), ["jose\u{301}@example.com"]);
        assert_eq!(decomposed.canonical(), "jos\u{e9}@example.com");
    }

    #[test]
    fn errors_name_the_email_field() {
        assert_eq!(Email::parse("nope").unwrap_err().field, "email");
    }

    #[test]
    fn serde_uses_the_given_string_and_validates_on_the_way_in() {
        let email = Email::parse("Alice@Example.com").unwrap();
        assert_eq!(
            serde_json::to_string(&email).unwrap(),
            "\"Alice@Example.com\""
        );
        let back: Email = serde_json::from_str("\" Alice@Example.com \"").unwrap();
        assert_eq!(back.as_str(), "Alice@Example.com");
        assert!(serde_json::from_str::<Email>("\"not-an-email\"").is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in any::<String>()) {
            let _ = Email::parse(&input);
        }

        #[test]
        fn an_accepted_address_reparses_to_itself(input in "\\PC{0,80}@\\PC{0,80}") {
            if let Ok(email) = Email::parse(&input) {
                let again = Email::parse(email.as_str()).unwrap();
                prop_assert_eq!(again.as_str(), email.as_str());
                prop_assert_eq!(again.canonical(), email.canonical());
                prop_assert!(email.as_str().chars().count() <= Email::MAX_CHARS);
                prop_assert!(email.local_part().chars().count() <= Email::MAX_LOCAL_CHARS);
                prop_assert_eq!(
                    email.canonical(),
                    email.as_str().to_lowercase().nfc().collect::<String>()
                );
            }
        }

        #[test]
        fn case_never_matters(
            local in "[a-zA-Z0-9._%+-]{1,30}",
            domain in "[a-zA-Z0-9-]{1,20}\\.[a-zA-Z]{2,6}",
        ) {
            let address = format!("{local}@{domain}");
            let upper = Email::parse(&address.to_uppercase()).unwrap();
            let lower = Email::parse(&address.to_lowercase()).unwrap();
            prop_assert_eq!(&upper, &lower);
            prop_assert_eq!(hash_of(&upper), hash_of(&lower));
        }
    }
}
