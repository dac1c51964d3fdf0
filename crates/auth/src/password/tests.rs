//! Unit tests of `password`.

use std::time::Instant;

use argon2::{PasswordHasher as _, PasswordVerifier as _};

use super::*;

fn hasher(max_concurrent: usize, queue_timeout: Duration) -> PasswordHasher {
    PasswordHasher::new(&PasswordHashingConfig {
        max_concurrent,
        queue_timeout,
        ..PasswordHashingConfig::default()
    })
}

/// The pooled buffer size at the default parameters.
const POOL_BLOCKS: usize = PARAMS.block_count();

#[tokio::test]
async fn a_hash_verifies_its_password_and_nothing_else() {
    let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
    let phc = hasher.hash("correct horse battery staple").await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(
        hasher
            .verify("correct horse battery staple", &phc)
            .await
            .unwrap()
    );
    assert!(
        !hasher
            .verify("correct horse battery stapler", &phc)
            .await
            .unwrap()
    );
    assert!(!hasher.verify("", &phc).await.unwrap());
}

#[tokio::test]
async fn the_same_password_gets_a_different_salt_each_time() {
    let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
    let a = hasher.hash("hunter22").await.unwrap();
    let b = hasher.hash("hunter22").await.unwrap();
    assert_ne!(a, b);
}

#[tokio::test]
async fn malformed_hashes_are_errors_not_wrong_passwords() {
    let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
    for phc in [
        "",
        "not a hash",
        "$argon2id$v=19$m=19456,t=2,p=1",
        "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
    ] {
        let result = hasher.verify("password", phc).await;
        assert!(
            matches!(result, Err(PasswordError::MalformedHash)),
            "{phc}: {result:?}"
        );
    }
}

#[tokio::test]
async fn hashes_with_other_parameters_still_verify() {
    // Made with different (cheaper) parameters, as an older Keel or another service might.
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let params = Params::new(8 * 1024, 1, 1, None).unwrap();
    let old = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(b"legacy password", &salt)
        .unwrap()
        .to_string();
    assert!(old.contains("m=8192,t=1,p=1"));
    let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
    assert!(hasher.verify("legacy password", &old).await.unwrap());
    assert!(!hasher.verify("other password", &old).await.unwrap());
    assert!(
        hasher.needs_rehash(&old),
        "older parameters are upgraded on login"
    );
}

#[tokio::test]
async fn raised_parameters_make_new_hashes_and_mark_old_ones_for_a_rehash() {
    let cheap = PasswordHasher::new(&PasswordHashingConfig {
        memory_kib: 8 * 1024,
        iterations: 1,
        ..PasswordHashingConfig::default()
    });
    let old = cheap.hash("correct horse battery").await.unwrap();
    assert!(old.contains("m=8192,t=1,p=1"), "{old}");
    assert!(!cheap.needs_rehash(&old));

    let raised = PasswordHasher::new(&PasswordHashingConfig::default());
    assert!(raised.needs_rehash(&old));
    let new = raised.hash("correct horse battery").await.unwrap();
    assert!(new.contains("m=19456,t=2,p=1"), "{new}");
    assert!(!raised.needs_rehash(&new));
    assert!(raised.verify("correct horse battery", &new).await.unwrap());
    // Lowering the parameters again downgrades nothing.
    assert!(!cheap.needs_rehash(&new));
    // Unreadable strings are not rehashed (they never verify).
    assert!(!raised.needs_rehash("not a hash"));
}

#[test]
fn parameters_out_of_bounds_are_named() {
    let config = |memory_kib, iterations, parallelism| PasswordHashingConfig {
        memory_kib,
        iterations,
        parallelism,
        ..PasswordHashingConfig::default()
    };
    assert!(PasswordHashingConfig::default().params().is_ok());
    for (bad, field) in [
        (config(4, 2, 1), "memory_kib"),
        (config(MAX_M_COST_KIB + 1, 2, 1), "memory_kib"),
        (config(19_456, 0, 1), "iterations"),
        (config(19_456, MAX_T_COST + 1, 1), "iterations"),
        (config(19_456, 2, 0), "parallelism"),
        (config(19_456, 2, MAX_P_COST + 1), "parallelism"),
    ] {
        assert_eq!(bad.params().unwrap_err().field, field, "{bad:?}");
    }
}

