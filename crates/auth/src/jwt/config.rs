//! The JWT configuration: a plain serde struct with defaults.

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

/// The signing algorithm of a key ring. RS256 is deliberately absent (the `rsa` crate's timing
/// advisory, RUSTSEC-2023-0071).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// Ed25519 signatures (RFC 8037). The default: small keys, fast, deterministic.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256, for verifiers that lack Ed25519.
    ES256,
    /// HMAC-SHA-256 with a shared secret of at least 32 bytes. Nothing is published in the JWKS,
    /// so only holders of the secret can verify.
    HS256,
}

impl JwtAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::HS256 => "HS256",
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key of the ring. For EdDSA and ES256 set `private_key_pem`; for HS256 set `secret`.
///
/// ```toml
/// [[jwt.keys]]
/// kid = "2025-06"
/// private_key_pem = """
/// -----BEGIN PRIVATE KEY-----
/// ...
/// -----END PRIVATE KEY-----
/// """
/// ```
///
/// `Debug` shows the `kid` only; the key material prints (and serialises) as `[REDACTED]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id, written into each token's `kid` header and the JWKS. Unique within the ring.
    pub kid: String,
    /// EdDSA: a PKCS#8 `PRIVATE KEY` PEM (`openssl genpkey -algorithm ed25519`).
    /// ES256: a PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY` PEM on P-256
    /// (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
    #[serde(
        default,
        serialize_with = "redacted",
        skip_serializing_if = "Option::is_none"
    )]
    pub private_key_pem: Option<SecretString>,
    /// HS256: the shared secret, used as its UTF-8 bytes; at least 32 bytes of random
    /// (`openssl rand -base64 48` gives a suitable string).
    #[serde(
        default,
        serialize_with = "redacted",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret: Option<SecretString>,
}

impl KeyConfig {
    /// An EdDSA or ES256 key from its private key PEM.
    pub fn pem(kid: impl Into<String>, private_key_pem: impl Into<String>) -> Self {
        Self {
            kid: kid.into(),
            private_key_pem: Some(SecretString::from(private_key_pem.into())),
            secret: None,
        }
    }

    /// An HS256 key from its shared secret.
    pub fn secret(kid: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            kid: kid.into(),
            private_key_pem: None,
            secret: Some(SecretString::from(secret.into())),
        }
    }
}

/// Access-token settings and the key ring. Every field has a default, so `{}` is valid except
/// that [`KeyRing::from_config`](super::KeyRing::from_config) needs at least one key (development
/// uses [`KeyRing::generate_ephemeral`](super::KeyRing::generate_ephemeral) instead).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` claim written and required, compared exactly. Default `"keel"`.
    pub issuer: String,
    /// The `aud` claim written and required, compared exactly. Default `"keel"`.
    pub audience: String,
    /// Lifetime of an access token, in seconds: 1..=86400. Default 900 (15 minutes).
    pub access_ttl_seconds: u64,
    /// Clock skew tolerated past `exp`, in seconds: 0..=300. Default 30.
    pub leeway_seconds: u64,
    /// The one algorithm that signs and verifies. Default EdDSA.
    pub algorithm: JwtAlgorithm,
    /// The key ring: the first key signs; the others only verify (keys being rotated out).
    pub keys: Vec<KeyConfig>,
    /// How many verified tokens the verification cache keeps; 0 turns the cache off.
    /// Default 10000 (a few MiB at most).
    pub verified_cache_capacity: usize,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: "keel".to_owned(),
            audience: "keel".to_owned(),
            access_ttl_seconds: 900,
            leeway_seconds: 30,
            algorithm: JwtAlgorithm::EdDSA,
            keys: Vec::new(),
            verified_cache_capacity: 10_000,
        }
    }
}

/// Key material is never printed, not even by `--print-config`.
fn redacted<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("[REDACTED]"),
        None => serializer.serialize_none(),
    }
}
