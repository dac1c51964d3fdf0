//! OWASP's device cookies: a login that succeeded marks the browser (or client) as a device
//! that has logged in to that account before, so that when guesses from elsewhere lock the
//! account against unknown devices, its owner's known device still gets in on its own budget.
//!
//! The value is `<device id>.<signature>`: a random 128-bit id, and an HMAC-SHA256 (under a key
//! derived from the cookie key, so every instance checks every other's cookies) of the id and
//! the account it was issued for. It is only a hint for the login limits, never a credential:
//! a stolen one buys its holder the owner's allowance of guesses for one account, no more.
//! Browsers keep it as a cookie (`keel_device`, or `__Host-keel-device` when `Secure`); other
//! clients may send the value in `x-keel-device`.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, Key, SameSite};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// The header that non-browser clients send the device value in.
pub const DEVICE_HEADER: &str = "x-keel-device";

/// How long a device stays known without logging in again: 365 days.
const LIFETIME: time::Duration = time::Duration::days(365);

/// The characters of a device id: 16 random bytes in URL-safe base64.
const ID_CHARS: usize = 22;

/// Issues and checks device cookies.
#[derive(Clone)]
pub(crate) struct DeviceCookies {
    key: [u8; 32],
    secure: bool,
}

impl DeviceCookies {
    /// Cookies signed with a key derived from `cookie_key`; `Secure` (and `__Host-` named)
    /// when the session cookie is.
    pub(crate) fn new(cookie_key: &Key, secure: bool) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"keel device cookie v1\0");
        hash.update(cookie_key.master());
        Self {
            key: hash.finalize().into(),
            secure,
        }
    }

    fn name(&self) -> &'static str {
        if self.secure {
            "__Host-keel-device"
        } else {
            "keel_device"
        }
    }

    fn mac(&self, id: &str, account: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            unreachable!("HMAC takes a key of any length");
        };
        mac.update(id.as_bytes());
        mac.update(b"\0");
        mac.update(account.as_bytes());
        mac
    }

    fn signature(&self, id: &str, account: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(id, account).finalize().into_bytes())
    }

    /// The id of the device that `req` presents (cookie first, then header), when it was issued
    /// for `account` (the login's normalised address) and its signature holds.
    pub(crate) fn known(&self, req: &HttpRequest, account: &str) -> Option<String> {
        let cookie = req.cookie(self.name()).map(|c| c.value().to_owned());
        let header = req
            .headers()
            .get(DEVICE_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        [cookie, header]
            .into_iter()
            .flatten()
            .find_map(|value| self.verify(&value, account))
    }

    fn verify(&self, value: &str, account: &str) -> Option<String> {
        let (id, signature) = value.split_once('.')?;
        if id.len() != ID_CHARS || signature.len() > 64 {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        // hmac compares in constant time: a timing difference must not help forge a signature
        // byte by byte.
        self.mac(id, account).verify_slice(&signature).ok()?;
        Some(id.to_owned())
    }

    /// The cookie that marks this client as a known device of `account`: the device's id kept
    /// when it had one, a new one otherwise.
    pub(crate) fn issue(&self, device: Option<&str>, account: &str) -> Cookie<'static> {
        let id = device.map_or_else(
            || {
                let mut bytes = [0_u8; 16];
                rand::rng().fill_bytes(&mut bytes);
                URL_SAFE_NO_PAD.encode(bytes)
            },
            str::to_owned,
        );
        let value = format!("{id}.{}", self.signature(&id, account));
        Cookie::build(self.name(), value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(LIFETIME)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_device_is_known_only_for_the_account_it_was_issued_for() {
        let devices = DeviceCookies::new(&Key::generate(), true);
        let cookie = devices.issue(None, "ada@example.com");
        assert_eq!(cookie.name(), "__Host-keel-device");
        assert_eq!(cookie.secure(), Some(true));
        let req = TestRequest::default()
            .cookie(cookie.clone())
            .to_http_request();
        let id = devices.known(&req, "ada@example.com").unwrap();
        assert!(cookie.value().starts_with(&id));
        assert_eq!(devices.known(&req, "bob@example.com"), None);
        // Renewed, the id stays.
        let renewed = devices.issue(Some(&id), "ada@example.com");
        assert_eq!(renewed.value(), cookie.value());
        // As a header, for clients without cookies.
        let req = TestRequest::default()
            .insert_header((DEVICE_HEADER, cookie.value()))
            .to_http_request();
        assert_eq!(devices.known(&req, "ada@example.com"), Some(id));
    }

    #[test]
    fn forged_or_foreign_values_are_unknown() {
        let devices = DeviceCookies::new(&Key::generate(), false);
        let other = DeviceCookies::new(&Key::generate(), false);
        let value = other.issue(None, "ada@example.com").value().to_owned();
        let (id, signature) = value.split_once('.').unwrap();
        let mut flipped = signature.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for value in [
            value.clone(),
            format!("{id}.{flipped}"),
            id.to_owned(),
            String::new(),
            format!("{id}."),
            "x".repeat(5000),
        ] {
            let req = TestRequest::default()
                .insert_header((DEVICE_HEADER, value.as_str()))
                .to_http_request();
            assert_eq!(devices.known(&req, "ada@example.com"), None, "{value}");
        }
        assert_eq!(devices.issue(None, "a").name(), "keel_device");
    }
}
