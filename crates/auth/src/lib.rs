//! Keel's authentication building blocks.
//!
//! - [`password`]: argon2id password hashing on tokio's blocking pool, with bounded concurrency
//!   so a flood of logins queues or is refused ([`PasswordError::Busy`]) instead of exhausting
//!   memory, and a dummy verification so unknown accounts cost the same time as known ones.
//! - [`jwt`]: access tokens (RFC 9068 `at+jwt`) signed by a [`KeyRing`] (EdDSA by default, ES256
//!   or HS256), the JWKS that publishes the public keys, and a bounded cache of verified tokens.
//!
//! This crate builds without actix-web; its `actix` feature adds the framework glue. Errors are
//! HTTP-free: the status mapping happens once, at the edge, in keel-http-adapter.

pub mod accounts;
pub mod jwt;
pub mod password;

pub use accounts::{AccountError, Accounts, Registration};
pub use jwt::{
    AccessClaims, InvalidTokenReason, IssuedToken, JwtAlgorithm, JwtConfig, JwtError, KeyConfig,
    KeyRing, VerifiedTokenCache,
};
pub use password::{PasswordError, PasswordHasher, PasswordHashingConfig};
