-- Sessions with an end (issue 21): a refresh-token family lives at most a
-- fixed time from its login, however often it is rotated, and remembers
-- when it was last used and from which client, for GET /v1/auth/sessions.

-- The family's absolute end. Tokens rotated from it never outlive it.
ALTER TABLE accounts.token_families ADD COLUMN expires_at timestamptz;
-- Families from before this migration end 30 days (the default lifetime)
-- after their login.
UPDATE accounts.token_families SET expires_at = created_at + interval '30 days';
ALTER TABLE accounts.token_families ALTER COLUMN expires_at SET NOT NULL;

-- Set at each rotation; NULL until the first one.
ALTER TABLE accounts.token_families ADD COLUMN last_used_at timestamptz;
-- The User-Agent of the login (cut to 256 characters), shown to the user so
-- they can tell their sessions apart; nothing else about the client is kept.
ALTER TABLE accounts.token_families ADD COLUMN user_agent text
    CHECK (length(user_agent) <= 256);
