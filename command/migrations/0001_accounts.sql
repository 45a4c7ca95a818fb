-- Accounts of the command service: users, refresh-token families and the
-- idempotency keys of task creation. Everything else lives in the event log.

CREATE TABLE accounts.users (
    id            uuid        PRIMARY KEY,
    -- As the user typed it (trimmed); uniqueness ignores case, see below.
    email         text        NOT NULL,
    name          text        NOT NULL,
    -- Argon2id in PHC form: the parameters travel with each hash.
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Emails are unique case-insensitively; lookups use the same expression.
CREATE UNIQUE INDEX users_email_lower ON accounts.users (lower(email));

-- One family per login: every refresh token rotated from it joins the family,
-- so reuse of a rotated token (a stolen copy) revokes the whole session.
CREATE TABLE accounts.token_families (
    id             uuid        PRIMARY KEY,
    user_id        uuid        NOT NULL REFERENCES accounts.users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text
);

CREATE INDEX token_families_user ON accounts.token_families (user_id);

-- Only the SHA-256 of a token is stored: a leaked table cannot be replayed.
CREATE TABLE accounts.refresh_tokens (
    token_hash bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id  uuid        NOT NULL REFERENCES accounts.token_families (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set when the token was exchanged; presenting it again is reuse.
    rotated_at timestamptz
);

CREATE INDEX refresh_tokens_family ON accounts.refresh_tokens (family_id);

-- Idempotency-Key of POST /v1/tasks. The row is written before the append and
-- fixes the task id, so a retry (or a re-run after a crash) appends the same
-- event id and the log answers with the original result; `response` is
-- filled once the append is known. No foreign key to users: a key is scoped by
-- the token's subject, and a request must never fail on a missing user row.
CREATE TABLE accounts.idempotency_keys (
    user_id    uuid        NOT NULL,
    key        text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    body_hash  bytea       NOT NULL,
    task_id    uuid        NOT NULL,
    response   jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
