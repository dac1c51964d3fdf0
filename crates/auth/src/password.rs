//! Password hashing: argon2id at the OWASP parameters, run on tokio's blocking pool with bounded
//! concurrency.
//!
//! Each argon2id computation takes 19 MiB of memory and tens of milliseconds of CPU. Running it on
//! an async worker would stall every other request on that worker, and running an unbounded
//! number at once would let a login flood exhaust memory. So every computation first takes a
//! permit from a semaphore (at most `max_concurrent` run at once, so memory stays below
//! `max_concurrent × 19 MiB`), waits at most `queue_timeout` for it, and otherwise fails with
//! [`PasswordError::Busy`], which the HTTP edge answers with 503.
//!
//! The 19 MiB of each computation are not allocated per call: every permit comes with a block
//! buffer from a pool of at most `max_concurrent` buffers, allocated on first use and reused for
//! the life of the hasher. Allocating and freeing 19 MiB per login left glibc's arenas holding
//! hundreds of MiB of fragmented free memory under a login flood, although only
//! `max_concurrent` computations ever ran at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

/// The default memory cost in KiB (OWASP password storage cheat sheet, argon2id first choice).
pub const M_COST_KIB: u32 = 19_456;
/// The default number of passes.
pub const T_COST: u32 = 2;
/// The default degree of parallelism.
pub const P_COST: u32 = 1;

const ALGORITHM: Algorithm = Algorithm::Argon2id;
const VERSION: Version = Version::V0x13;
const SALT_LEN: usize = 16;
/// The default parameters of new hashes (checked at compile time).
const PARAMS: Params = match Params::new(M_COST_KIB, T_COST, P_COST, None) {
    Ok(params) => params,
    Err(_) => panic!("invalid argon2 parameters"),
};

/// Stored hashes are read back with their own parameters, so a hash that asks for absurd memory
/// or time (a corrupted row, a hostile import) could still exhaust the machine. These bounds are
/// far above any sensible parameter set and keep one verification within a known budget.
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;

/// What can go wrong while hashing or verifying a password. Nothing here carries the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Every hashing slot stayed taken for longer than the queue timeout. Transient: the edge
    /// answers 503 and the client may retry.
    #[error("password hashing is saturated; try again later")]
    Busy,
    /// The stored string is not a PHC string that argon2 can verify (syntax, missing salt or
    /// hash, not an argon2 algorithm).
    #[error("the stored password hash is malformed")]
    MalformedHash,
    /// The stored hash is well-formed but asks for more memory or time than Keel allows.
    #[error("the stored password hash has parameters outside the allowed bounds")]
    UnsupportedParams,
    /// The hashing task failed (a panic on the blocking pool, a runtime shutting down).
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// A [`PasswordHashingConfig`] whose argon2 parameters cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidHashingParams {
    /// The offending field (`memory_kib`, `iterations` or `parallelism`).
    pub field: &'static str,
    /// Why, with the bounds.
    pub reason: String,
}

/// Configuration of the [`PasswordHasher`]. Every field has a default, so `{}` is valid.
///
/// ```toml
/// max_concurrent = 4        # default: the number of CPUs
/// queue_timeout_ms = 5000   # default: 5000 (5 s)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordHashingConfig {
    /// How many argon2 computations may run at once. Memory use is bounded by
    /// `max_concurrent × 19 MiB`. 0 is treated as 1.
    pub max_concurrent: usize,
    /// How long a request waits for a free slot before failing with [`PasswordError::Busy`].
    /// Written as integer milliseconds, `queue_timeout_ms`.
    #[serde(rename = "queue_timeout_ms", with = "duration_ms")]
    pub queue_timeout: Duration,
    /// argon2id memory cost of new hashes, in KiB (19456, OWASP's first choice).
    pub memory_kib: u32,
    /// argon2id passes of new hashes (2).
    pub iterations: u32,
    /// argon2id lanes of new hashes (1).
    pub parallelism: u32,
}

impl Default for PasswordHashingConfig {
    fn default() -> Self {
        Self {
            max_concurrent: std::thread::available_parallelism().map_or(1, usize::from),
            queue_timeout: Duration::from_secs(5),
            memory_kib: M_COST_KIB,
            iterations: T_COST,
            parallelism: P_COST,
        }
    }
}

