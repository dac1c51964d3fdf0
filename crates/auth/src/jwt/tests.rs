//! Tests of the key ring: issuing, every refusal, rotation, JWKS, the cache and configuration.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, Header};
use keel_domain::{SessionId, UserId};
use p256::pkcs8::LineEnding;
use rand::RngCore as _;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::*;

const ALGORITHMS: [JwtAlgorithm; 3] = [
    JwtAlgorithm::EdDSA,
    JwtAlgorithm::ES256,
    JwtAlgorithm::HS256,
];

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn ed25519_pem() -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&random_bytes());
    key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

fn p256_secret() -> p256::SecretKey {
    p256::SecretKey::from_slice(&random_bytes::<32>()).unwrap()
}

fn p256_pem() -> String {
    p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&p256_secret(), LineEnding::LF)
        .unwrap()
        .to_string()
}

fn hs256_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

fn key(algorithm: JwtAlgorithm, kid: &str) -> KeyConfig {
    match algorithm {
        JwtAlgorithm::EdDSA => KeyConfig::pem(kid, ed25519_pem()),
        JwtAlgorithm::ES256 => KeyConfig::pem(kid, p256_pem()),
        JwtAlgorithm::HS256 => KeyConfig::secret(kid, hs256_secret()),
    }
}

fn config(algorithm: JwtAlgorithm, keys: Vec<KeyConfig>) -> JwtConfig {
    JwtConfig {
        issuer: "https://keel.test".into(),
        audience: "keel-api".into(),
        algorithm,
        keys,
        ..JwtConfig::default()
    }
}

fn ring(algorithm: JwtAlgorithm) -> KeyRing {
    KeyRing::from_config(&config(algorithm, vec![key(algorithm, "k1")])).unwrap()
}

fn issue(ring: &KeyRing) -> String {
    ring.issue_access(UserId::generate(), SessionId::generate(), now())
        .unwrap()
        .token
}

/// A header as Keel writes it, to be spoiled by the test.
fn header(ring: &KeyRing) -> Header {
    let mut header = Header::new(ring.algorithm().to_jsonwebtoken());
    header.typ = Some("at+jwt".into());
    header.kid = Some(ring.signing_kid().into());
    header
}

/// Claims as Keel writes them, to be spoiled by the test.
fn claims(ring: &KeyRing) -> Value {
    let iat = now().unix_timestamp();
    json!({
        "iss": ring.inner.issuer,
        "aud": ring.inner.audience,
        "sub": UserId::generate(),
        "sid": SessionId::generate(),
        "jti": "abc",
        "iat": iat,
        "exp": iat + 900,
    })
}

/// Signs anything with the ring's own signing key.
fn sign(ring: &KeyRing, header: &Header, claims: &Value) -> String {
    let signing = ring.inner.signing.as_ref().expect("a signing ring");
    jsonwebtoken::encode(header, claims, &signing.key).unwrap()
}

