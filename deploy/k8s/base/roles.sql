-- Tasklog's database roles: run once per database (the log's and, when the
-- read model has a server of its own, the read model's), by a superuser or
-- a role with CREATEROLE that is a member of the owner role, before the
-- services start. Safe to run again (after an upgrade, or to change a
-- password). Not a migration: the services' own migrations must not need
-- the privileges this script needs.
--
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--
-- (deploy/postgres/roles.sql links here: kustomize reads files only below
-- its own folder, and the Kubernetes migrate Job runs this same file.)
--
-- psql variables (-v name=value), each with a default:
--   owner           the role that owns the schemas and runs the migrations
--                   (`tasklog-command migrate`, `tasklog-projector
--                   migrate`: the deploy's migrate step) and
--                   `tasklog-projector rebuild`; no service connects as it.
--                   Default: TASKLOG_OWNER, else the role running this
--                   script.
--   owner_password  set the owner's password (default: leave it as it is;
--                   or from TASKLOG_OWNER_PASSWORD).
--   query_role      the query service's role: SELECT on the log and the
--                   read model and nothing else. Default: tasklog_query.
--   query_password  its password (or from TASKLOG_QUERY_PASSWORD; unset:
--                   no password, for trust or certificate authentication).
--   command_role, projector_role
--                   runtime roles without DDL for the command service and
--                   the projector's `run` (defaults tasklog_command and
--                   tasklog_projector; passwords command_password and
--                   projector_password, or TASKLOG_COMMAND_PASSWORD and
--                   TASKLOG_PROJECTOR_PASSWORD). A service started as
--                   one waits until the owner has applied every migration
--                   it knows, then finds nothing to do. `rebuild` makes
--                   tables: run it as the owner.
--
-- What the query role may do is what the query service does: read the
-- `eventlog` and `readmodel` schemas, LISTEN, take no locks that block the
-- writers. Default privileges give it every table the owner creates later
-- in those schemas, so a rebuild's new read-model generation stays
-- readable: run `tasklog-projector rebuild` as the owner (the projector's
-- own DATABASE_URL), or the new generation is not granted.

\set ON_ERROR_STOP on

\if :{?owner}
\else
\getenv owner TASKLOG_OWNER
\endif
\if :{?owner}
\else
\set owner :USER
\endif
\if :{?owner_password}
\else
\getenv owner_password TASKLOG_OWNER_PASSWORD
\endif
\if :{?query_role}
\else
\set query_role tasklog_query
\endif
\if :{?query_password}
\else
\getenv query_password TASKLOG_QUERY_PASSWORD
\endif
\if :{?command_role}
\else
\set command_role tasklog_command
\endif
\if :{?command_password}
\else
\getenv command_password TASKLOG_COMMAND_PASSWORD
\endif
\if :{?projector_role}
\else
\set projector_role tasklog_projector
\endif
\if :{?projector_password}
\else
\getenv projector_password TASKLOG_PROJECTOR_PASSWORD
\endif

