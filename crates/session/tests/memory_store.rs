//! The conformance suite against `MemorySessionStore`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Arc;

use conformance::Harness;
use keel_session::{MemorySessionStore, SessionConfig};

async fn memory(config: SessionConfig) -> Harness {
    let store = Arc::new(MemorySessionStore::new(config.clone()));
    Harness::new(store, config, Box::new(()))
}

conformance_suite!(memory);