fn b64json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn refused(ring: &KeyRing, token: &str) -> InvalidTokenReason {
    match ring.verify_access(token, now()) {
        Err(JwtError::Invalid(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[test]
fn issued_tokens_verify_for_every_algorithm() {
    for algorithm in ALGORITHMS {
        let ring = ring(algorithm);
        let (user, session) = (UserId::generate(), SessionId::generate());
        let issued = ring.issue_access(user, session, now()).unwrap();
        assert_eq!(issued.expires_at, now() + Duration::seconds(900));

        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.alg, algorithm.to_jsonwebtoken());

        let claims = ring.verify_access(&issued.token, now()).unwrap();
        assert_eq!(claims.iss, "https://keel.test");
        assert_eq!(claims.aud, "keel-api");
        assert_eq!(claims.sub, user);
        assert_eq!(claims.sid, session);
        assert_eq!(claims.jti, issued.jti);
        assert_eq!(claims.iat, now().unix_timestamp());
        assert_eq!(claims.expires_at(), issued.expires_at);
        assert!(ring.self_test().is_ok(), "{algorithm}");
    }
}

#[test]
fn every_token_gets_its_own_jti() {
    let ring = ring(JwtAlgorithm::EdDSA);
    let a = ring
        .issue_access(UserId::generate(), SessionId::generate(), now())
        .unwrap();
    let b = ring
        .issue_access(UserId::generate(), SessionId::generate(), now())
        .unwrap();
    assert_ne!(a.jti, b.jti);
    assert_eq!(URL_SAFE_NO_PAD.decode(&a.jti).unwrap().len(), 16);
}

#[test]
fn ephemeral_rings_work_for_every_algorithm() {
    for algorithm in ALGORITHMS {
        let ring = KeyRing::generate_ephemeral(&config(algorithm, Vec::new())).unwrap();
        assert!(ring.is_ephemeral());
        assert!(ring.signing_kid().starts_with("ephemeral-"));
        ring.self_test().unwrap();
        // Two ephemeral rings never accept each other's tokens.
        let other = KeyRing::generate_ephemeral(&config(algorithm, Vec::new())).unwrap();
        assert_eq!(
            refused(&other, &issue(&ring)),
            InvalidTokenReason::UnknownKey
        );
    }
}

#[test]
fn alg_none_is_refused() {
    let ring = ring(JwtAlgorithm::EdDSA);
    let claims = b64json(&claims(&ring));
    for alg in ["none", "None", "NONE"] {
        let header = b64json(&json!({ "alg": alg, "typ": "at+jwt", "kid": "k1" }));
        for token in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
            assert_eq!(
                refused(&ring, &token),
                InvalidTokenReason::Malformed,
                "{token}"
            );
        }
    }
}

#[test]
fn another_algorithm_is_refused_even_when_the_signature_is_right_for_it() {
    let ring = ring(JwtAlgorithm::EdDSA);
    // Algorithm confusion: an HMAC keyed with the published public key.
    let jwks = ring.jwks();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap();
    let mut header = header(&ring);
    header.alg = Algorithm::HS256;
    let token = jsonwebtoken::encode(
        &header,
        &claims(&ring),
        &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()),
    )
    .unwrap();
    assert_eq!(refused(&ring, &token), InvalidTokenReason::Algorithm);

    // A perfectly good ES256 token is still not an EdDSA ring's token.
    let es256 = ring_with_kid(JwtAlgorithm::ES256, "k1");
    assert_eq!(
        refused(&ring, &issue(&es256)),
        InvalidTokenReason::Algorithm
    );
}

fn ring_with_kid(algorithm: JwtAlgorithm, kid: &str) -> KeyRing {
    KeyRing::from_config(&config(algorithm, vec![key(algorithm, kid)])).unwrap()
}

#[test]
fn a_wrong_signature_is_refused() {
    for algorithm in ALGORITHMS {
        let ring = ring(algorithm);
        let token = issue(&ring);
        let other = issue(&ring);
        let (message, _) = token.rsplit_once('.').unwrap();
        let (_, other_signature) = other.rsplit_once('.').unwrap();
        let swapped = format!("{message}.{other_signature}");
        assert_eq!(
            refused(&ring, &swapped),
            InvalidTokenReason::Signature,
            "{algorithm}"
        );
        assert_eq!(
            refused(&ring, &damage_signature(&token)),
            InvalidTokenReason::Signature,
            "{algorithm}"
        );

        // The same kid on another key: the signature does not match.
        let impostor = ring_with_kid(algorithm, "k1");
        assert_eq!(
            refused(&ring, &issue(&impostor)),
            InvalidTokenReason::Signature
        );
    }
}

#[test]
fn a_changed_payload_breaks_the_signature() {
    let ring = ring(JwtAlgorithm::EdDSA);
    let token = issue(&ring);
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = b64json(&claims(&ring));
    parts[1] = &forged;
    assert_eq!(
        refused(&ring, &parts.join(".")),
        InvalidTokenReason::Signature
    );
}

#[test]
fn an_unknown_or_missing_kid_is_refused() {
    let ring = ring(JwtAlgorithm::EdDSA);
    let mut unknown = header(&ring);
    unknown.kid = Some("k2".into());
    assert_eq!(
        refused(&ring, &sign(&ring, &unknown, &claims(&ring))),
        InvalidTokenReason::UnknownKey
    );
    let mut missing = header(&ring);
    missing.kid = None;
    assert_eq!(
        refused(&ring, &sign(&ring, &missing, &claims(&ring))),
        InvalidTokenReason::UnknownKey
    );
}

#[test]
fn a_wrong_issuer_or_audience_is_refused() {
    let pem = ed25519_pem();
    let ours = config(JwtAlgorithm::EdDSA, vec![KeyConfig::pem("k1", pem.clone())]);
    let ring = KeyRing::from_config(&ours).unwrap();

    let other_issuer = KeyRing::from_config(&JwtConfig {
        issuer: "https://elsewhere.test".into(),
        ..ours.clone()
    })
    .unwrap();
    assert_eq!(
        refused(&ring, &issue(&other_issuer)),
        InvalidTokenReason::Issuer
    );

    let other_audience = KeyRing::from_config(&JwtConfig {
        audience: "another-api".into(),
        ..ours.clone()
    })
    .unwrap();
    assert_eq!(
        refused(&ring, &issue(&other_audience)),
        InvalidTokenReason::Audience
    );

    // An audience list that contains ours is not Keel's shape: refused rather than guessed.
    let mut listed = claims(&ring);
    listed["aud"] = json!(["keel-api", "another-api"]);
    assert_eq!(
        refused(&ring, &sign(&ring, &header(&ring), &listed)),
        InvalidTokenReason::Malformed
    );
    // Case matters.
    let mut shouting = claims(&ring);
    shouting["iss"] = json!("HTTPS://KEEL.TEST");
    assert_eq!(
        refused(&ring, &sign(&ring, &header(&ring), &shouting)),
        InvalidTokenReason::Issuer
    );
}

#[test]
fn every_missing_claim_is_named() {
    let ring = ring(JwtAlgorithm::EdDSA);
    for claim in ["exp", "iss", "aud", "sub", "sid", "jti", "iat"] {
        let mut claims = claims(&ring);
        claims.as_object_mut().unwrap().remove(claim);
        assert_eq!(
            refused(&ring, &sign(&ring, &header(&ring), &claims)),
            InvalidTokenReason::MissingClaim(claim.into()),
        );
    }
}

#[test]
fn claims_of_the_wrong_type_are_malformed() {
    let ring = ring(JwtAlgorithm::EdDSA);
    for (claim, value) in [
        ("sub", json!("not-a-uuid")),
        ("sid", json!(42)),
        ("exp", json!("tomorrow")),
        ("iat", json!(1.5)),
    ] {
        let mut claims = claims(&ring);
        claims[claim] = value;
        assert_eq!(
            refused(&ring, &sign(&ring, &header(&ring), &claims)),
            InvalidTokenReason::Malformed,
            "{claim}"
        );
    }
}

#[test]
fn expiry_honours_the_leeway_and_nothing_more() {
    let ring = ring(JwtAlgorithm::EdDSA);
    let token = issue(&ring);
    let exp = now() + Duration::seconds(900);
    assert!(
        ring.verify_access(&token, exp - Duration::seconds(1))
            .is_ok()
    );
    assert!(
        ring.verify_access(&token, exp + Duration::seconds(29))
            .is_ok()
    );
    assert!(matches!(
        ring.verify_access(&token, exp + Duration::seconds(30)),
        Err(JwtError::Expired)
    ));
    // An expired token with a bad signature is invalid, not expired: expiry is only reported
    // for tokens Keel really issued.
    assert!(matches!(
        ring.verify_access(&damage_signature(&token), exp + Duration::days(1)),
        Err(JwtError::Invalid(InvalidTokenReason::Signature))
    ));
}

#[test]
fn only_at_jwt_typed_tokens_are_access_tokens() {
    let ring = ring(JwtAlgorithm::EdDSA);
    for typ in [Some("JWT"), Some("id_token+jwt"), Some("at+jwt2"), None] {
        let mut header = header(&ring);
        header.typ = typ.map(str::to_owned);
        assert_eq!(
            refused(&ring, &sign(&ring, &header, &claims(&ring))),
            InvalidTokenReason::Type,
            "{typ:?}"
        );
    }
    for typ in ["application/at+jwt", "AT+JWT"] {
        let mut header = header(&ring);
        header.typ = Some(typ.into());
        assert!(
            ring.verify_access(&sign(&ring, &header, &claims(&ring)), now())
                .is_ok()
        );
    }
}

#[test]
fn critical_headers_are_refused() {
    let ring = ring(JwtAlgorithm::EdDSA);
    let mut header = header(&ring);
    header.crit = Some(vec!["exp".into()]);
    assert_eq!(
        refused(&ring, &sign(&ring, &header, &claims(&ring))),
        InvalidTokenReason::CriticalHeader
    );
}

#[test]
fn garbage_and_oversized_tokens_are_malformed() {
    let ring = ring(JwtAlgorithm::EdDSA);
    for token in ["", "abc", "a.b.c", "...", "eyJ.eyJ.eyJ"] {
        assert_eq!(
            refused(&ring, token),
            InvalidTokenReason::Malformed,
            "{token:?}"
        );
    }
    let huge = format!(
        "{}.{}.sig",
        b64json(&json!({"alg": "EdDSA"})),
        "A".repeat(9000)
    );
    assert_eq!(refused(&ring, &huge), InvalidTokenReason::Malformed);
    assert!(matches!(
        ring.verify_access_cached(&huge, now()),
        Err(JwtError::Invalid(InvalidTokenReason::Malformed))
    ));
}

#[test]
fn rotated_out_keys_still_verify_and_removed_keys_do_not() {
    for algorithm in ALGORITHMS {
        let old_key = key(algorithm, "2025-01");
        let new_key = key(algorithm, "2025-06");
        let before = KeyRing::from_config(&config(algorithm, vec![old_key.clone()])).unwrap();
        let during =
            KeyRing::from_config(&config(algorithm, vec![new_key.clone(), old_key])).unwrap();
        let after = KeyRing::from_config(&config(algorithm, vec![new_key])).unwrap();

        let old_token = issue(&before);
        assert!(
            during.verify_access(&old_token, now()).is_ok(),
            "{algorithm}"
        );
        assert_eq!(refused(&after, &old_token), InvalidTokenReason::UnknownKey);

        // The new key signs as soon as it is first in the ring, and its tokens outlive the
        // rotation.
        assert_eq!(during.signing_kid(), "2025-06");
        let new_token = issue(&during);
        assert!(after.verify_access(&new_token, now()).is_ok());
        assert_eq!(refused(&before, &new_token), InvalidTokenReason::UnknownKey);
    }
}

#[test]
fn hs256_secrets_shorter_than_32_bytes_are_rejected() {
    let short = config(
        JwtAlgorithm::HS256,
        vec![KeyConfig::secret("k1", "x".repeat(31))],
    );
    let error = KeyRing::from_config(&short).unwrap_err();
    assert!(
        matches!(&error, JwtError::SecretTooShort { kid, len: 31 } if kid == "k1"),
        "{error:?}"
    );
    assert!(!error.to_string().contains("xxxx"));
    let enough = config(
        JwtAlgorithm::HS256,
        vec![KeyConfig::secret("k1", "x".repeat(32))],
    );
    assert!(KeyRing::from_config(&enough).is_ok());
    // A short verify-only key is just as unacceptable.
    let rotated = config(
        JwtAlgorithm::HS256,
        vec![
            key(JwtAlgorithm::HS256, "k2"),
            KeyConfig::secret("k1", "short"),
        ],
    );
    assert!(matches!(
        KeyRing::from_config(&rotated),
        Err(JwtError::SecretTooShort { .. })
    ));
}

#[test]
fn bad_key_configurations_are_rejected_at_start_up() {
    use JwtAlgorithm::{ES256, EdDSA, HS256};
    let cases: Vec<(JwtAlgorithm, Vec<KeyConfig>)> = vec![
        (EdDSA, vec![KeyConfig::pem("k1", "not a pem")]),
        (EdDSA, vec![KeyConfig::pem("k1", p256_pem())]),
        (ES256, vec![KeyConfig::pem("k1", ed25519_pem())]),
        (EdDSA, vec![KeyConfig::secret("k1", hs256_secret())]),
        (HS256, vec![KeyConfig::pem("k1", ed25519_pem())]),
        (
            EdDSA,
            vec![KeyConfig {
                kid: "k1".into(),
                private_key_pem: None,
                secret: None,
            }],
        ),
        (EdDSA, vec![key(EdDSA, "")]),
        (EdDSA, vec![key(EdDSA, &"k".repeat(129))]),
        (EdDSA, vec![key(EdDSA, "k1"), key(EdDSA, "k1")]),
    ];
    for (algorithm, keys) in cases {
        let error = KeyRing::from_config(&config(algorithm, keys)).unwrap_err();
        assert!(matches!(error, JwtError::InvalidKey { .. }), "{error:?}");
        assert!(!error.to_string().contains("PRIVATE KEY"));
    }
    assert!(matches!(
        KeyRing::from_config(&config(EdDSA, Vec::new())),
        Err(JwtError::NoKeys)
    ));
}

#[test]
fn bad_settings_are_rejected() {
    let good = config(JwtAlgorithm::EdDSA, vec![key(JwtAlgorithm::EdDSA, "k1")]);
    for bad in [
        JwtConfig {
            issuer: String::new(),
            ..good.clone()
        },
        JwtConfig {
            audience: String::new(),
            ..good.clone()
        },
        JwtConfig {
            access_ttl_seconds: 0,
            ..good.clone()
        },
        JwtConfig {
            access_ttl_seconds: 86_401,
            ..good.clone()
        },
        JwtConfig {
            leeway_seconds: 301,
            ..good.clone()
        },
    ] {
        assert!(matches!(
            KeyRing::from_config(&bad),
            Err(JwtError::InvalidConfig(_))
        ));
        assert!(matches!(
            KeyRing::generate_ephemeral(&bad),
            Err(JwtError::InvalidConfig(_))
        ));
    }
}

#[test]
fn sec1_ec_private_keys_are_accepted() {
    let pem = p256_secret()
        .to_sec1_pem(LineEnding::LF)
        .unwrap()
        .to_string();
    assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let ring = KeyRing::from_config(&config(
        JwtAlgorithm::ES256,
        vec![KeyConfig::pem("k1", pem)],
    ))
    .unwrap();
    ring.self_test().unwrap();
}

#[test]
fn the_jwks_publishes_public_keys_only() {
    let ed = KeyRing::from_config(&config(
        JwtAlgorithm::EdDSA,
        vec![
            key(JwtAlgorithm::EdDSA, "new"),
            key(JwtAlgorithm::EdDSA, "old"),
        ],
    ))
    .unwrap();
    let jwks = ed.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], "new");
    assert_eq!(keys[1]["kid"], "old");
    for jwk in keys {
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(jwk.as_object().unwrap().len(), 6, "{jwk}");
    }

    let es = ring(JwtAlgorithm::ES256);
    let jwks = es.jwks();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    for coordinate in ["x", "y"] {
        let bytes = URL_SAFE_NO_PAD
            .decode(jwk[coordinate].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32);
    }
    assert!(jwk.get("d").is_none());

    assert_eq!(ring(JwtAlgorithm::HS256).jwks(), json!({ "keys": [] }));
}

