//! Notices rendered into mail: the templates, with links to the product's front end.

use keel_domain::{Composer, DisplayName, Email, Mail, MailError, Notice};
use secrecy::ExposeSecret as _;

use crate::templates::{MailKind, Templates};

/// keel-domain's [`Composer`] on [`Templates`]: every link points at `app_url`
/// (`{app_url}/verify-email?token=…`, `{app_url}/reset-password?token=…`), the product's front
/// end, whose page POSTs the token to the API.
#[derive(Debug)]
pub struct Letters {
    templates: Templates,
    app_url: String,
}

impl Letters {
    /// Letters from `templates`, linking to `app_url` (a trailing `/` is dropped).
    pub fn new(templates: Templates, app_url: &str) -> Self {
        Self {
            templates,
            app_url: app_url.trim_end_matches('/').to_owned(),
        }
    }

    fn link(&self, path: &str, token: &str) -> String {
        // Tokens are base64url: nothing in them needs escaping in a query.
        format!("{}/{path}?token={token}", self.app_url)
    }
}

impl Composer for Letters {
    fn compose(
        &self,
        to: &Email,
        display_name: &DisplayName,
        notice: &Notice,
    ) -> Result<Mail, MailError> {
        let name = display_name.as_str();
        let app = self.app_url.as_str();
        let rendered = match notice {
            Notice::VerifyEmail { token } => {
                let link = self.link("verify-email", token.expose_secret());
                self.templates.render(
                    MailKind::VerifyEmail,
                    to.as_str(),
                    &[("display_name", name), ("link", &link), ("app_url", app)],
                )
            }
            Notice::ResetPassword { token } => {
                let link = self.link("reset-password", token.expose_secret());
                self.templates.render(
                    MailKind::ResetPassword,
                    to.as_str(),
                    &[("display_name", name), ("link", &link), ("app_url", app)],
                )
            }
            Notice::ConfirmNewEmail { token, new_email } => {
                let link = self.link("verify-email", token.expose_secret());
                self.templates.render(
                    MailKind::ConfirmNewEmail,
                    to.as_str(),
                    &[
                        ("display_name", name),
                        ("link", &link),
                        ("new_email", new_email.as_str()),
                        ("app_url", app),
                    ],
                )
            }
            Notice::PasswordChanged => self.templates.render(
                MailKind::PasswordChanged,
                to.as_str(),
                &[("display_name", name), ("app_url", app)],
            ),
            Notice::EmailChanged { new_email } => self.templates.render(
                MailKind::EmailChanged,
                to.as_str(),
                &[
                    ("display_name", name),
                    ("new_email", new_email.as_str()),
                    ("app_url", app),
                ],
            ),
            Notice::AccountLocked => self.templates.render(
                MailKind::AccountLocked,
                to.as_str(),
                &[("display_name", name), ("app_url", app)],
            ),
            _ => return Err(MailError::Rejected(format!("no template for {notice:?}"))),
        };
        rendered.map_err(|error| MailError::Rejected(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn links_point_at_the_app_and_values_are_escaped_in_html() {
        let letters = Letters::new(Templates::load(None).unwrap(), "https://app.example/");
        let to = Email::parse("ada@example.com").unwrap();
        let name = DisplayName::parse("Ada <b>").unwrap();
        let mail = letters
            .compose(
                &to,
                &name,
                &Notice::ResetPassword {
                    token: SecretString::from("abc_DEF-1"),
                },
            )
            .unwrap();
        assert_eq!(mail.to, "ada@example.com");
        assert!(
            mail.text
                .contains("https://app.example/reset-password?token=abc_DEF-1")
        );
        assert!(mail.html.contains("Ada &lt;b&gt;"), "{}", mail.html);
        assert!(!mail.html.contains("Ada <b>"));
        let changed = letters
            .compose(
                &to,
                &name,
                &Notice::EmailChanged {
                    new_email: Email::parse("new@example.com").unwrap(),
                },
            )
            .unwrap();
        assert!(changed.text.contains("new@example.com"));
    }
}
