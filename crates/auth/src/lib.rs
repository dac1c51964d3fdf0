#![doc = include_str!("../README.md")]

pub mod accounts;
#[cfg(feature = "actix")]
pub mod actix;
pub mod admin;
pub mod jwt;
pub mod lifecycle;
pub mod password;
pub mod refresh;
pub mod service;
#[cfg(test)]
mod test_support;
pub mod verifier;

pub use accounts::{AccountError, Accounts, Registration};
pub use admin::{Action, Actor, Admin, AdminPolicy, AdminUserView, authorize};
pub use jwt::{
    AccessClaims, InvalidTokenReason, IssuedToken, JwtAlgorithm, JwtConfig, JwtError, KeyConfig,
    KeyRing, VerifiedTokenCache,
};
pub use lifecycle::{Export, Lifecycle, LifecyclePorts};
pub use password::{PasswordError, PasswordHasher, PasswordHashingConfig};
pub use refresh::RefreshSecret;
pub use service::{
    Auth, AuthError, ClientInfo, Principal, RevocationListener, SignedIn, TOKEN_TYPE, Tokens,
};
pub use verifier::Verifier;