#[test]
fn another_service_can_verify_with_the_published_jwks() {
    for algorithm in [JwtAlgorithm::EdDSA, JwtAlgorithm::ES256] {
        let ring = ring(algorithm);
        let token = issue(&ring);
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(ring.jwks()).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let jwk = jwks.find(&kid).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(algorithm.to_jsonwebtoken());
        validation.set_audience(&["keel-api"]);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<AccessClaims>(&token, &key, &validation).unwrap();
        assert_eq!(decoded.claims.iss, "https://keel.test");
    }
}

#[test]
fn secrets_and_tokens_stay_out_of_debug_output() {
    let secret = hs256_secret();
    let pem = ed25519_pem();
    let hs = config(
        JwtAlgorithm::HS256,
        vec![KeyConfig::secret("k1", secret.clone())],
    );
    let ed = config(JwtAlgorithm::EdDSA, vec![KeyConfig::pem("k1", pem.clone())]);
    let body = pem.lines().nth(1).unwrap();
    for text in [
        format!("{hs:?}"),
        format!("{ed:?}"),
        format!("{:?}", KeyRing::from_config(&hs).unwrap()),
        format!("{:?}", KeyRing::from_config(&ed).unwrap()),
    ] {
        assert!(text.contains("k1"), "{text}");
        assert!(!text.contains(&secret) && !text.contains(body), "{text}");
    }
    let issued = KeyRing::from_config(&ed)
        .unwrap()
        .issue_access(UserId::generate(), SessionId::generate(), now())
        .unwrap();
    assert!(!format!("{issued:?}").contains(&issued.token));
}

