//! Adapters that implement keel-domain's ports on real stores.
//!
//! Today that is an in-memory [`InMemoryUserRepository`], the embedded default that lets Keel
//! start with no setup (and the store every other crate's tests use). A PostgreSQL adapter will
//! sit beside it later, behind the same [`keel_domain::UserRepository`] trait.

mod memory;

pub use memory::InMemoryUserRepository;
