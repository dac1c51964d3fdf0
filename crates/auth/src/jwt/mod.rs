//! Access tokens: JWTs in the RFC 9068 profile (`typ: at+jwt`), signed by a [`KeyRing`].
//!
//! - One algorithm per ring: EdDSA (default), ES256 or HS256. Only that algorithm verifies, so
//!   `alg: none` and algorithm-confusion tokens are refused before any key is touched.
//! - The first key signs; the others only verify, so keys can be rotated without logging
//!   everyone out: add the new key first, keep the old one until the last token it signed has
//!   expired (`access_ttl_seconds`), then remove it.
//! - Every token carries a `kid`, and a token is checked against that key only.
//! - [`KeyRing::jwks`] publishes the public keys, so other services verify tokens themselves;
//!   there, [`KeyRing::from_jwks`] builds a verify-only ring from that document.
//! - [`KeyRing::verify_access_cached`] remembers verified tokens in a bounded
//!   [`VerifiedTokenCache`] until their `exp`.
//!
//! Cryptography is jsonwebtoken's RustCrypto backend; key PEMs are read with the RustCrypto key
//! crates, which also derive the public keys.

mod cache;
mod claims;
mod config;
mod error;
mod keys;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use keel_domain::{SessionId, UserId};
use rand::RngCore as _;
use serde_json::{Value, json};
use time::OffsetDateTime;

pub use cache::VerifiedTokenCache;
pub use claims::{AccessClaims, IssuedToken};
pub use config::{JwtAlgorithm, JwtConfig, KeyConfig};
pub use error::{InvalidTokenReason, JwtError};

use claims::RawClaims;
use keys::ParsedKey;

/// The `typ` header of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Longest access token accepted. Keel's are about 400 bytes; the bound keeps hashing and
/// base64 decoding of hostile input cheap.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

const MAX_TTL_SECONDS: u64 = 24 * 60 * 60;
const MAX_LEEWAY_SECONDS: u64 = 5 * 60;
const MAX_KID_CHARS: usize = 128;
/// Most keys read from a JWKS document. Keel publishes one or two (during a rotation).
const MAX_JWKS_KEYS: usize = 64;

/// The keys that sign and verify access tokens, and the claim settings they enforce.
///
/// Cheap to clone (an `Arc` inside); clones share the verification cache. `Debug` shows the
/// key ids only.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

struct Inner {
    algorithm: JwtAlgorithm,
    issuer: String,
    audience: String,
    access_ttl_seconds: i64,
    leeway_seconds: i64,
    /// The key that signs new tokens; `None` in a verify-only ring (built from a JWKS).
    signing: Option<SigningKey>,
    /// Every key that verifies, the signing key included, by `kid`.
    verifying: HashMap<String, DecodingKey>,
    kids: Vec<String>,
    jwks: Value,
    validation: Validation,
    cache: VerifiedTokenCache,
    ephemeral: bool,
}

struct SigningKey {
    kid: String,
    key: EncodingKey,
}

