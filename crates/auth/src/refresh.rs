//! Refresh-token successors, derived rather than drawn, so that a racing or retried refresh can
//! be answered with the same successor without the registry keeping it.
//!
//! The successor of a refresh token `t` is `HMAC-SHA256(k, t)` (URL-safe base64, 256 bits),
//! with `k` a server secret shared by every instance. A keyed PRF of a secret is as unguessable
//! as fresh randomness to anyone without `k`, and it lets every instance answer a replay of the
//! just-spent token inside the grace window with the successor that the winning request got:
//! the registry already knows the successor's hash (it is the session's current one), so the
//! derived token is checked against it and nothing new is stored, expired or migrated. (The
//! design card's alternative, a successor sealed with the cookie key and kept for the grace,
//! needs a column, a Redis field and a clean-up for the same answer.)

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretBox};
use sha2::Sha256;

/// What separates this use of a key from every other use of the same key material.
const INFO: &[u8] = b"keel refresh-token successor v1";

/// The secret from which refresh-token successors are derived.
///
/// Every instance that shares a session registry must hold the same one, or a replay inside
/// the grace window that reaches another instance is refused as an invalid token (never
/// revoked). Derive it from the cookie key, which instances already share
/// ([`RefreshSecret::derive`]), or draw one per process for a single instance
/// ([`RefreshSecret::random`]).
pub struct RefreshSecret(SecretBox<[u8; 32]>);

impl RefreshSecret {
    /// A secret drawn from the operating system's generator: good for one process only.
    pub fn random() -> Self {
        let mut key = [0_u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(SecretBox::new(Box::new(key)))
    }

    /// A secret derived from `key_material` (at least 32 bytes of a high-entropy key, such as
    /// the cookie key) by HKDF-SHA256, domain-separated from the material's other uses.
    pub fn derive(key_material: &[u8]) -> Self {
        let mut key = [0_u8; 32];
        // HKDF expands to at most 255 hash lengths; 32 bytes always fit.
        if hkdf::Hkdf::<Sha256>::new(None, key_material)
            .expand(INFO, &mut key)
            .is_err()
        {
            unreachable!("32 bytes are within HKDF-SHA256's output limit");
        }
        Self(SecretBox::new(Box::new(key)))
    }

    /// The successor of `token`: 43 URL-safe characters.
    pub(crate) fn successor(&self, token: &str) -> String {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.expose_secret()) else {
            unreachable!("HMAC takes a key of any length");
        };
        mac.update(token.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshSecret([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_is_a_function_of_the_token_and_the_secret() {
        let secret = RefreshSecret::derive(&[7; 64]);
        let again = RefreshSecret::derive(&[7; 64]);
        let other = RefreshSecret::derive(&[8; 64]);
        let successor = secret.successor("token");
        assert_eq!(successor.len(), 43);
        assert_eq!(successor, again.successor("token"), "every instance agrees");
        assert_ne!(successor, secret.successor("token2"));
        assert_ne!(successor, other.successor("token"), "the secret matters");
        assert_ne!(successor, RefreshSecret::random().successor("token"));
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        assert_eq!(
            format!("{:?}", RefreshSecret::derive(&[1; 32])),
            "RefreshSecret([REDACTED])"
        );
    }
}
