-- Emails are unique by a key the service computes (issue 21): trimmed,
-- NFKC-normalised and lower-cased, so look-alike spellings (full-width
-- letters, ligatures, non-ASCII case) are one account. Postgres' lower()
-- follows the database's locale and leaves those apart; the key does not
-- depend on it. `email` keeps the address as shown to its user.
ALTER TABLE accounts.users ADD COLUMN email_key text;
-- The same normalisation for the users registered before, as close as SQL
-- gets (the service's lower-casing is Unicode's; for ASCII they agree).
UPDATE accounts.users SET email_key = lower(normalize(email, NFKC));
ALTER TABLE accounts.users ALTER COLUMN email_key SET NOT NULL;
CREATE UNIQUE INDEX users_email_key ON accounts.users (email_key);
DROP INDEX accounts.users_email_lower;