#[tokio::test]
async fn hashes_demanding_too_much_memory_are_refused_without_hashing() {
    let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
    let phc = "$argon2id$v=19$m=4194304,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$\
               q0Xk4Bq2X1pQ2y8z7u1zB9bE6p0cYk8m5d8bX9pQeZ8";
    let result = hasher.verify("password", phc).await;
    assert!(
        matches!(result, Err(PasswordError::UnsupportedParams)),
        "{result:?}"
    );
}

#[tokio::test]
async fn saturated_hasher_answers_busy_after_the_queue_timeout() {
    let hasher = hasher(1, Duration::from_millis(20));
    let held = Arc::clone(&hasher.inner.permits)
        .acquire_owned()
        .await
        .unwrap();

    let started = Instant::now();
    let result = hasher.hash("password").await;
    assert!(matches!(result, Err(PasswordError::Busy)), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(20));
    let result = hasher.verify_dummy("password").await;
    assert!(matches!(result, Err(PasswordError::Busy)), "{result:?}");

    drop(held);
    assert!(hasher.hash("password").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_within_the_timeout_queue_instead_of_failing() {
    let hasher = hasher(1, Duration::from_secs(30));
    let jobs: Vec<_> = (0..3)
        .map(|i| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&format!("password {i}")).await })
        })
        .collect();
    for job in jobs {
        assert!(job.await.unwrap().is_ok());
    }
    assert_eq!(hasher.inner.permits.available_permits(), 1);
}

#[tokio::test]
async fn a_dropped_request_keeps_its_slot_until_the_hash_finishes() {
    let hasher = hasher(1, Duration::from_secs(30));
    let request = tokio::spawn({
        let hasher = hasher.clone();
        async move { hasher.hash("password").await }
    });
    // Let the request take the slot and start hashing, then abandon it.
    while hasher.inner.permits.available_permits() == 1 {
        tokio::task::yield_now().await;
    }
    request.abort();
    let _ = request.await;
    assert_eq!(hasher.inner.permits.available_permits(), 0);
    // The slot comes back once the blocking computation is over.
    let _permit = tokio::time::timeout(
        Duration::from_secs(30),
        Arc::clone(&hasher.inner.permits).acquire_owned(),
    )
    .await
    .unwrap()
    .unwrap();
}

fn pooled_buffers(hasher: &PasswordHasher) -> (usize, usize) {
    let pooled = hasher.inner.buffers.lock().unwrap().len();
    let allocated = hasher.inner.buffers_allocated.load(Ordering::Relaxed);
    (pooled, allocated)
}

#[tokio::test]
async fn one_slot_reuses_one_buffer_for_every_hash_and_verify() {
    let hasher = hasher(1, Duration::from_secs(30));
    assert_eq!(pooled_buffers(&hasher), (0, 0), "allocated lazily");
    let phc = hasher.hash("password").await.unwrap();
    assert_eq!(pooled_buffers(&hasher), (1, 1));
    let buffer = hasher.inner.buffers.lock().unwrap()[0].as_ptr();
    for i in 0..4 {
        hasher.hash(&format!("password {i}")).await.unwrap();
        assert!(hasher.verify("password", &phc).await.unwrap());
        assert!(!hasher.verify_dummy("password").await.unwrap());
    }
    assert_eq!(pooled_buffers(&hasher), (1, 1));
    let pooled = &hasher.inner.buffers.lock().unwrap()[0];
    assert_eq!(pooled.as_ptr(), buffer, "the same allocation every time");
    assert_eq!(pooled.len(), POOL_BLOCKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hashes_never_allocate_more_than_max_concurrent_buffers() {
    let hasher = hasher(2, Duration::from_secs(60));
    let jobs: Vec<_> = (0..8)
        .map(|i| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&format!("password {i}")).await })
        })
        .collect();
    for job in jobs {
        assert!(job.await.unwrap().is_ok());
    }
    let (pooled, allocated) = pooled_buffers(&hasher);
    assert!((1..=2).contains(&allocated), "{allocated}");
    assert_eq!(pooled, allocated, "every buffer is back in the pool");
    assert_eq!(hasher.inner.permits.available_permits(), 2);
}

