-- The session registry on PostgreSQL (keel-session's PgSessionStore).
--
-- No foreign key to users: sessions may live in PostgreSQL while the store of users is another
-- one, and revoking an account's sessions goes through the one revocation path (which also
-- reaches tokens, cookies and sockets), never through a cascade that nobody is told about.
CREATE TABLE sessions (
    id                    uuid PRIMARY KEY,
    user_id               uuid NOT NULL,
    created_at            timestamptz NOT NULL,
    last_seen_at          timestamptz NOT NULL,
    -- The absolute end of the session.
    expires_at            timestamptz NOT NULL,
    -- The end of the session if it stays unused; never later than expires_at.
    idle_expires_at       timestamptz NOT NULL,
    user_agent            text,
    ip                    inet,
    -- The SHA-256 of the refresh token that rotates now, and the one it replaced.
    refresh_hash          bytea NOT NULL,
    refresh_generation    bigint NOT NULL DEFAULT 0,
    previous_refresh_hash bytea,
    previous_rotated_at   timestamptz,
    CONSTRAINT sessions_idle_within_absolute CHECK (idle_expires_at <= expires_at)
);
CREATE INDEX sessions_user ON sessions (user_id);
-- For the purge of ended sessions.
CREATE INDEX sessions_ends_at ON sessions (LEAST(expires_at, idle_expires_at));

-- Every refresh-token hash a session ever had, current and spent, so that a spent one presented
-- again is recognised (and revokes its session). Removed with the session.
CREATE TABLE session_refresh_tokens (
    hash       bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE
);
CREATE INDEX session_refresh_tokens_session ON session_refresh_tokens (session_id);
