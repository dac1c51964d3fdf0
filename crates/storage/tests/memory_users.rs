//! The user-store conformance suite against `InMemoryUserRepository`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Arc;

use conformance::Harness;
use keel_storage::InMemoryUserRepository;

async fn memory() -> Harness {
    Harness::single(Arc::new(InMemoryUserRepository::new()), Box::new(()))
}

user_repository_suite!(memory);