#[test]
fn config_has_defaults_and_reads_keys() {
    let config: JwtConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.algorithm, JwtAlgorithm::EdDSA);
    assert_eq!(config.access_ttl_seconds, 900);
    assert_eq!(config.leeway_seconds, 30);
    assert_eq!(config.issuer, "keel");
    assert!(config.keys.is_empty());

    let config: JwtConfig = serde_json::from_value(json!({
        "issuer": "https://keel.test",
        "audience": "keel-api",
        "algorithm": "ES256",
        "keys": [{ "kid": "a", "private_key_pem": p256_pem() }],
    }))
    .unwrap();
    KeyRing::from_config(&config).unwrap().self_test().unwrap();

    let config: JwtConfig = serde_json::from_value(json!({
        "algorithm": "HS256",
        "keys": [{ "kid": "a", "secret": hs256_secret() }],
    }))
    .unwrap();
    KeyRing::from_config(&config).unwrap().self_test().unwrap();

    assert!(serde_json::from_value::<JwtConfig>(json!({ "algorithm": "RS256" })).is_err());
    assert!(serde_json::from_value::<JwtConfig>(json!({ "algorithm": "none" })).is_err());
}

#[test]
fn cached_verification_answers_from_the_cache_until_exp() {
    let ring = ring(JwtAlgorithm::EdDSA);
    let token = issue(&ring);
    let first = ring.verify_access_cached(&token, now()).unwrap();
    assert_eq!(ring.cache().len(), 1);
    assert_eq!(ring.verify_access_cached(&token, now()).unwrap(), first);
    assert_eq!(ring.cache().len(), 1);

    // Refusals are not cached.
    assert!(
        ring.verify_access_cached(&damage_signature(&token), now())
            .is_err()
    );
    assert_eq!(ring.cache().len(), 1);

    // At exp the cache no longer answers; the leeway still lets a full check pass, without
    // caching, and past the leeway the token is expired.
    let exp = now() + Duration::seconds(900);
    assert!(ring.cache().get(&token, exp).is_none());
    assert!(ring.verify_access_cached(&token, exp).is_ok());
    assert!(ring.cache().is_empty());
    assert!(matches!(
        ring.verify_access_cached(&token, exp + Duration::seconds(30)),
        Err(JwtError::Expired)
    ));
}

