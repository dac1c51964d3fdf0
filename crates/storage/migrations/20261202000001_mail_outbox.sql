-- The mail outbox: every mail Keel sends is queued here first, in the same transaction as the
-- one-time token it carries, and a background sender on every instance delivers it with
-- retries. An SMTP outage therefore never fails a request, and nothing queued is lost across a
-- restart. A delivered mail is deleted; one given up on (refused for good, or out of attempts)
-- stays, with `failed_at` and its last error, for the operator.
CREATE TABLE mail_outbox (
    id         uuid PRIMARY KEY,
    recipient  text NOT NULL,
    subject    text NOT NULL,
    text_body  text NOT NULL,
    html_body  text NOT NULL,
    created_at timestamptz NOT NULL,
    -- When it may next be sent: its queueing, a retry's backoff, or the end of a sender's
    -- lease (a claimed message is hidden from other senders until then).
    due_at     timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error text,
    failed_at  timestamptz
);
CREATE INDEX mail_outbox_due ON mail_outbox (due_at) WHERE failed_at IS NULL;
