//! The mail templates: built in, replaceable from a folder, values escaped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use keel_domain::Mail;

/// Every mail Keel sends, with the values its templates may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MailKind {
    /// After registration: the link that verifies the address.
    VerifyEmail,
    /// After a reset request: the link that sets a new password.
    ResetPassword,
    /// After an e-mail change request, to the new address: the link that confirms it.
    ConfirmNewEmail,
    /// A notice to the account's address that its password changed (or was reset).
    PasswordChanged,
    /// A notice to the old address that the account's address changed.
    EmailChanged,
    /// A notice that failed logins locked the account against unknown devices.
    AccountLocked,
}

impl MailKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::VerifyEmail,
        Self::ResetPassword,
        Self::ConfirmNewEmail,
        Self::PasswordChanged,
        Self::EmailChanged,
        Self::AccountLocked,
    ];

    /// The base name of its files: `<name>.subject.txt`, `<name>.txt` and `<name>.html`.
    pub fn name(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::ConfirmNewEmail => "confirm_new_email",
            Self::PasswordChanged => "password_changed",
            Self::EmailChanged => "email_changed",
            Self::AccountLocked => "account_locked",
        }
    }

    /// The values its templates may name, as `{{name}}`.
    pub fn values(self) -> &'static [&'static str] {
        match self {
            Self::VerifyEmail | Self::ResetPassword => &["display_name", "link", "app_url"],
            Self::ConfirmNewEmail => &["display_name", "link", "new_email", "app_url"],
            Self::PasswordChanged | Self::AccountLocked => &["display_name", "app_url"],
            Self::EmailChanged => &["display_name", "new_email", "app_url"],
        }
    }

    fn builtin(self) -> [&'static str; 3] {
        macro_rules! files {
            ($name:literal) => {
                [
                    include_str!(concat!("../templates/", $name, ".subject.txt")),
                    include_str!(concat!("../templates/", $name, ".txt")),
                    include_str!(concat!("../templates/", $name, ".html")),
                ]
            };
        }
        match self {
            Self::VerifyEmail => files!("verify_email"),
            Self::ResetPassword => files!("reset_password"),
            Self::ConfirmNewEmail => files!("confirm_new_email"),
            Self::PasswordChanged => files!("password_changed"),
            Self::EmailChanged => files!("email_changed"),
            Self::AccountLocked => files!("account_locked"),
        }
    }
}

/// A template that cannot be used, named by its file.
#[derive(Debug, thiserror::Error)]
pub enum TemplatesError {
    /// A file of the folder cannot be read.
    #[error("mail.templates: {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A template names a value that its kind does not have, or a `{{` is never closed.
    #[error("mail.templates: {file}: {reason}")]
    Invalid {
        /// The file (the built-in one's name when no folder is given).
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// A value was missing when a template was rendered (a caller bug: the kind names it).
#[derive(Debug, thiserror::Error)]
#[error("the {kind:?} mail needs the value {name:?}")]
pub struct RenderError {
    kind: MailKind,
    name: &'static str,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Value(&'static str),
}

#[derive(Debug, Clone)]
struct Parsed {
    subject: Vec<Piece>,
    text: Vec<Piece>,
    html: Vec<Piece>,
}

/// The templates of every [`MailKind`].
#[derive(Debug, Clone)]
pub struct Templates {
    parsed: HashMap<MailKind, Parsed>,
}

impl Templates {
    /// The built-in templates, with each file that `folder` holds (`verify_email.html`, say)
    /// in place of the built-in one. Every template is checked here, so a bad one stops the
    /// start-up instead of a mail.
    ///
    /// # Errors
    /// A file that cannot be read, or a template naming a value its kind does not have.
    pub fn load(folder: Option<&Path>) -> Result<Self, TemplatesError> {
        // A folder that is not there is a typo, not "no replacements".
        if let Some(dir) = folder
            && let Err(source) = std::fs::read_dir(dir)
        {
            return Err(TemplatesError::Read {
                path: dir.to_owned(),
                source,
            });
        }
        let mut parsed = HashMap::new();
        for kind in MailKind::ALL {
            let [subject, text, html] = kind.builtin();
            let mut parts = Vec::with_capacity(3);
            for (suffix, builtin) in [("subject.txt", subject), ("txt", text), ("html", html)] {
                let file = format!("{}.{suffix}", kind.name());
                let source = match folder.map(|dir| dir.join(&file)) {
                    Some(path) if path.exists() => std::fs::read_to_string(&path)
                        .map_err(|source| TemplatesError::Read { path, source })?,
                    _ => builtin.to_owned(),
                };
                parts.push(parse(kind, &file, &source)?);
            }
            let mut parts = parts.into_iter();
            let (Some(subject), Some(text), Some(html)) =
                (parts.next(), parts.next(), parts.next())
            else {
                unreachable!("three parts were parsed");
            };
            parsed.insert(
                kind,
                Parsed {
                    subject,
                    text,
                    html,
                },
            );
        }
        Ok(Self { parsed })
    }

