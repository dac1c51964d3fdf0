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

/// A verify-only key read from a JWK: no private half.
pub(crate) struct PublicKey {
    pub(crate) kid: String,
    pub(crate) decoding: DecodingKey,
    /// The JWK as the ring republishes it (normalized: only the public members Keel writes).
    pub(crate) jwk: Value,
}

/// JWK members that hold private key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Whether `jwk` carries private key material.
pub(crate) fn has_private_members(jwk: &serde_json::Map<String, Value>) -> bool {
    PRIVATE_MEMBERS
        .iter()
        .any(|member| jwk.contains_key(*member))
}

/// The verify-only key of one JWK (already checked for private members and a valid `kid`):
/// `Ok(None)` for a key that is not for signatures (`use` other than `sig`), which is skipped.
///
/// EdDSA wants `kty: OKP`, `crv: Ed25519` and a 32-byte `x` that is a valid, not small-order,
/// point; ES256 wants `kty: EC`, `crv: P-256` and 32-byte `x` and `y` on the curve. An `alg`
/// member, when present, must be the ring's algorithm.
pub(crate) fn from_jwk(
    algorithm: JwtAlgorithm,
    kid: &str,
    jwk: &serde_json::Map<String, Value>,
) -> Result<Option<PublicKey>, JwtError> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if jwk
        .get("use")
        .is_some_and(|value| value.as_str() != Some("sig"))
    {
        return Ok(None);
    }
    if let Some(alg) = jwk.get("alg")
        && alg.as_str() != Some(algorithm.as_str())
    {
        return Err(JwtError::key(
            kid,
            format!("`alg` {alg} is not the ring's algorithm {algorithm}"),
        ));
    }
    // A 32-byte member, and its canonical base64url (what the ring republishes).
    let coordinate = |name: &str| -> Result<([u8; 32], String), JwtError> {
        let encoded = member(name)
            .ok_or_else(|| JwtError::key(kid, format!("`{name}` is missing or not a string")))?;
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| JwtError::key(kid, format!("`{name}` is not 32 bytes of base64url")))?;
        Ok((bytes, URL_SAFE_NO_PAD.encode(bytes)))
    };
    match algorithm {
        JwtAlgorithm::EdDSA => {
            if member("kty") != Some("OKP") || member("crv") != Some("Ed25519") {
                return Err(JwtError::key(
                    kid,
                    "an EdDSA key must have `kty: OKP` and `crv: Ed25519`",
                ));
            }
            let (bytes, x) = coordinate("x")?;
            let point = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| JwtError::key(kid, "`x` is not an Ed25519 public key"))?;
            if point.is_weak() {
                return Err(JwtError::key(kid, "`x` is a small-order Ed25519 point"));
            }
            let decoding = DecodingKey::from_ed_components(&x)
                .map_err(|_| JwtError::key(kid, "cannot use the Ed25519 public key"))?;
            Ok(Some(PublicKey {
                kid: kid.to_owned(),
                decoding,
                jwk: json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": x,
                    "kid": kid,
                    "alg": "EdDSA",
                    "use": "sig",
                }),
            }))
        }
        JwtAlgorithm::ES256 => {
            if member("kty") != Some("EC") || member("crv") != Some("P-256") {
                return Err(JwtError::key(
                    kid,
                    "an ES256 key must have `kty: EC` and `crv: P-256`",
                ));
            }
            let ((x_bytes, x), (y_bytes, y)) = (coordinate("x")?, coordinate("y")?);
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(0x04);
            sec1.extend_from_slice(&x_bytes);
            sec1.extend_from_slice(&y_bytes);
            p256::PublicKey::from_sec1_bytes(&sec1)
                .map_err(|_| JwtError::key(kid, "`x`, `y` is not a point on P-256"))?;
            let decoding = DecodingKey::from_ec_components(&x, &y)
                .map_err(|_| JwtError::key(kid, "cannot use the P-256 public key"))?;
            Ok(Some(PublicKey {
                kid: kid.to_owned(),
                decoding,
                jwk: json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": x,
                    "y": y,
                    "kid": kid,
                    "alg": "ES256",
                    "use": "sig",
                }),
            }))
        }
        JwtAlgorithm::HS256 => Err(JwtError::InvalidConfig(
            "HS256 keys are shared secrets and never published; a JWKS cannot carry them".into(),
        )),
    }
}
