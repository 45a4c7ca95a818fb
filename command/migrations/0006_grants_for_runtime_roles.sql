-- The data keys and the webhook tables came after the roles script
-- (deploy/postgres/roles.sql) may have run: give them to the query service's
-- and the projector's roles of the default names, where those exist, as the
-- script does (run it again for roles of other names).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'tasklog_query') THEN
        GRANT USAGE ON SCHEMA accounts TO tasklog_query;
        GRANT SELECT ON accounts.data_keys TO tasklog_query;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'tasklog_projector') THEN
        GRANT USAGE ON SCHEMA accounts TO tasklog_projector;
        GRANT SELECT ON accounts.data_keys TO tasklog_projector;
        GRANT SELECT, INSERT, UPDATE, DELETE ON accounts.webhooks, accounts.webhook_deliveries
            TO tasklog_projector;
    END IF;
END $$;
