package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// walSpan is the WAL the server wrote between two points: its bytes
// (pg_current_wal_lsn() after minus before) and how many of them are
// full-page images (pg_waldump --stats). Page images depend on when the
// last checkpoint was, the rest on the changes alone.
type walSpan struct {
	Bytes    int64 `json:"bytes"`
	FPIBytes int64 `json:"fpi_bytes"`
}

func (w walSpan) add(o walSpan) walSpan {
	return walSpan{w.Bytes + o.Bytes, w.FPIBytes + o.FPIBytes}
}

// withoutImages is the span's bytes other than full-page images.
func (w walSpan) withoutImages() int64 { return w.Bytes - w.FPIBytes }

func currentWAL(ctx context.Context, conn *pgx.Conn) (uint64, error) {
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return 0, err
	}
	return audit.ParseLSN(lsn)
}

// walSince measures the WAL from start to now, and returns now's position.
// The segments must still be there: call it before the next checkpoint.
func walSince(ctx context.Context, c *pgtest.Cluster, conn *pgx.Conn, start uint64) (walSpan, uint64, error) {
	end, err := currentWAL(ctx, conn)
	if err != nil || end <= start {
		return walSpan{}, end, err
	}
	out, err := exec.CommandContext(ctx, filepath.Join(c.BinDir, "pg_waldump"), "--stats",
		"-p", filepath.Join(c.DataDir, "pg_wal"), "-s", audit.FormatLSN(start), "-e", audit.FormatLSN(end)).CombinedOutput()
	if err != nil {
		return walSpan{}, end, fmt.Errorf("pg_waldump (run as root, or as the server's user, to read pg_wal): %v\n%s", err, out)
	}
	fpi, err := waldumpFPIBytes(string(out))
	if err != nil {
		return walSpan{}, end, fmt.Errorf("pg_waldump --stats: %v", err)
	}
	return walSpan{Bytes: int64(end - start), FPIBytes: fpi}, end, nil
}

// waldumpFPIBytes reads the full-page image bytes from pg_waldump --stats:
// its last line is
//
//	Total  N  record-bytes [p%]  fpi-bytes [p%]  combined-bytes [100%]
func waldumpFPIBytes(stats string) (int64, error) {
	for _, line := range strings.Split(stats, "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[0] == "Total" {
			return strconv.ParseInt(f[4], 10, 64)
		}
	}
	return 0, errors.New("no Total line")
}