/// A key that verifies: its `kid`, the key, and its public JWK (`None` for HS256).
type VerifyingKey = (String, DecodingKey, Option<Value>);

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("KeyRing")
            .field("algorithm", &inner.algorithm)
            .field("issuer", &inner.issuer)
            .field("audience", &inner.audience)
            .field("kids", &inner.kids)
            .field("ephemeral", &inner.ephemeral)
            .field("can_sign", &inner.signing.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// The ring described by `config`: checks the settings and parses every key, so a bad key
    /// fails start-up rather than the first login.
    pub fn from_config(config: &JwtConfig) -> Result<Self, JwtError> {
        if config.keys.is_empty() {
            return Err(JwtError::NoKeys);
        }
        let keys = config
            .keys
            .iter()
            .map(|key| {
                check_kid(&key.kid)?;
                keys::parse(config.algorithm, key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::build(config, keys, false)
    }

    /// A ring with one freshly generated key of `config.algorithm` (Ed25519, P-256 or a random
    /// HS256 secret), for development; `config.keys` is ignored. Tokens die with the process
    /// and do not verify on other instances, so this logs a warning.
    pub fn generate_ephemeral(config: &JwtConfig) -> Result<Self, JwtError> {
        let mut suffix = [0u8; 6];
        rand::rng().fill_bytes(&mut suffix);
        let kid = format!("ephemeral-{}", URL_SAFE_NO_PAD.encode(suffix));
        let key = keys::generate(config.algorithm, &kid)?;
        let ring = Self::build(config, vec![key], true)?;
        tracing::warn!(
            kid = %kid,
            algorithm = %config.algorithm,
            "JWT: signing with an ephemeral key generated at start-up; tokens will not survive \
             a restart nor verify on other instances. Configure jwt.keys for production."
        );
        Ok(ring)
    }

    /// A verify-only ring from a JSON Web Key Set, such as the one Keel publishes at
    /// `/.well-known/jwks.json`: for a service that checks Keel's access tokens without holding
    /// Keel's private key. Such a ring verifies exactly as Keel's own ring does (same
    /// `config.issuer`, `config.audience`, `config.leeway_seconds`, cache of
    /// `config.verified_cache_capacity` entries) but never signs: [`issue_access`] and
    /// [`self_test`] return [`JwtError::VerifyOnly`]. `config.keys` is ignored.
    ///
    /// `config.algorithm` must be EdDSA or ES256 (HS256 keys are never published). Each key
    /// needs a `kid`; a key whose `use` is not `sig` is skipped; a key of another `alg`, `kty`
    /// or curve, or that is not a valid public key, is an error. A document with any private
    /// member (`d`, or the RSA and symmetric ones) is refused as a whole: it is a private key
    /// that must not be handed around, not a JWKS.
    ///
    /// The ring knows the keys of the document it was built from: when Keel rotates its key,
    /// tokens of the new `kid` are refused ([`InvalidTokenReason::UnknownKey`]) until the
    /// service fetches the JWKS again and builds a new ring.
    ///
    /// [`issue_access`]: Self::issue_access
    /// [`self_test`]: Self::self_test
    pub fn from_jwks(jwks: &Value, config: &JwtConfig) -> Result<Self, JwtError> {
        if config.algorithm == JwtAlgorithm::HS256 {
            return Err(JwtError::InvalidConfig(
                "a JWKS carries EdDSA or ES256 public keys; HS256 secrets are never published"
                    .into(),
            ));
        }
        let Some(entries) = jwks.get("keys").and_then(Value::as_array) else {
            return Err(JwtError::InvalidConfig(
                "a JWKS is a JSON object with a `keys` array".into(),
            ));
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(JwtError::InvalidConfig(format!(
                "the JWKS has {} keys; at most {MAX_JWKS_KEYS} are read",
                entries.len()
            )));
        }
        let mut objects = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(object) = entry.as_object() else {
                return Err(JwtError::InvalidConfig(
                    "every entry of a JWKS `keys` array must be a JSON object".into(),
                ));
            };
            let kid = object.get("kid").and_then(Value::as_str).unwrap_or("");
            // Checked for every entry first, skipped ones included: a document with a private
            // key in it is a leak to report, whatever else it holds.
            if keys::has_private_members(object) {
                return Err(JwtError::key(
                    kid,
                    "the JWKS holds private key material; refusing it (publish only public keys)",
                ));
            }
            objects.push((kid, object));
        }
        let mut public = Vec::new();
        for (kid, object) in objects {
            check_kid(kid)?;
            if let Some(key) = keys::from_jwk(config.algorithm, kid, object)? {
                public.push((key.kid, key.decoding, Some(key.jwk)));
            }
        }
        if public.is_empty() {
            return Err(JwtError::NoKeys);
        }
        Self::assemble(config, None, public, false)
    }

    fn build(config: &JwtConfig, keys: Vec<ParsedKey>, ephemeral: bool) -> Result<Self, JwtError> {
        let mut keys = keys.into_iter();
        let Some(signing) = keys.next() else {
            return Err(JwtError::NoKeys);
        };
        let signing_key = SigningKey {
            kid: signing.kid.clone(),
            key: signing.encoding,
        };
        // Verify-only keys lose their private half here: they never sign again.
        let public = std::iter::once((signing.kid, signing.decoding, signing.jwk))
            .chain(keys.map(|key| (key.kid, key.decoding, key.jwk)))
            .collect();
        Self::assemble(config, Some(signing_key), public, ephemeral)
    }

    fn assemble(
        config: &JwtConfig,
        signing: Option<SigningKey>,
        public: Vec<VerifyingKey>,
        ephemeral: bool,
    ) -> Result<Self, JwtError> {
        check_settings(config)?;
        // If another crate in the build also enables jsonwebtoken's aws-lc backend, the crate
        // cannot pick one and panics on first use; installing ours explicitly avoids that. An
        // error only means a provider was installed already, which is fine.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();

        let mut verifying = HashMap::new();
        let mut kids = Vec::new();
        let mut published = Vec::new();
        for (kid, decoding, jwk) in public {
            if verifying.contains_key(&kid) {
                return Err(JwtError::key(&kid, "duplicate kid"));
            }
            published.extend(jwk);
            verifying.insert(kid.clone(), decoding);
            kids.push(kid);
        }

        let mut validation = Validation::new(config.algorithm.to_jsonwebtoken());
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        // Expiry is checked by Keel against the caller's clock (jsonwebtoken would read the
        // system clock, which tests and `ManualClock` users cannot move).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;

        Ok(Self {
            inner: Arc::new(Inner {
                algorithm: config.algorithm,
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                access_ttl_seconds: i64::try_from(config.access_ttl_seconds).unwrap_or(i64::MAX),
                leeway_seconds: i64::try_from(config.leeway_seconds).unwrap_or(i64::MAX),
                signing,
                verifying,
                kids,
                jwks: json!({ "keys": published }),
                validation,
                cache: VerifiedTokenCache::new(config.verified_cache_capacity),
                ephemeral,
            }),
        })
    }

    /// The ring's algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.inner.algorithm
    }

    /// The `kid` of the key that signs new tokens; empty for a verify-only ring
    /// ([`from_jwks`](Self::from_jwks)).
    pub fn signing_kid(&self) -> &str {
        self.inner
            .signing
            .as_ref()
            .map_or("", |signing| signing.kid.as_str())
    }

    /// Whether the ring can sign: `false` for a verify-only ring ([`from_jwks`](Self::from_jwks)).
    pub fn can_sign(&self) -> bool {
        self.inner.signing.is_some()
    }

    /// The `kid`s of every key that verifies, the signing key first.
    pub fn kids(&self) -> &[String] {
        &self.inner.kids
    }

    /// Lifetime of a new access token (the `expiresIn` of a token response).
    pub fn access_ttl(&self) -> time::Duration {
        time::Duration::seconds(self.inner.access_ttl_seconds)
    }

    /// Whether the signing key was generated at start-up rather than configured.
    pub fn is_ephemeral(&self) -> bool {
        self.inner.ephemeral
    }

    /// The verification cache used by [`verify_access_cached`](Self::verify_access_cached).
    pub fn cache(&self) -> &VerifiedTokenCache {
        &self.inner.cache
    }

    /// Signs an access token for `user` in `session`, issued at `now`, valid for the configured
    /// TTL. A verify-only ring ([`from_jwks`](Self::from_jwks)) refuses:
    /// [`JwtError::VerifyOnly`].
    pub fn issue_access(
        &self,
        user: UserId,
        session: SessionId,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, JwtError> {
        let inner = &self.inner;
        let Some(signing) = &inner.signing else {
            return Err(JwtError::VerifyOnly);
        };
        let iat = now.unix_timestamp();
        let exp = iat.saturating_add(inner.access_ttl_seconds);
        let expires_at = OffsetDateTime::from_unix_timestamp(exp)
            .map_err(|_| JwtError::Signing("expiry out of range".into()))?;
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let claims = AccessClaims {
            iss: inner.issuer.clone(),
            aud: inner.audience.clone(),
            sub: user,
            sid: session,
            jti: URL_SAFE_NO_PAD.encode(jti),
            iat,
            exp,
        };
        let mut header = Header::new(inner.algorithm.to_jsonwebtoken());
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(signing.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &signing.key)
            .map_err(|e| JwtError::Signing(e.to_string()))?;
        Ok(IssuedToken {
            token,
            jti: claims.jti,
            expires_at,
        })
    }

    /// Verifies an access token at `now`: structure, `typ`, algorithm, `kid`, signature, `iss`,
    /// `aud`, the presence of every claim, then `exp` with the configured leeway.
    ///
    /// [`JwtError::Expired`] is returned only for a token whose signature is valid.
    pub fn verify_access(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, JwtError> {
        use InvalidTokenReason as R;
        let inner = &self.inner;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::invalid(R::Malformed));
        }
        // `alg: none` (and any algorithm jsonwebtoken does not know) fails to parse here.
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| JwtError::invalid(R::Malformed))?;
        if header.alg != inner.algorithm.to_jsonwebtoken() {
            return Err(JwtError::invalid(R::Algorithm));
        }
        if !is_access_token_type(header.typ.as_deref()) {
            return Err(JwtError::invalid(R::Type));
        }
        if header.crit.is_some() {
            return Err(JwtError::invalid(R::CriticalHeader));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| inner.verifying.get(kid))
            .ok_or(JwtError::invalid(R::UnknownKey))?;

        let raw = jsonwebtoken::decode::<RawClaims>(token, key, &inner.validation)
            .map_err(map_decode_error)?
            .claims;
        let missing = |claim: &str| JwtError::invalid(R::MissingClaim(claim.to_owned()));
        let claims = AccessClaims {
            iss: raw.iss.ok_or_else(|| missing("iss"))?,
            aud: raw.aud.ok_or_else(|| missing("aud"))?,
            sub: raw.sub.ok_or_else(|| missing("sub"))?,
            sid: raw.sid.ok_or_else(|| missing("sid"))?,
            jti: raw.jti.ok_or_else(|| missing("jti"))?,
            iat: raw.iat.ok_or_else(|| missing("iat"))?,
            exp: raw.exp.ok_or_else(|| missing("exp"))?,
        };
        // jsonwebtoken already compared these; comparing again costs nothing and does not
        // depend on its handling of array-valued claims.
        if claims.iss != inner.issuer {
            return Err(JwtError::invalid(R::Issuer));
        }
        if claims.aud != inner.audience {
            return Err(JwtError::invalid(R::Audience));
        }
        if now.unix_timestamp() >= claims.exp.saturating_add(inner.leeway_seconds) {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }

    /// [`verify_access`](Self::verify_access) through the ring's [`VerifiedTokenCache`]: a token
    /// verified before is answered from the cache until its `exp` (without leeway), anything
    /// else is verified in full and, if valid, remembered.
    pub fn verify_access_cached(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::invalid(InvalidTokenReason::Malformed));
        }
        let key = cache::key_of(token);
        if let Some(claims) = self.inner.cache.get_by_key(&key, now) {
            return Ok(claims);
        }
        let claims = self.verify_access(token, now)?;
        self.inner.cache.insert_by_key(key, claims.clone(), now);
        Ok(claims)
    }

    /// The JSON Web Key Set with the public key of every key in the ring (signing and
    /// verify-only), each with `kid`, `alg` and `use: "sig"`. Never contains private members;
    /// empty for HS256, whose key is a shared secret.
    pub fn jwks(&self) -> Value {
        self.inner.jwks.clone()
    }

    /// Signs a token and verifies it, and checks that a token with a damaged signature is
    /// refused. Call it at start-up: a broken key or backend fails there, not at the first login.
    /// A verify-only ring cannot sign, so it fails with [`JwtError::VerifyOnly`].
    pub fn self_test(&self) -> Result<(), JwtError> {
        let now = OffsetDateTime::now_utc();
        let (user, session) = (UserId::generate(), SessionId::generate());
        let issued = self.issue_access(user, session, now)?;
        let claims = self
            .verify_access(&issued.token, now)
            .map_err(|e| JwtError::Signing(format!("self-test: own token refused: {e}")))?;
        if claims.sub != user || claims.sid != session || claims.jti != issued.jti {
            return Err(JwtError::Signing(
                "self-test: claims changed on the way".into(),
            ));
        }
        let forged = damage_signature(&issued.token);
        if self.verify_access(&forged, now).is_ok() {
            return Err(JwtError::Signing(
                "self-test: a damaged signature verified".into(),
            ));
        }
        Ok(())
    }
}

