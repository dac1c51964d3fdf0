//! End-to-end tests of the Keel server live in this package's `tests/` folder.
