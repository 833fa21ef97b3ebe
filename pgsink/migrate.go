package pgsink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migration is one step of the audit table's schema: SQL in which {t}
// stands for the table's quoted name and {n} for its bare name, or a
// function for a step that must look at the rows first.
type migration struct {
	sql string
	run func(ctx context.Context, tx pgx.Tx, table, source string) error
}

// migrations are applied in order, each once per audit table, in a
// transaction of its own under an advisory lock (several instances may
// start together). Never edit one that shipped: add the next.
var migrations = []migration{
	// 1: the partitioned table and its indexes.
	{sql: `CREATE TABLE {t} (
		id text NOT NULL,
		commit_time timestamptz NOT NULL,
		op text NOT NULL,
		lsn text,
		commit_lsn text,
		xid bigint,
		database text,
		schema_name text,
		table_name text,
		model text,
		key jsonb,
		before jsonb,
		before_source text,
		after jsonb,
		changed jsonb,
		unchanged_toast jsonb,
		redacted jsonb,
		actor jsonb,
		user_id bigint,
		login text,
		session_id text,
		flags jsonb,
		prev_hash text NOT NULL,
		hash text NOT NULL,
		record text NOT NULL,
		PRIMARY KEY (id, commit_time)
	) PARTITION BY RANGE (commit_time);
	CREATE INDEX {n}_record_history ON {t} (schema_name, table_name, key, id);
	CREATE INDEX {n}_user ON {t} (login, commit_time);
	CREATE INDEX {n}_user_id ON {t} (user_id, commit_time);
	CREATE INDEX {n}_session ON {t} (session_id, commit_time);
	CREATE INDEX {n}_time ON {t} (commit_time);
	COMMENT ON TABLE {t} IS 'cdcaudit audit trail: one row per record of the hash chain (docs/sinks.md); record holds the event exactly as exported';`},
	// 2: the source column, leading the primary key: several instances
	// share the table, each its own chain.
	{run: addSource},
}

// addSource is migration 2. A table of version 1 was written by one
// instance, of one database: its rows get that database's name as their
// source (the default source), its chain records too; one holding the
// events of several databases cannot tell whose its chain records are,
// and is refused. A table of chain records only takes the source of the
// instance migrating it.
func addSource(ctx context.Context, tx pgx.Tx, table, source string) error {
	t := ident(table)
	rows, err := tx.Query(ctx, `SELECT DISTINCT database FROM `+t+` WHERE database IS NOT NULL ORDER BY 1 LIMIT 6`)
	if err != nil {
		return err
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(dbs) > 1 {
		return fmt.Errorf("its rows hold the events of several databases (%s), so its chain records cannot be given a source: "+
			"deliver each database to a table of its own (sink_postgres_table), or move this table's rows to one per database", strings.Join(dbs, ", "))
	}
	if len(dbs) == 1 {
		source = dbs[0]
	}
	if source == "" {
		return errors.New("its rows name no database, and the instance migrating it has no source")
	}
	var pkey string
	if err := tx.QueryRow(ctx, `SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`, t).Scan(&pkey); err != nil {
		return fmt.Errorf("its primary key: %w", err)
	}
	n := func(suffix string) string { return ident(table + suffix) }
	for _, q := range []string{
		`ALTER TABLE ` + t + ` ADD COLUMN source text`,
		`UPDATE ` + t + ` SET source = coalesce(database, $1)`,
		`ALTER TABLE ` + t + ` ALTER COLUMN source SET NOT NULL`,
		`ALTER TABLE ` + t + ` DROP CONSTRAINT ` + ident(pkey),
		// A source's chain in id order (verify), and deduplication.
		`ALTER TABLE ` + t + ` ADD PRIMARY KEY (source, id, commit_time)`,
		// A record's history, a user id and a session are a database's:
		// per source. A login is looked up across sources too, and by
		// time: those indexes stay as they were.
		`DROP INDEX ` + n("_record_history"),
		`CREATE INDEX ` + n("_record_history") + ` ON ` + t + ` (source, schema_name, table_name, key, id)`,
		`DROP INDEX ` + n("_user_id"),
		`CREATE INDEX ` + n("_user_id") + ` ON ` + t + ` (source, user_id, commit_time)`,
		`DROP INDEX ` + n("_session"),
		`CREATE INDEX ` + n("_session") + ` ON ` + t + ` (source, session_id, commit_time)`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, source)
		}
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// Version is the schema version this build migrates an audit table to.
func Version() int { return len(migrations) }

// Migrate brings the audit table up to Version: creates it, or applies the
// migrations it lacks. A table at a later version (a newer cdcaudit) is
// refused. source is the migrating instance's (addSource).
func Migrate(ctx context.Context, conn *pgx.Conn, table, source string) error {
	if err := CheckTable(table); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+MigrationsTable+` (
		table_name text NOT NULL, version int NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (table_name, version))`); err != nil {
		// Two instances creating it at once: one wins; look again.
		if _, err2 := conn.Exec(ctx, `SELECT 1 FROM `+MigrationsTable+` LIMIT 0`); err2 != nil {
			return fmt.Errorf("pgsink: migrations table: %w", err)
		}
	}
	for {
		done, err := migrateOne(ctx, conn, table, source)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration (done: none left).
func migrateOne(ctx context.Context, conn *pgx.Conn, table, source string) (done bool, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('cdcaudit migrate ' || $1))`, table); err != nil {
		return false, fmt.Errorf("pgsink: migration lock: %w", err)
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+MigrationsTable+` WHERE table_name = $1`, table).Scan(&v); err != nil {
		return false, fmt.Errorf("pgsink: migrations of %s: %w", table, err)
	}
	if v > len(migrations) {
		return false, fmt.Errorf("pgsink: table %s is at schema version %d, this cdcaudit knows %d: upgrade cdcaudit", table, v, len(migrations))
	}
	if v == len(migrations) {
		return true, nil
	}
	m := migrations[v]
	if m.run != nil {
		err = m.run(ctx, tx, table, source)
	} else {
		_, err = tx.Exec(ctx, strings.NewReplacer("{t}", ident(table), "{n}", table).Replace(m.sql))
	}
	if err != nil {
		return false, fmt.Errorf("pgsink: migration %d of %s: %w", v+1, table, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+MigrationsTable+` (table_name, version) VALUES ($1, $2)`, table, v+1); err != nil {
		return false, err
	}
	return false, tx.Commit(ctx)
}
