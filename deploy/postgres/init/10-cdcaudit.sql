-- Run once by the postgres image's entrypoint, as the superuser, in the
-- database POSTGRES_DB (erp), when the data volume is first created.

-- The role cdcaudit connects as: it may stream (REPLICATION) and read the
-- catalogs and tables `cdcaudit check` looks at. It owns no table, so the
-- superuser sets up what needs more than that (see docs/operations.md).
CREATE ROLE cdcaudit WITH LOGIN REPLICATION PASSWORD 'cdcaudit';
GRANT pg_read_all_data TO cdcaudit;

-- Two publications, so that auditing never makes the application's writes
-- fail: inserts and truncates of every table (FOR ALL TABLES needs a
-- superuser) ...
CREATE PUBLICATION cdcaudit FOR ALL TABLES WITH (publish = 'insert, truncate');
-- ... and updates and deletes of exactly the tables with a usable replica
-- identity. cdcaudit owns this one: it drops a table from it as soon as its
-- replica identity becomes unusable. Adding a table takes the table's owner,
-- so the trigger below adds each new table as it is created.
CREATE PUBLICATION cdcaudit_changes WITH (publish = 'update, delete');
ALTER PUBLICATION cdcaudit_changes OWNER TO cdcaudit;

-- The ERP creates its tables later (Odoo on its first start, and again when
-- modules are installed): list every new table for updates and deletes as it
-- is created. A table with a primary key keeps REPLICA IDENTITY DEFAULT:
-- cdcaudit fills its before-images from the last image it keeps of each
-- record, and the ERP writes no extra WAL. A table without one gets
-- REPLICA IDENTITY FULL, the only identity it can have (without it, its
-- updates and deletes could not be captured). Nothing here may make the
-- application's statement fail: temporary and unlogged tables are left
-- alone, and any error is swallowed (the table then has its inserts
-- captured, and cdcaudit check names it).
-- SECURITY DEFINER: it runs as the superuser who made it, whoever creates
-- the table.
CREATE FUNCTION cdcaudit_prepare_new_table() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    obj record;
BEGIN
    FOR obj IN
        SELECT d.object_identity, d.objid FROM pg_event_trigger_ddl_commands() d
        JOIN pg_class c ON c.oid = d.objid
        WHERE d.object_type = 'table' AND c.relkind = 'r' AND c.relpersistence = 'p'
          AND d.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    LOOP
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = obj.objid AND i.indisprimary) THEN
                EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', obj.object_identity);
            END IF;
            EXECUTE format('ALTER PUBLICATION cdcaudit_changes ADD TABLE %s', obj.object_identity);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'cdcaudit: % not prepared for auditing updates: %', obj.object_identity, SQLERRM;
        END;
    END LOOP;
END
$$;

CREATE EVENT TRIGGER cdcaudit_prepare_new_table ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION cdcaudit_prepare_new_table();

-- A listed table whose replica identity becomes unusable (primary key
-- dropped, REPLICA IDENTITY NOTHING, identity index dropped) would make the
-- application's UPDATEs and DELETEs on it fail until cdcaudit's next catalog
-- poll, or until it runs again when it is stopped. This trigger drops it from
-- cdcaudit_changes in the same transaction as the DDL, so that never happens.
CREATE FUNCTION cdcaudit_keep_changes_publication() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS tbl
        FROM pg_publication_rel pr
        JOIN pg_publication p ON p.oid = pr.prpubid AND p.pubname = 'cdcaudit_changes'
        JOIN pg_class c ON c.oid = pr.prrelid
        WHERE NOT (c.relreplident = 'f'
            OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
            OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisvalid)))
    LOOP
        BEGIN
            EXECUTE format('ALTER PUBLICATION cdcaudit_changes DROP TABLE %s', r.tbl);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'cdcaudit: % not dropped from cdcaudit_changes: %', r.tbl, SQLERRM;
        END;
    END LOOP;
END
$$;

CREATE EVENT TRIGGER cdcaudit_keep_changes_publication ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'DROP INDEX')
    EXECUTE FUNCTION cdcaudit_keep_changes_publication();
