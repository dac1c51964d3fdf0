//! Turning configured or generated key material into jsonwebtoken keys and JWKs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rand::RngCore as _;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use super::{JwtAlgorithm, JwtError, KeyConfig};

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
pub(crate) const MIN_HS256_SECRET_BYTES: usize = 32;

/// One key of the ring, ready to use. The private half is kept only for the signing key.
pub(crate) struct ParsedKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The public JWK; `None` for HS256, whose key must never be published.
    pub(crate) jwk: Option<Value>,
}

pub(crate) fn parse(algorithm: JwtAlgorithm, key: &KeyConfig) -> Result<ParsedKey, JwtError> {
    let kid = key.kid.as_str();
    match algorithm {
        JwtAlgorithm::EdDSA | JwtAlgorithm::ES256 => {
            if key.secret.is_some() {
                return Err(JwtError::key(
                    kid,
                    "`secret` is for HS256; this ring is asymmetric",
                ));
            }
            let Some(pem) = &key.private_key_pem else {
                return Err(JwtError::key(kid, "`private_key_pem` is required"));
            };
            let pem = pem.expose_secret().trim();
            if algorithm == JwtAlgorithm::EdDSA {
                let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                    .map_err(|_| JwtError::key(kid, "not a PKCS#8 Ed25519 private key PEM"))?;
                ed25519(kid, &signing)
            } else {
                let secret = p256::SecretKey::from_pkcs8_pem(pem)
                    .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
                    .map_err(|_| {
                        JwtError::key(kid, "not a PKCS#8 or SEC1 P-256 private key PEM")
                    })?;
                p256_key(kid, &secret)
            }
        }
        JwtAlgorithm::HS256 => {
            if key.private_key_pem.is_some() {
                return Err(JwtError::key(
                    kid,
                    "`private_key_pem` is for EdDSA and ES256",
                ));
            }
            let Some(secret) = &key.secret else {
                return Err(JwtError::key(kid, "`secret` is required for HS256"));
            };
            hs256(kid, secret.expose_secret().as_bytes())
        }
    }
}

/// A fresh random key, for development.
pub(crate) fn generate(algorithm: JwtAlgorithm, kid: &str) -> Result<ParsedKey, JwtError> {
    let mut seed = [0u8; 32];
    match algorithm {
        JwtAlgorithm::EdDSA => {
            // Every 32-byte string is a valid Ed25519 secret key.
            rand::rng().fill_bytes(&mut seed);
            ed25519(kid, &ed25519_dalek::SigningKey::from_bytes(&seed))
        }
        JwtAlgorithm::ES256 => {
            // A P-256 scalar must be in 1..n; a random 32 bytes falls outside with probability
            // about 2^-32, so a few tries are plenty.
            for _ in 0..8 {
                rand::rng().fill_bytes(&mut seed);
                if let Ok(secret) = p256::SecretKey::from_slice(&seed) {
                    return p256_key(kid, &secret);
                }
            }
            Err(JwtError::key(kid, "could not generate a P-256 key"))
        }
        JwtAlgorithm::HS256 => {
            rand::rng().fill_bytes(&mut seed);
            hs256(kid, &seed)
        }
    }
}

fn ed25519(kid: &str, signing: &ed25519_dalek::SigningKey) -> Result<ParsedKey, JwtError> {
    // jsonwebtoken's RustCrypto signer reads a PKCS#8 DER document.
    let der = signing
        .to_pkcs8_der()
        .map_err(|_| JwtError::key(kid, "cannot encode the Ed25519 key"))?;
    let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
    let decoding = DecodingKey::from_ed_components(&x)
        .map_err(|_| JwtError::key(kid, "cannot use the Ed25519 public key"))?;
    Ok(ParsedKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        decoding,
        jwk: Some(json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        })),
    })
}

fn p256_key(kid: &str, secret: &p256::SecretKey) -> Result<ParsedKey, JwtError> {
    let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(secret)
        .map_err(|_| JwtError::key(kid, "cannot encode the P-256 key"))?;
    let point = secret.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(JwtError::key(kid, "the P-256 public key is the identity"));
    };
    let x = URL_SAFE_NO_PAD.encode(x);
    let y = URL_SAFE_NO_PAD.encode(y);
    let decoding = DecodingKey::from_ec_components(&x, &y)
        .map_err(|_| JwtError::key(kid, "cannot use the P-256 public key"))?;
    Ok(ParsedKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        decoding,
        jwk: Some(json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x,
            "y": y,
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        })),
    })
}

fn hs256(kid: &str, secret: &[u8]) -> Result<ParsedKey, JwtError> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(JwtError::SecretTooShort {
            kid: kid.to_owned(),
            len: secret.len(),
        });
    }
    Ok(ParsedKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_secret(secret),
        decoding: DecodingKey::from_secret(secret),
        jwk: None,
    })
}
