package main

import (
	"context"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// pgbenchKeyed are the tables pgbench -i gives a primary key; its
// pgbench_history has none and only ever gets inserts, which log the same
// under either identity.
var pgbenchKeyed = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers"}

// pgbenchWAL initialises pgbench (scale 1) in a new database db, sets its
// keyed tables to replica identity id, and returns the WAL that tx
// TPC-B-like transactions of one client write after a checkpoint. Then it
// drops db.
func pgbenchWAL(ctx context.Context, c *pgtest.Cluster, db, id string, tx int) (walSpan, error) {
	if err := c.CreateDatabase(ctx, db); err != nil {
		return walSpan{}, err
	}
	defer dropDatabase(ctx, c, db)
	if err := pgbench(ctx, c, db, "-i", "-q", "-s", "1"); err != nil {
		return walSpan{}, err
	}
	pg, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return walSpan{}, err
	}
	defer pg.Close(ctx)
	ddl := ""
	for _, t := range pgbenchKeyed {
		ddl += identityDDL(t, id)
	}
	if ddl != "" {
		if _, err := pg.Exec(ctx, ddl); err != nil {
			return walSpan{}, err
		}
	}
	if _, err := pg.Exec(ctx, "CHECKPOINT"); err != nil {
		return walSpan{}, err
	}
	start, err := currentWAL(ctx, pg)
	if err != nil {
		return walSpan{}, err
	}
	// -n: no vacuum before the run (autovacuum is off as well).
	if err := pgbench(ctx, c, db, "-n", "-c", "1", "-t", strconv.Itoa(tx)); err != nil {
		return walSpan{}, err
	}
	wal, _, err := walSince(ctx, c, pg, start)
	return wal, err
}
