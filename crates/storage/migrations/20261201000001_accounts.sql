-- Keel's system of record: accounts, one-time tokens and the audit log.
--
-- This folder is the one migration set of the whole database (embedded in keel-storage and run
-- at start-up under an advisory lock). Migrations are forward-only and expand/contract: a
-- release only adds what the previous release can ignore, so the previous release still runs on
-- a migrated database and a rollback is a deploy. Never edit a migration that has landed: add
-- a new one.

-- A time-ordered UUID (version 7: 48 bits of Unix milliseconds, then random bits), for rows
-- that the database itself creates. PostgreSQL 15 has no built-in one.
CREATE FUNCTION keel_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(
            set_bit(
                overlay(
                    uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6
                ),
                52, 1
            ),
            53, 1
        ),
        'hex'
    )::uuid
$$;

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    -- As the user typed it (trimmed, NFC), for display.
    email             text NOT NULL,
    -- NFC, then lowercased: what addresses are matched by. One account per canonical address.
    email_canonical   text NOT NULL,
    display_name      text NOT NULL,
    -- A PHC string ($argon2id$...).
    password_hash     text NOT NULL,
    email_verified_at timestamptz,
    roles             text[] NOT NULL DEFAULT '{}',
    disabled_at       timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    CONSTRAINT users_email_canonical_key UNIQUE (email_canonical),
    CONSTRAINT users_email_not_blank CHECK (email_canonical <> ''),
    CONSTRAINT users_roles_no_nulls CHECK (array_position(roles, NULL) IS NULL)
);

-- Single-use tokens mailed to users (e-mail verification, password reset, e-mail change).
-- Only the SHA-256 of a token is kept; a token is bound to its purpose and its user.
CREATE TABLE one_time_tokens (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    purpose    text NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- What the token carries beyond its purpose (the new address of an e-mail change).
    data       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    CONSTRAINT one_time_tokens_expire_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX one_time_tokens_user_purpose ON one_time_tokens (user_id, purpose);
CREATE INDEX one_time_tokens_expires_at ON one_time_tokens (expires_at);

-- The audit log: append-only. No foreign key to users: a deleted account's events stay,
-- scrubbed to their ids, types and times.
CREATE TABLE audit_events (
    id         uuid PRIMARY KEY,
    type       text NOT NULL,
    user_id    uuid,
    actor_id   uuid,
    ip         inet,
    user_agent text,
    at         timestamptz NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events (at DESC, id DESC);
CREATE INDEX audit_events_user_at ON audit_events (user_id, at DESC, id DESC);
CREATE INDEX audit_events_type_at ON audit_events (type, at DESC, id DESC);

-- Refuses every UPDATE, DELETE and TRUNCATE of audit_events, except inside audit_purge and
-- audit_scrub below, which say so with a transaction-local setting. This guards against the
-- application and against a stray statement; a role that owns the table can still drop the
-- trigger, so give the application a role that does not own the schema for a guarantee
-- against its own credentials (docs/operations.md).
CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('keel.audit_maintenance', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'audit_events is append-only: % is refused (audit_purge and audit_scrub are the only exceptions)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Retention: removes the events older than `before` and records that it did, with how many.
CREATE FUNCTION audit_purge(before timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    purged bigint;
BEGIN
    PERFORM set_config('keel.audit_maintenance', 'on', true);
    DELETE FROM audit_events WHERE at < before;
    GET DIAGNOSTICS purged = ROW_COUNT;
    PERFORM set_config('keel.audit_maintenance', 'off', true);
    INSERT INTO audit_events (id, type, at, data)
    VALUES (keel_uuid_v7(), 'audit.purged', clock_timestamp(),
            jsonb_build_object('before', before, 'events', purged));
    RETURN purged;
END
$$;

-- Erasure: a deleted account's events keep their id, type and time only (and the ids of who
-- they were about and who acted); the scrub itself is recorded, with how many events it
-- touched. Events where the account was only the actor lose the actor's address and agent.
CREATE FUNCTION audit_scrub(scrubbed uuid) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    touched bigint;
    acted bigint;
BEGIN
    PERFORM set_config('keel.audit_maintenance', 'on', true);
    UPDATE audit_events
       SET ip = NULL, user_agent = NULL, data = '{}'
     WHERE user_id = scrubbed;
    GET DIAGNOSTICS touched = ROW_COUNT;
    UPDATE audit_events
       SET ip = NULL, user_agent = NULL
     WHERE actor_id = scrubbed AND user_id IS DISTINCT FROM scrubbed;
    GET DIAGNOSTICS acted = ROW_COUNT;
    PERFORM set_config('keel.audit_maintenance', 'off', true);
    INSERT INTO audit_events (id, type, user_id, at, data)
    VALUES (keel_uuid_v7(), 'audit.scrubbed', scrubbed, clock_timestamp(),
            jsonb_build_object('events', touched + acted));
    RETURN touched + acted;
END
$$;
