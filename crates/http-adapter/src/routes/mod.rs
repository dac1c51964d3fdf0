//! Route handlers, one module per area of the API.

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod auth;
