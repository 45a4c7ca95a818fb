-- Runs in place of migrations/0003_email_key.sql, under its version and
-- checksum (src/migrations.rs says why): the same schema, and an upgrade
-- that cannot fail on emails that only now normalise alike.
--
-- Emails are unique by a key the service computes (issue 21): trimmed,
-- NFKC-normalised and lower-cased, so look-alike spellings (full-width
-- letters, ligatures, non-ASCII case) are one account. Postgres' lower()
-- follows the database's locale and leaves those apart; the key does not
-- depend on it. `email` keeps the address as shown to its user.
ALTER TABLE accounts.users ADD COLUMN email_key text;
-- The same normalisation for the users registered before, as close as SQL
-- gets (the service's lower-casing is Unicode's; for ASCII they agree).
-- Before this key, `ａｎｎ@example.com` and `ann@example.com` could both
-- register. Of each such group the oldest account keeps the key; each later
-- one gets `！lookalike <its id> <the key>`. The full-width `！` makes that
-- string one NFKC would change, and every key the service computes (at
-- register and at login) is NFKC-normal: such a key can neither collide with
-- a registration nor be typed at login. Those accounts keep their rows,
-- tasks and sessions and cannot log in by password until an operator
-- resolves them (deploy/README.md, "Look-alike emails").
WITH keyed AS (
    SELECT id,
           lower(normalize(email, NFKC)) AS key,
           row_number() OVER (
               PARTITION BY lower(normalize(email, NFKC)) ORDER BY created_at, id
           ) AS nth
    FROM accounts.users
)
UPDATE accounts.users AS u
SET email_key = CASE WHEN k.nth = 1 THEN k.key ELSE format('！lookalike %s %s', u.id, k.key) END
FROM keyed AS k
WHERE k.id = u.id;
ALTER TABLE accounts.users ALTER COLUMN email_key SET NOT NULL;
CREATE UNIQUE INDEX users_email_key ON accounts.users (email_key);
DROP INDEX accounts.users_email_lower;
