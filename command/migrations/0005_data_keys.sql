-- Crypto-shredding (issue 22). Each account's data key: the personal text of
-- its task events (title, description, tags) is sealed under it in the log,
-- which is never rewritten. Deleting the row (DELETE /v1/auth/me) is what
-- erases that text from the log, its copies and its backups. The key is
-- stored wrapped by the key-encryption key from configuration
-- (DATA_KEY_ENCRYPTION_KEY), never in the clear. Read by every service that
-- reads task text (`tasklog_events::sealing::PgKeyRing`); made on the first
-- task event of an account, only while the account exists.
CREATE TABLE accounts.data_keys (
    user_id     uuid        PRIMARY KEY REFERENCES accounts.users (id) ON DELETE CASCADE,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Erasures asked for: written in the transaction that deletes the account
-- and its key, so an erasure whose `UserErased` event did not reach the log
-- (a crash in between) is appended by the next command service to start.
-- Holds the id only: nothing personal is kept.
CREATE TABLE accounts.erasures (
    user_id      uuid        PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    -- Set once the event is in the log.
    logged_at    timestamptz
);

CREATE INDEX erasures_pending ON accounts.erasures (requested_at) WHERE logged_at IS NULL;