impl PasswordHashingConfig {
    /// The argon2 parameters of new hashes, when they are within the bounds that verification
    /// also enforces (a hash Keel makes, Keel must be able to check).
    ///
    /// # Errors
    /// A parameter out of its bounds, named.
    pub fn params(&self) -> Result<Params, InvalidHashingParams> {
        let bad = |field, reason: String| Err(InvalidHashingParams { field, reason });
        if !(1..=MAX_P_COST).contains(&self.parallelism) {
            return bad("parallelism", format!("must be 1..={MAX_P_COST}"));
        }
        let least = 8 * self.parallelism;
        if !(least..=MAX_M_COST_KIB).contains(&self.memory_kib) {
            return bad(
                "memory_kib",
                format!("must be {least}..={MAX_M_COST_KIB} (at least 8 per lane)"),
            );
        }
        if !(1..=MAX_T_COST).contains(&self.iterations) {
            return bad("iterations", format!("must be 1..={MAX_T_COST}"));
        }
        Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|error| {
            InvalidHashingParams {
                field: "memory_kib",
                reason: error.to_string(),
            }
        })
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Hashes and verifies passwords with argon2id, at most `max_concurrent` at a time.
///
/// Cheap to clone: clones share the same slots and the same dummy hash.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    /// The block buffers of the free slots. A slot takes one with its permit and puts it back
    /// before releasing the permit, so at most `max_concurrent` buffers ever exist.
    buffers: Mutex<Vec<Vec<Block>>>,
    /// How many buffers were allocated over the hasher's life: at most `max_concurrent`.
    buffers_allocated: AtomicUsize,
    max_concurrent: usize,
    queue_timeout: Duration,
    /// The parameters of new hashes; each pooled buffer is sized for them.
    params: Params,
    dummy_hash: OnceCell<String>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("max_concurrent", &self.inner.max_concurrent)
            .field("available", &self.inner.permits.available_permits())
            .field(
                "buffers_allocated",
                &self.inner.buffers_allocated.load(Ordering::Relaxed),
            )
            .field("queue_timeout", &self.inner.queue_timeout)
            .field("m_cost", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .finish()
    }
}

impl PasswordHasher {
    /// A hasher with the given limits and parameters. Parameters that
    /// [`PasswordHashingConfig::params`] refuses (configuration loading checks them first) fall
    /// back to the defaults, with an error logged.
    pub fn new(config: &PasswordHashingConfig) -> Self {
        // Zero permits would refuse every login forever; clamp rather than fail start-up.
        let max_concurrent = config.max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        let params = config.params().unwrap_or_else(|error| {
            tracing::error!(%error, "invalid argon2 parameters; using the defaults");
            PARAMS
        });
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(max_concurrent)),
                buffers: Mutex::new(Vec::with_capacity(max_concurrent)),
                buffers_allocated: AtomicUsize::new(0),
                max_concurrent,
                queue_timeout: config.queue_timeout,
                params,
                dummy_hash: OnceCell::new(),
            }),
        }
    }

    /// Hashes `password` with a fresh random salt and returns the PHC string
    /// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = SecretString::from(password);
        let params = self.inner.params.clone();
        self.run(move |blocks| hash_blocking(password.expose_secret().as_bytes(), &params, blocks))
            .await
    }

    /// Whether a stored hash is weaker than new hashes are (another algorithm or version, or
    /// a lower memory, time or lane parameter): after a successful login, the caller replaces
    /// it with a hash of the same password at today's parameters, so raising them in the
    /// configuration upgrades every account that logs in. Lowering them downgrades nothing.
    /// A hash that cannot be read needs no rehash here (it never verifies).
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let Ok(params) = Params::try_from(&hash) else {
            return false;
        };
        let ours = &self.inner.params;
        Algorithm::try_from(hash.algorithm) != Ok(ALGORITHM)
            || hash.version != Some(VERSION.into())
            || params.m_cost() < ours.m_cost()
            || params.t_cost() < ours.t_cost()
            || params.p_cost() < ours.p_cost()
    }

    /// Checks `password` against a stored PHC string. `Ok(false)` means a wrong password; an
    /// error means the hash could not be checked at all. The parameters are read from the hash,
    /// so hashes made with older parameters keep verifying.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, PasswordError> {
        // Checked before taking a slot: a broken row should not cost a hashing slot.
        check_phc(phc)?;
        let password = SecretString::from(password);
        let phc = phc.to_owned();
        self.run(move |blocks| verify_blocking(password.expose_secret().as_bytes(), &phc, blocks))
            .await
    }

    /// Does the work of a [`verify`](Self::verify) against a dummy hash and returns `Ok(false)`.
    /// Call it when the account does not exist, so that an unknown email costs the same time as
    /// a known one with a wrong password. The dummy hash is made once, on first use, with the
    /// same parameters as real hashes.
    pub async fn verify_dummy(&self, password: &str) -> Result<bool, PasswordError> {
        let dummy = self
            .inner
            .dummy_hash
            .get_or_try_init(|| async {
                let mut random = [0u8; 32];
                rand::rng().fill_bytes(&mut random);
                let dummy_password = SecretString::from(base64_url(&random));
                self.hash(dummy_password.expose_secret()).await
            })
            .await?;
        // The result is discarded: the dummy password is random and never known, and the caller
        // must not log anyone in on an account that does not exist.
        self.verify(password, dummy).await?;
        Ok(false)
    }

    /// Runs `job` on the blocking pool with a slot's block buffer once a slot is free, or fails
    /// with `Busy`.
    async fn run<T, F>(&self, job: F) -> Result<T, PasswordError>
    where
        T: Send + 'static,
        F: FnOnce(&mut [Block]) -> Result<T, PasswordError> + Send + 'static,
    {
        let acquire = Arc::clone(&self.inner.permits).acquire_owned();
        let permit = match tokio::time::timeout(self.inner.queue_timeout, acquire).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(PasswordError::Internal("semaphore closed".into())),
            Err(_elapsed) => return Err(PasswordError::Busy),
        };
        let mut slot = Slot::take(Arc::clone(&self.inner), permit);
        // The slot moves into the blocking task: if the caller's future is dropped (client
        // gone, request timeout), the computation still runs to its end, and the slot must stay
        // taken until then or the memory bound would not hold.
        tokio::task::spawn_blocking(move || job(slot.blocks()))
            .await
            .map_err(|join| PasswordError::Internal(join.to_string()))?
    }
}