    /// The mail of `kind` to `to`, with `values` put in: as they are in the subject (on one
    /// line) and the text part, HTML-escaped in the HTML part.
    ///
    /// # Errors
    /// A value that the kind's templates name is missing from `values`.
    pub fn render(
        &self,
        kind: MailKind,
        to: &str,
        values: &[(&str, &str)],
    ) -> Result<Mail, RenderError> {
        let Some(parsed) = self.parsed.get(&kind) else {
            unreachable!("every kind is loaded");
        };
        let fill = |pieces: &[Piece], escape: fn(&str) -> String| -> Result<String, RenderError> {
            let mut out = String::new();
            for piece in pieces {
                match piece {
                    Piece::Text(text) => out.push_str(text),
                    Piece::Value(name) => {
                        let value = values
                            .iter()
                            .find(|(key, _)| key == name)
                            .map(|(_, value)| *value)
                            .ok_or(RenderError { kind, name })?;
                        out.push_str(&escape(value));
                    }
                }
            }
            Ok(out)
        };
        Ok(Mail {
            to: to.to_owned(),
            subject: fill(&parsed.subject, |v| v.replace(['\r', '\n'], " "))?
                .trim()
                .to_owned(),
            text: fill(&parsed.text, str::to_owned)?,
            html: fill(&parsed.html, escape_html)?,
        })
    }
}

fn parse(kind: MailKind, file: &str, source: &str) -> Result<Vec<Piece>, TemplatesError> {
    let invalid = |reason: String| TemplatesError::Invalid {
        file: file.to_owned(),
        reason,
    };
    let mut pieces = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        pieces.push(Piece::Text(rest[..start].to_owned()));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| invalid("a {{ is never closed".into()))?;
        let name = after[..end].trim();
        let known = kind
            .values()
            .iter()
            .find(|known| **known == name)
            .ok_or_else(|| {
                invalid(format!(
                    "{{{{{name}}}}} is not a value of this mail (it has: {})",
                    kind.values().join(", ")
                ))
            })?;
        pieces.push(Piece::Value(known));
        rest = &after[end + 2..];
    }
    pieces.push(Piece::Text(rest.to_owned()));
    Ok(pieces)
}

/// `value` with the five characters that HTML gives a meaning replaced by references, so a
/// display name cannot inject markup (or close an attribute) into the mail.
fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<(&'static str, &'static str)> {
        vec![
            ("display_name", "Ada <script>alert(1)</script> & \"Co\""),
            ("link", "https://app.example/verify-email?token=a&b=c"),
            ("app_url", "https://app.example"),
            ("new_email", "new@example.com"),
        ]
    }

    #[test]
    fn every_builtin_template_renders_and_html_values_are_escaped() {
        let templates = Templates::load(None).unwrap();
        for kind in MailKind::ALL {
            let mail = templates
                .render(kind, "ada@example.com", &values())
                .unwrap();
            assert!(
                !mail.subject.is_empty() && !mail.subject.contains('\n'),
                "{kind:?}"
            );
            assert!(
                mail.text.contains("Ada <script>"),
                "{kind:?}: the text part is as given"
            );
            assert!(!mail.html.contains("<script>"), "{kind:?}: {}", mail.html);
            assert!(mail.html.contains("Ada &lt;script&gt;"), "{kind:?}");
        }
        let verify = templates
            .render(MailKind::VerifyEmail, "ada@example.com", &values())
            .unwrap();
        assert!(
            verify
                .text
                .contains("https://app.example/verify-email?token=a&b=c")
        );
        assert!(
            verify
                .html
                .contains("href=\"https://app.example/verify-email?token=a&amp;b=c\"")
        );
    }

    #[test]
    fn a_product_replaces_templates_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("verify_email.subject.txt"),
            "Welcome, {{ display_name }}!\n",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let mail = templates
            .render(
                MailKind::VerifyEmail,
                "ada@example.com",
                &[
                    ("display_name", "Ada\r\nBcc: x"),
                    ("link", "l"),
                    ("app_url", "u"),
                ],
            )
            .unwrap();
        assert_eq!(mail.subject, "Welcome, Ada  Bcc: x!");
        assert!(
            mail.text.contains("confirm your e-mail address"),
            "the rest is built in"
        );
    }

    #[test]
    fn unknown_values_and_unclosed_braces_are_refused_at_load_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password_changed.html"), "<p>{{link}}</p>").unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            error.contains("password_changed.html") && error.contains("{{link}}"),
            "{error}"
        );
        std::fs::write(
            dir.path().join("password_changed.html"),
            "<p>{{display_name</p>",
        )
        .unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(error.contains("never closed"), "{error}");
    }

    #[test]
    fn a_missing_value_is_an_error_not_an_empty_link() {
        let templates = Templates::load(None).unwrap();
        let error = templates
            .render(
                MailKind::ResetPassword,
                "ada@example.com",
                &[("display_name", "Ada")],
            )
            .unwrap_err();
        assert!(
            error.to_string().contains("link") || error.to_string().contains("app_url"),
            "{error}"
        );
    }
}
