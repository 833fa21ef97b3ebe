-- Run once by the postgres image's entrypoint, as the superuser, in the
-- database POSTGRES_DB (erp), when the data volume is first created.

-- The role cdcaudit connects as: it may stream (REPLICATION) and read the
-- catalogs and tables `cdcaudit check` looks at. It does not need to own
-- anything: the publication is created here, by the superuser, because a
-- FOR ALL TABLES publication needs one.
CREATE ROLE cdcaudit WITH LOGIN REPLICATION PASSWORD 'cdcaudit';
GRANT pg_read_all_data TO cdcaudit;

CREATE PUBLICATION cdcaudit FOR ALL TABLES;

-- Before-images need REPLICA IDENTITY FULL. The ERP creates its tables
-- later (Odoo on its first start, and again when modules are installed): set
-- it on every new table as it is created.
CREATE FUNCTION cdcaudit_replica_identity_full() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    obj record;
BEGIN
    FOR obj IN
        SELECT object_identity FROM pg_event_trigger_ddl_commands()
        WHERE object_type = 'table'
          AND command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    LOOP
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', obj.object_identity);
    END LOOP;
END
$$;

CREATE EVENT TRIGGER cdcaudit_replica_identity_full ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION cdcaudit_replica_identity_full();