#[tokio::test]
async fn hashes_are_interchangeable_with_the_plain_argon2_api() {
    let plain = Argon2::new(ALGORITHM, VERSION, PARAMS);
    let hasher = PasswordHasher::new(&PasswordHashingConfig::default());

    // Same salt, same string, byte for byte.
    let raw_salt = *b"0123456789abcdef";
    let salt = SaltString::encode_b64(&raw_salt).unwrap();
    let expected = plain.hash_password(b"pa55word", &salt).unwrap().to_string();
    let mut blocks = vec![Block::default(); POOL_BLOCKS];
    assert_eq!(
        hash_with_salt(b"pa55word", &raw_salt, &PARAMS, &mut blocks).unwrap(),
        expected
    );

    // Plain API -> this hasher.
    assert!(hasher.verify("pa55word", &expected).await.unwrap());
    assert!(!hasher.verify("pa55wort", &expected).await.unwrap());

    // This hasher -> plain API.
    let ours = hasher.hash("pa55word").await.unwrap();
    let parsed = PasswordHash::new(&ours).unwrap();
    assert!(plain.verify_password(b"pa55word", &parsed).is_ok());
    assert!(plain.verify_password(b"pa55wort", &parsed).is_err());

    // Other algorithms, versions, output lengths, parameters: the stored ones are used.
    for (algorithm, version, output_len) in [
        (Algorithm::Argon2i, Version::V0x10, 32),
        (Algorithm::Argon2d, Version::V0x13, 16),
        (Algorithm::Argon2id, Version::V0x13, 64),
    ] {
        let params = Params::new(1024, 1, 2, Some(output_len)).unwrap();
        let phc = Argon2::new(algorithm, version, params)
            .hash_password(b"other", &salt)
            .unwrap()
            .to_string();
        assert!(hasher.verify("other", &phc).await.unwrap(), "{phc}");
        assert!(!hasher.verify("others", &phc).await.unwrap(), "{phc}");
    }
}

#[tokio::test]
async fn hashes_needing_more_memory_than_the_pool_still_verify() {
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let params = Params::new(M_COST_KIB * 2, 1, 1, None).unwrap();
    let old = Argon2::new(ALGORITHM, VERSION, params)
        .hash_password(b"big password", &salt)
        .unwrap()
        .to_string();
    let hasher = hasher(1, Duration::from_secs(30));
    assert!(hasher.verify("big password", &old).await.unwrap());
    assert!(!hasher.verify("small password", &old).await.unwrap());
    // The one-off allocation does not join the pool.
    let (pooled, allocated) = pooled_buffers(&hasher);
    assert_eq!((pooled, allocated), (1, 1));
    assert_eq!(hasher.inner.buffers.lock().unwrap()[0].len(), POOL_BLOCKS);
}

#[test]
fn zero_concurrency_is_clamped_to_one() {
    let hasher = hasher(0, Duration::from_secs(1));
    assert_eq!(hasher.inner.permits.available_permits(), 1);
}

#[tokio::test]
async fn dummy_verification_is_false_and_costs_about_as_much_as_a_real_one() {
    let hasher = PasswordHasher::new(&PasswordHashingConfig::default());
    let phc = hasher.hash("real password").await.unwrap();
    // The first call also computes the dummy hash; time the calls after it.
    assert!(!hasher.verify_dummy("real password").await.unwrap());
    let dummy = hasher.inner.dummy_hash.get().unwrap();
    assert_eq!(
        PasswordHash::new(dummy).unwrap().params,
        PasswordHash::new(&phc).unwrap().params,
    );

    // The equal parameters above are the real guarantee. The timing check is a coarse guard
    // against the dummy path skipping the work: other tests hash in parallel on few cores,
    // so take the least disturbed of several runs and allow a wide ratio.
    let mut real = Duration::MAX;
    let mut fake = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        assert!(!hasher.verify("wrong password", &phc).await.unwrap());
        real = real.min(t.elapsed());
        let t = Instant::now();
        assert!(!hasher.verify_dummy("wrong password").await.unwrap());
        fake = fake.min(t.elapsed());
    }
    let ratio = fake.as_secs_f64() / real.as_secs_f64();
    assert!(
        (0.25..4.0).contains(&ratio),
        "real {real:?}, dummy {fake:?}"
    );
}

#[test]
fn config_reads_integer_milliseconds_and_has_defaults() {
    let config: PasswordHashingConfig =
        serde_json::from_str(r#"{"max_concurrent": 3, "queue_timeout_ms": 250}"#).unwrap();
    assert_eq!(config.max_concurrent, 3);
    assert_eq!(config.queue_timeout, Duration::from_millis(250));
    let config: PasswordHashingConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, PasswordHashingConfig::default());
    assert_eq!(config.queue_timeout, Duration::from_secs(5));
    assert!(config.max_concurrent >= 1);
}
