package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// copyCeiling is the reference for the PostgreSQL sink: the audit
// database's own COPY of exactly the rows the sink stored, into the same
// table (partitions, indexes, TOAST), in transactions of the sink's batch
// size, by one connection. No client work is in it, so it is what the
// audit database can take on this machine: a sink cannot go faster.
type copyCeiling struct {
	Rows       int64   `json:"rows"`
	RowsPerSec float64 `json:"rows_per_second"`
	BackendCPU float64 `json:"backend_cpu_seconds"`
}

// measureCopyCeiling copies the audit table out, empties it, and copies
// the rows back in, batch rows per COPY (each its own transaction, like a
// delivery). It leaves the table as it found it.
func measureCopyCeiling(ctx context.Context, conn *pgx.Conn, batch int) (copyCeiling, error) {
	var c copyCeiling
	var out bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT * FROM cdcaudit_events) TO STDOUT"); err != nil {
		return c, fmt.Errorf("copy out: %w", err)
	}
	// Text COPY escapes newlines inside values: one line is one row.
	lines := bytes.SplitAfter(out.Bytes(), []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	if _, err := conn.Exec(ctx, "TRUNCATE cdcaudit_events"); err != nil {
		return c, err
	}
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return c, err
	}
	cpu0, err := processCPU(pid)
	if err != nil {
		return c, err
	}
	t0 := time.Now()
	for i := 0; i < len(lines); i += batch {
		chunk := bytes.Join(lines[i:min(i+batch, len(lines))], nil)
		if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(chunk), "COPY cdcaudit_events FROM STDIN"); err != nil {
			return c, fmt.Errorf("copy in: %w", err)
		}
	}
	wall := time.Since(t0)
	cpu1, err := processCPU(pid)
	if err != nil {
		return c, err
	}
	c.Rows = int64(len(lines))
	c.RowsPerSec = float64(c.Rows) / wall.Seconds()
	c.BackendCPU = (cpu1 - cpu0).Seconds()
	return c, nil
}

// sinkBatch is the daemon's default sink_postgres_batch, which the bench
// keeps: the reference copies in batches of the same size.
const sinkBatch = 1000
