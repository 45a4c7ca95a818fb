-- Secret rotation (POST /v1/webhooks/{id}/rotate-secret): the secret a
-- rotation replaces keeps signing every delivery beside the new one until
-- previous_secret_expires_at, so a receiver can switch to the new secret
-- without refusing a delivery in between. Only the latest previous secret is
-- kept: a second rotation inside the window ends the first one's.
ALTER TABLE accounts.webhooks
    ADD COLUMN previous_secret            text,
    ADD COLUMN previous_secret_expires_at timestamptz;
