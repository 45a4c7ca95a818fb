-- Webhook subscriptions (issue 23) and their delivery log. The command
-- service owns the subscriptions (create, list, delete, replay); the
-- projector's `webhooks` worker writes the delivery state and the log, under
-- a lease of its own, through this crate's `webhooks::store`.

CREATE TABLE accounts.webhooks (
    id               uuid        PRIMARY KEY,
    user_id          uuid        NOT NULL REFERENCES accounts.users (id) ON DELETE CASCADE,
    url              text        NOT NULL,
    -- Event types to send; empty means every type.
    types            text[]      NOT NULL DEFAULT '{}',
    description      text,
    -- Kept readable, not hashed: the worker signs every delivery with it.
    secret           text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- 'failing': retries ran out (WEBHOOK_RETRY_HOURS); nothing is sent
    -- until a replay makes it 'active' again.
    status           text        NOT NULL DEFAULT 'active'
                                 CHECK (status IN ('active', 'failing')),
    -- The checkpoint: every change up to this log position (the u64 bit
    -- patterns, as in readmodel.checkpoints) has been delivered. A position,
    -- not a row reference, so a rebuilt read model never sends anything again.
    commit_position  bigint      NOT NULL,
    prepare_position bigint      NOT NULL,
    -- Bumped by each replay: a worker's write for an older epoch is refused,
    -- and delivery ids (derived from it) are new for the replayed changes.
    epoch            integer     NOT NULL DEFAULT 0,
    -- The change after the checkpoint: failed attempts so far, since when,
    -- and when to try again (NULL: as soon as there is something to send).
    attempts         integer     NOT NULL DEFAULT 0,
    retry_since      timestamptz,
    next_attempt_at  timestamptz,
    failed_at        timestamptz,
    last_error       text
);

CREATE INDEX webhooks_user ON accounts.webhooks (user_id, created_at, id);
-- The worker's scan for subscriptions with something due.
CREATE INDEX webhooks_due ON accounts.webhooks (next_attempt_at) WHERE status = 'active';

-- One row per attempt, newest first by `id`, which is also the page cursor.
CREATE TABLE accounts.webhook_deliveries (
    id            bigint      GENERATED ALWAYS AS IDENTITY,
    webhook_id    uuid        NOT NULL REFERENCES accounts.webhooks (id) ON DELETE CASCADE,
    delivery_id   uuid        NOT NULL,
    commit_position  bigint   NOT NULL,
    attempt       integer     NOT NULL,
    attempted_at  timestamptz NOT NULL,
    -- NULL when no response came (refused address, timeout, connection error).
    status_code   smallint,
    latency_ms    integer     NOT NULL,
    error         text,
    -- At most 1 KiB of what the receiver answered.
    response_body text,
    PRIMARY KEY (webhook_id, id)
);

-- The worker prunes attempts older than 30 days (webhooks::store::prune).
CREATE INDEX webhook_deliveries_time ON accounts.webhook_deliveries (attempted_at);
