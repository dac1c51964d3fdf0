//! The session registry's errors. HTTP-free: the edge maps them to statuses.

/// The error type of every fallible operation of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store cannot answer now: Redis is down, hung, out of pool connections or timed out.
    /// Authentication must fail closed on it (the edge answers 503, never 401 and never allow).
    #[error("the session store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The store holds data this crate cannot decode.
    #[error("the session store holds undecodable data: {0}")]
    Corrupt(String),
    /// `create` was given a session id or a refresh token hash that the store already holds.
    #[error("conflict in the session store: {0}")]
    Conflict(String),
    /// A caller passed an argument that can never work (such as a rotation to the same hash).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A store could not be set up from its configuration (such as an unparsable Redis URL).
    #[error("invalid session store configuration: {0}")]
    Config(String),
}

impl SessionError {
    /// Whether this is [`SessionError::Unavailable`]: the request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