/// RFC 9068 §4: `at+jwt`, or the full media type `application/at+jwt`, compared without case.
fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| {
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
    })
}

/// The token with the first byte of its signature changed, for the self-test.
fn damage_signature(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return String::new();
    };
    let (head, signature) = token.split_at(dot + 1);
    let mut signature = signature.to_owned();
    let replacement = if signature.starts_with('A') { "B" } else { "A" };
    signature.replace_range(..1.min(signature.len()), replacement);
    format!("{head}{signature}")
}

fn map_decode_error(error: jsonwebtoken::errors::Error) -> JwtError {
    use InvalidTokenReason as R;
    let reason = match error.kind() {
        ErrorKind::InvalidSignature => R::Signature,
        ErrorKind::InvalidIssuer => R::Issuer,
        ErrorKind::InvalidAudience => R::Audience,
        ErrorKind::MissingRequiredClaim(claim) => R::MissingClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => R::Algorithm,
        ErrorKind::ExpiredSignature => return JwtError::Expired,
        _ => R::Malformed,
    };
    JwtError::invalid(reason)
}

fn check_kid(kid: &str) -> Result<(), JwtError> {
    if kid.is_empty() || kid.chars().count() > MAX_KID_CHARS {
        return Err(JwtError::key(kid, "kid must have 1 to 128 characters"));
    }
    Ok(())
}

fn check_settings(config: &JwtConfig) -> Result<(), JwtError> {
    if config.issuer.is_empty() {
        return Err(JwtError::InvalidConfig("issuer must not be empty".into()));
    }
    if config.audience.is_empty() {
        return Err(JwtError::InvalidConfig("audience must not be empty".into()));
    }
    if !(1..=MAX_TTL_SECONDS).contains(&config.access_ttl_seconds) {
        return Err(JwtError::InvalidConfig(format!(
            "access_ttl_seconds must be within 1..={MAX_TTL_SECONDS}"
        )));
    }
    if config.leeway_seconds > MAX_LEEWAY_SECONDS {
        return Err(JwtError::InvalidConfig(format!(
            "leeway_seconds must be at most {MAX_LEEWAY_SECONDS}"
        )));
    }
    Ok(())
}
