package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// bigTxResult is cdcaudit's drain of one transaction of --big-tx rows.
type bigTxResult struct {
	Rows           int     `json:"rows"`
	WallSeconds    float64 `json:"wall_seconds"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	PeakRSSKiB     int64   `json:"peak_rss_kib"`
	PeakAnonRSSKiB int64   `json:"peak_anon_rss_kib"`
	StoreBytes     int64   `json:"store_bytes"`
}

// benchBigTx inserts rows rows of the bench table (REPLICA IDENTITY FULL)
// in ONE transaction, then drains it with cdcaudit: its memory must not
// grow with the transaction's size.
func benchBigTx(ctx context.Context, c *pgtest.Cluster, o options, snapshots bool) (*bigTxResult, error) {
	const db = "bigtx"
	conn, done, err := benchDB(ctx, c, db, table+identityDDL("sale_order_line", "full")+publications)
	if err != nil {
		return nil, err
	}
	defer done()
	const slot = "cdcaudit_bigtx"
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		return nil, err
	}
	t0 := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, insertRows, 1, o.bigTx); err != nil {
		return nil, err
	}
	var lsn string
	if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	end, err := audit.ParseLSN(lsn)
	if err != nil {
		return nil, err
	}
	log.Printf("big transaction: %d rows inserted in %.1fs", o.bigTx, time.Since(t0).Seconds())
	d, err := runCdcaudit(ctx, conn, o, c, db, slot, "none", end, snapshots, nil)
	if err != nil {
		return nil, err
	}
	return &bigTxResult{Rows: o.bigTx, WallSeconds: d.wall.Seconds(), CPUSeconds: d.cpu.Seconds(),
		PeakRSSKiB: d.rssKB, PeakAnonRSSKiB: d.anonKB, StoreBytes: d.storeBytes}, nil
}

func printBigTx(r *bigTxResult) {
	fmt.Printf("one transaction of %d rows (REPLICA IDENTITY FULL), drained by cdcaudit run\n", r.Rows)
	fmt.Printf("%-50s%.1f s, %.0f rows/s, CPU %.2f µs/row\n", "  stored and confirmed in:", r.WallSeconds,
		float64(r.Rows)/r.WallSeconds, r.CPUSeconds*1e6/float64(r.Rows))
	fmt.Printf("%-50s%.1f MiB (anonymous: %.1f MiB; goal < 200 MiB)\n", "  cdcaudit peak RSS:", float64(r.PeakRSSKiB)/1024, float64(r.PeakAnonRSSKiB)/1024)
	fmt.Printf("%-50s%.0f bytes/row\n\n", "  store:", float64(r.StoreBytes)/float64(r.Rows))
}

// benchDB creates database db, runs schema in it and connects to it; done
// closes the connection and drops db.
func benchDB(ctx context.Context, c *pgtest.Cluster, db, schema string) (conn *pgx.Conn, done func(), err error) {
	if err := c.CreateDatabase(ctx, db); err != nil {
		return nil, nil, err
	}
	if conn, err = pgx.Connect(ctx, c.DSN(db)); err != nil {
		dropDatabase(ctx, c, db)
		return nil, nil, err
	}
	done = func() {
		conn.Close(ctx)
		dropDatabase(ctx, c, db)
	}
	if _, err := conn.Exec(ctx, schema); err != nil {
		done()
		return nil, nil, err
	}
	return conn, done, nil
}