-- The owner: made when missing (a managed Postgres's admin runs this).
SELECT format('CREATE ROLE %I LOGIN', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
\if :{?owner_password}
ALTER ROLE :"owner" PASSWORD :'owner_password';
\endif
-- Migrations say CREATE SCHEMA IF NOT EXISTS, which Postgres checks against
-- the database's CREATE privilege even when the schema is there.
SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO %I', current_database(), :'owner') \gexec

-- The schemas, made here so that their grants can be given before the
-- first migration; the migrations find them and fill them.
CREATE SCHEMA IF NOT EXISTS accounts AUTHORIZATION :"owner";
CREATE SCHEMA IF NOT EXISTS eventlog AUTHORIZATION :"owner";
CREATE SCHEMA IF NOT EXISTS readmodel AUTHORIZATION :"owner";

-- The query role: log in, read, nothing more. Whatever it was before, it
-- is made plain again (a role re-used from elsewhere keeps no power).
SELECT format('CREATE ROLE %I LOGIN', :'query_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'query_role') \gexec
ALTER ROLE :"query_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
\if :{?query_password}
ALTER ROLE :"query_role" PASSWORD :'query_password';
\endif
SELECT format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), :'query_role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'query_role') \gexec
-- Explicit grants are the only privileges a role has beside PUBLIC's; the
-- accounts (password hashes, sessions) get none.
REVOKE ALL ON SCHEMA accounts FROM :"query_role";
REVOKE ALL ON ALL TABLES IN SCHEMA accounts FROM :"query_role";

-- One exception: the accounts' data keys, which the query service needs to
-- open sealed history and as-of answers. They are wrapped by the
-- key-encryption key, which the database never sees. The table exists once
-- the command service has migrated: run this script again then (compose's
-- migrate step and the Kubernetes Job run it on every deploy), or command
-- migration 0006 grants it to roles of the default names.
GRANT USAGE ON SCHEMA accounts TO :"query_role";
SELECT format('GRANT SELECT ON accounts.data_keys TO %I', :'query_role')
WHERE to_regclass('accounts.data_keys') IS NOT NULL \gexec

GRANT USAGE ON SCHEMA eventlog, readmodel TO :"query_role";
REVOKE ALL ON ALL TABLES IN SCHEMA eventlog, readmodel FROM :"query_role";
GRANT SELECT ON ALL TABLES IN SCHEMA eventlog, readmodel TO :"query_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA eventlog, readmodel
    GRANT SELECT ON TABLES TO :"query_role";

-- The runtime roles: rows, no DDL. Each reads `_sqlx_migrations` of its
-- schemas, which tells the service that there is nothing to migrate.
SELECT format('CREATE ROLE %I LOGIN', r)
FROM unnest(ARRAY[:'command_role', :'projector_role']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"command_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
ALTER ROLE :"projector_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
\if :{?command_password}
ALTER ROLE :"command_role" PASSWORD :'command_password';
\endif
\if :{?projector_password}
ALTER ROLE :"projector_role" PASSWORD :'projector_password';
\endif
SELECT format('REVOKE ALL ON DATABASE %I FROM %I, %I', current_database(), :'command_role', :'projector_role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I', current_database(), :'command_role', :'projector_role') \gexec

-- The command service: the accounts' rows; the log, read and appended
-- (never changed: its trigger refuses that to anyone).
GRANT USAGE ON SCHEMA accounts, eventlog TO :"command_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA accounts TO :"command_role";
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA eventlog TO :"command_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA accounts, eventlog TO :"command_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA accounts
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"command_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA eventlog
    GRANT SELECT, INSERT ON TABLES TO :"command_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA accounts, eventlog
    GRANT USAGE, SELECT ON SEQUENCES TO :"command_role";

-- The projector's `run`: the log, read; the read model's rows (every
-- generation, through default privileges), checkpoints and change feed;
-- of the accounts, the data keys (read, to open sealed events) and the
-- webhook subscriptions and delivery log (the delivery worker's).
GRANT USAGE ON SCHEMA accounts TO :"projector_role";
SELECT format('GRANT SELECT ON accounts.data_keys TO %I', :'projector_role')
WHERE to_regclass('accounts.data_keys') IS NOT NULL \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', t, :'projector_role')
FROM unnest(ARRAY['accounts.webhooks', 'accounts.webhook_deliveries']) AS t
WHERE to_regclass(t) IS NOT NULL \gexec
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA accounts TO :"projector_role";
GRANT USAGE ON SCHEMA eventlog, readmodel TO :"projector_role";
GRANT SELECT ON ALL TABLES IN SCHEMA eventlog TO :"projector_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA readmodel TO :"projector_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA readmodel TO :"projector_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA eventlog
    GRANT SELECT ON TABLES TO :"projector_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA readmodel
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"projector_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA readmodel
    GRANT USAGE, SELECT ON SEQUENCES TO :"projector_role";

-- The migration history is the owner's alone. The grants above on "every
-- table" include each schema's `_sqlx_migrations`; a runtime role that could
-- write it could mark a migration applied and have the next deploy skip it.
-- Reading stays (that is how a service sees there is nothing to migrate).
-- The services' migrate step takes the same rights back when it makes the
-- table after this script has run.
SELECT format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %s FROM %I, %I', t, :'command_role', :'projector_role')
FROM unnest(ARRAY['accounts._sqlx_migrations', 'eventlog._sqlx_migrations', 'readmodel._sqlx_migrations']) AS t
WHERE to_regclass(t) IS NOT NULL \gexec
