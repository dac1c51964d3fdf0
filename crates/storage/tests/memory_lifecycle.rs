//! The lifecycle-store conformance suite against `MemoryLifecycleStore`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lifecycle;

use std::sync::Arc;

use keel_storage::{InMemoryUserRepository, MemoryLifecycleStore};
use lifecycle::Harness;

async fn memory() -> Harness {
    let store = Arc::new(MemoryLifecycleStore::new());
    Harness {
        other: store.clone(),
        store,
        users: Arc::new(InMemoryUserRepository::new()),
        guard: Box::new(()),
    }
}

lifecycle_suite!(memory);
