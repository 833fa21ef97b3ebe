package pgsink

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrations are applied in order, each once per audit table, in a
// transaction of its own under an advisory lock (several instances may
// start together). {t} is the table's quoted name, {n} its bare name. Never
// edit one that shipped: add the next.
var migrations = []string{
	// 1: the partitioned table and its indexes.
	`CREATE TABLE {t} (
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
	COMMENT ON TABLE {t} IS 'cdcaudit audit trail: one row per record of the hash chain (docs/sinks.md); record holds the event exactly as exported';`,
}

// Version is the schema version this build migrates an audit table to.
func Version() int { return len(migrations) }

// Migrate brings the audit table up to Version: creates it, or applies the
// migrations it lacks. A table at a later version (a newer cdcaudit) is
// refused.
func Migrate(ctx context.Context, conn *pgx.Conn, table string) error {
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
		done, err := migrateOne(ctx, conn, table)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration (done: none left).
func migrateOne(ctx context.Context, conn *pgx.Conn, table string) (done bool, err error) {
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
	sql := strings.NewReplacer("{t}", ident(table), "{n}", table).Replace(migrations[v])
	if _, err := tx.Exec(ctx, sql); err != nil {
		return false, fmt.Errorf("pgsink: migration %d of %s: %w", v+1, table, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+MigrationsTable+` (table_name, version) VALUES ($1, $2)`, table, v+1); err != nil {
		return false, err
	}
	return false, tx.Commit(ctx)
}