#[test]
fn the_rings_cache_stays_within_its_capacity() {
    let ring = KeyRing::from_config(&JwtConfig {
        verified_cache_capacity: 4,
        ..config(JwtAlgorithm::HS256, vec![key(JwtAlgorithm::HS256, "k1")])
    })
    .unwrap();
    for _ in 0..50 {
        let token = issue(&ring);
        ring.verify_access_cached(&token, now()).unwrap();
        assert!(ring.cache().len() <= 4);
    }
    assert_eq!(ring.cache().len(), 4);

    let uncached = KeyRing::from_config(&JwtConfig {
        verified_cache_capacity: 0,
        ..config(JwtAlgorithm::HS256, vec![key(JwtAlgorithm::HS256, "k1")])
    })
    .unwrap();
    uncached
        .verify_access_cached(&issue(&uncached), now())
        .unwrap();
    assert!(uncached.cache().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Verify-only rings built from a JWKS

fn jwks_error(jwks: &Value, algorithm: JwtAlgorithm) -> JwtError {
    KeyRing::from_jwks(jwks, &config(algorithm, Vec::new())).unwrap_err()
}

#[test]
fn a_ring_built_from_the_jwks_verifies_the_signing_rings_tokens_and_never_signs() {
    for algorithm in [JwtAlgorithm::EdDSA, JwtAlgorithm::ES256] {
        let signing = ring(algorithm);
        let (user, session) = (UserId::generate(), SessionId::generate());
        let token = signing.issue_access(user, session, now()).unwrap().token;

        let verifying = KeyRing::from_jwks(&signing.jwks(), &config(algorithm, Vec::new()))
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        let claims = verifying.verify_access(&token, now()).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
        assert_eq!(
            verifying.verify_access_cached(&token, now()).unwrap(),
            claims
        );
        // It republishes the same public keys, and refuses what the signing ring refuses.
        assert_eq!(verifying.jwks(), signing.jwks());
        assert_eq!(verifying.kids(), ["k1"]);
        assert_eq!(
            refused(&verifying, &damage_signature(&token)),
            InvalidTokenReason::Signature
        );
        assert!(matches!(
            verifying.verify_access(&token, now() + Duration::hours(1)),
            Err(JwtError::Expired)
        ));

        assert!(!verifying.can_sign());
        assert!(signing.can_sign());
        assert_eq!(verifying.signing_kid(), "");
        assert!(matches!(
            verifying.issue_access(user, session, now()),
            Err(JwtError::VerifyOnly)
        ));
        assert!(matches!(verifying.self_test(), Err(JwtError::VerifyOnly)));
    }
}

#[test]
fn a_jwks_ring_verifies_every_published_key_during_a_rotation() {
    let old = key(JwtAlgorithm::EdDSA, "old");
    let before = KeyRing::from_config(&config(JwtAlgorithm::EdDSA, vec![old.clone()])).unwrap();
    let during = KeyRing::from_config(&config(
        JwtAlgorithm::EdDSA,
        vec![key(JwtAlgorithm::EdDSA, "new"), old],
    ))
    .unwrap();
    let verifying =
        KeyRing::from_jwks(&during.jwks(), &config(JwtAlgorithm::EdDSA, Vec::new())).unwrap();
    assert!(verifying.verify_access(&issue(&before), now()).is_ok());
    assert!(verifying.verify_access(&issue(&during), now()).is_ok());
    // A key it was not given is unknown.
    assert_eq!(
        refused(&verifying, &issue(&ring(JwtAlgorithm::EdDSA))),
        InvalidTokenReason::UnknownKey
    );
}

#[test]
fn a_jwks_ring_checks_its_own_issuer_and_audience() {
    let signing = ring(JwtAlgorithm::EdDSA);
    let token = issue(&signing);
    let other_issuer = JwtConfig {
        issuer: "https://other.test".into(),
        ..config(JwtAlgorithm::EdDSA, Vec::new())
    };
    let verifying = KeyRing::from_jwks(&signing.jwks(), &other_issuer).unwrap();
    assert_eq!(refused(&verifying, &token), InvalidTokenReason::Issuer);
    let other_audience = JwtConfig {
        audience: "other-api".into(),
        ..config(JwtAlgorithm::EdDSA, Vec::new())
    };
    let verifying = KeyRing::from_jwks(&signing.jwks(), &other_audience).unwrap();
    assert_eq!(refused(&verifying, &token), InvalidTokenReason::Audience);
}

#[test]
fn a_jwks_with_private_members_is_refused() {
    // The private Ed25519 key written as a JWK (RFC 8037): `d` next to `x`.
    let signing = ring(JwtAlgorithm::EdDSA);
    let mut jwks = signing.jwks();
    jwks["keys"][0]["d"] = json!(URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let error = jwks_error(&jwks, JwtAlgorithm::EdDSA);
    assert!(
        matches!(&error, JwtError::InvalidKey { reason, .. } if reason.contains("private")),
        "{error}"
    );

    let mut jwks = ring(JwtAlgorithm::ES256).jwks();
    jwks["keys"][0]["d"] = json!(URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    assert!(matches!(
        jwks_error(&jwks, JwtAlgorithm::ES256),
        JwtError::InvalidKey { .. }
    ));

    // Even when the private key is one that would be skipped (a symmetric or encryption key).
    let mut jwks = signing.jwks();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "hs", "k": hs256_secret(), "use": "enc"}));
    assert!(matches!(
        jwks_error(&jwks, JwtAlgorithm::EdDSA),
        JwtError::InvalidKey { .. }
    ));
}

#[test]
fn malformed_or_mismatched_jwks_are_refused() {
    let ed = ring(JwtAlgorithm::EdDSA).jwks();
    let es = ring(JwtAlgorithm::ES256).jwks();

    // HS256 keys are never published.
    assert!(matches!(
        jwks_error(&ed, JwtAlgorithm::HS256),
        JwtError::InvalidConfig(_)
    ));
    // Not a JWKS at all.
    for not_a_set in [
        json!([]),
        json!({}),
        json!({"keys": {}}),
        json!({"keys": [1]}),
    ] {
        assert!(
            matches!(
                jwks_error(&not_a_set, JwtAlgorithm::EdDSA),
                JwtError::InvalidConfig(_)
            ),
            "{not_a_set}"
        );
    }
    assert!(matches!(
        jwks_error(&json!({"keys": []}), JwtAlgorithm::EdDSA),
        JwtError::NoKeys
    ));
    // Keys of the other algorithm, by `alg` or (without `alg`) by `kty`.
    assert!(matches!(
        jwks_error(&es, JwtAlgorithm::EdDSA),
        JwtError::InvalidKey { .. }
    ));
    let mut without_alg = es.clone();
    without_alg["keys"][0]
        .as_object_mut()
        .unwrap()
        .remove("alg");
    assert!(matches!(
        jwks_error(&without_alg, JwtAlgorithm::EdDSA),
        JwtError::InvalidKey { .. }
    ));
    // A key without a usable `kid`.
    let mut no_kid = ed.clone();
    no_kid["keys"][0].as_object_mut().unwrap().remove("kid");
    assert!(matches!(
        jwks_error(&no_kid, JwtAlgorithm::EdDSA),
        JwtError::InvalidKey { .. }
    ));
    // Duplicate `kid`s.
    let mut duplicate = ed.clone();
    let first = duplicate["keys"][0].clone();
    duplicate["keys"].as_array_mut().unwrap().push(first);
    assert!(matches!(
        jwks_error(&duplicate, JwtAlgorithm::EdDSA),
        JwtError::InvalidKey { .. }
    ));
    // Coordinates that are not 32 bytes, or not a point.
    for x in [json!("AAAA"), json!(42), json!("!!not-base64!!")] {
        let mut bad = ed.clone();
        bad["keys"][0]["x"] = x.clone();
        assert!(
            matches!(
                jwks_error(&bad, JwtAlgorithm::EdDSA),
                JwtError::InvalidKey { .. }
            ),
            "{x}"
        );
    }
    let mut off_curve = es.clone();
    off_curve["keys"][0]["y"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    assert!(matches!(
        jwks_error(&off_curve, JwtAlgorithm::ES256),
        JwtError::InvalidKey { .. }
    ));
    // The identity point is small-order: anything "verifies" against it in some libraries.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut weak = ed.clone();
    weak["keys"][0]["x"] = json!(URL_SAFE_NO_PAD.encode(identity));
    assert!(matches!(
        jwks_error(&weak, JwtAlgorithm::EdDSA),
        JwtError::InvalidKey { .. }
    ));
}

#[test]
fn jwks_keys_not_for_signatures_are_skipped() {
    let signing = ring(JwtAlgorithm::EdDSA);
    let mut jwks = signing.jwks();
    let mut encryption = ring(JwtAlgorithm::EdDSA).jwks()["keys"][0].clone();
    encryption["use"] = json!("enc");
    encryption["kid"] = json!("enc-1");
    jwks["keys"].as_array_mut().unwrap().push(encryption);
    let verifying = KeyRing::from_jwks(&jwks, &config(JwtAlgorithm::EdDSA, Vec::new())).unwrap();
    assert_eq!(verifying.kids(), ["k1"]);
    assert!(verifying.verify_access(&issue(&signing), now()).is_ok());
}