/// A hashing slot: a semaphore permit and the block buffer that goes with it.
struct Slot {
    inner: Arc<Inner>,
    /// Empty until the first computation that needs it allocates it (on the blocking pool).
    buffer: Vec<Block>,
    /// Declared last: fields drop after `Drop::drop` has put the buffer back, so the permit is
    /// released only once the buffer is in the pool again, and the next slot finds it there.
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn take(inner: Arc<Inner>, permit: OwnedSemaphorePermit) -> Self {
        let buffer = inner
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        Self {
            inner,
            buffer,
            _permit: permit,
        }
    }

    fn blocks(&mut self) -> &mut [Block] {
        if self.buffer.is_empty() {
            self.buffer = vec![Block::default(); self.inner.params.block_count()];
            self.inner.buffers_allocated.fetch_add(1, Ordering::Relaxed);
        }
        &mut self.buffer
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        if !buffer.is_empty() {
            // A buffer left mid-computation by a panic is fine to reuse: every computation
            // writes each block before reading it.
            self.inner
                .buffers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(buffer);
        }
    }
}

fn hash_blocking(
    password: &[u8],
    params: &Params,
    blocks: &mut [Block],
) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    hash_with_salt(password, &salt, params, blocks)
}

/// The PHC string of `password` at `params`, exactly as `argon2::PasswordHasher` formats it.
fn hash_with_salt(
    password: &[u8],
    salt: &[u8],
    params: &Params,
    blocks: &mut [Block],
) -> Result<String, PasswordError> {
    let internal = |e: password_hash::Error| PasswordError::Internal(e.to_string());
    let salt_string = SaltString::encode_b64(salt).map_err(internal)?;
    let argon2 = Argon2::new(ALGORITHM, VERSION, params.clone());
    let output =
        compute(&argon2, password, salt, Params::DEFAULT_OUTPUT_LEN, blocks).map_err(internal)?;
    let phc = PasswordHash {
        algorithm: ALGORITHM.ident(),
        version: Some(VERSION.into()),
        params: ParamsString::try_from(params).map_err(internal)?,
        salt: Some(salt_string.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Checks `password` against `phc` with the algorithm, version, parameters, salt and output
/// length stored in it, like `argon2::PasswordVerifier` does, but in `pooled` memory.
fn verify_blocking(
    password: &[u8],
    phc: &str,
    pooled: &mut [Block],
) -> Result<bool, PasswordError> {
    let hash = PasswordHash::new(phc).map_err(malformed)?;
    let algorithm = Algorithm::try_from(hash.algorithm).map_err(malformed)?;
    let version = hash
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(malformed)?
        .unwrap_or_default();
    let params = Params::try_from(&hash).map_err(malformed)?;
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return Err(PasswordError::MalformedHash);
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(malformed)?;
    let block_count = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = if block_count <= pooled.len() {
        compute(&argon2, password, salt, expected.len(), pooled)
    } else {
        // Only hashes made with more memory than today's parameters get here, and `check_phc`
        // has bounded that memory. Rare enough that a one-off allocation is fine.
        tracing::debug!(
            m_cost = argon2.params().m_cost(),
            t_cost = argon2.params().t_cost(),
            p_cost = argon2.params().p_cost(),
            "verifying an old-parameter password hash that needs more memory than the pooled \
             buffers; allocating for this call",
        );
        let mut blocks = vec![Block::default(); block_count];
        compute(&argon2, password, salt, expected.len(), &mut blocks)
    }
    .map_err(malformed)?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    output_len: usize,
    blocks: &mut [Block],
) -> password_hash::Result<Output> {
    Output::init_with(output_len, |out| {
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut *blocks)
            .map_err(password_hash::Error::from)
    })
}

fn malformed<E>(_: E) -> PasswordError {
    PasswordError::MalformedHash
}

/// Rejects, without hashing, what `verify_password` would either reject or silently treat as a
/// wrong password (a PHC string without salt or hash), and parameters beyond the budget.
fn check_phc(phc: &str) -> Result<(), PasswordError> {
    let hash = PasswordHash::new(phc).map_err(|_| PasswordError::MalformedHash)?;
    Algorithm::try_from(hash.algorithm).map_err(|_| PasswordError::MalformedHash)?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(PasswordError::MalformedHash);
    }
    let params = Params::try_from(&hash).map_err(|_| PasswordError::MalformedHash)?;
    if params.m_cost() > MAX_M_COST_KIB
        || params.t_cost() > MAX_T_COST
        || params.p_cost() > MAX_P_COST
    {
        return Err(PasswordError::UnsupportedParams);
    }
    Ok(())
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
