package odootrace

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Replay applies a trace's transactions to conn in order, one replay
// transaction per recorded one.
//
// Odoo 18 sends its audit timestamps as literals: cr.now() reads
// now() AT TIME ZONE 'UTC' once per transaction and the ORM writes that value
// into create_date/write_date (and the device log its own clock). Replayed
// verbatim they would date every row to the recording. So each transaction's
// timestamp literals are shifted by (replay transaction's now − recorded
// Tx.Now): a write_date that was the recorded transaction's own timestamp is
// the replay transaction's own timestamp, and the gaps between literals of one
// transaction are kept. Only literals within ShiftWindow of Tx.Now move; dates
// without a time, and datetimes far from the transaction (an expiry date a
// user typed), stay as recorded.
//
// It returns the xid of each replay transaction, index for index with
// tr.Txs, so that a test can find the events of a recorded transaction.
func Replay(ctx context.Context, conn *pgx.Conn, tr *Trace) ([]uint32, error) {
	xids := make([]uint32, 0, len(tr.Txs))
	for i := range tr.Txs {
		xid, err := replayTx(ctx, conn, &tr.Txs[i])
		if err != nil {
			return xids, fmt.Errorf("replay %s: transaction %d of %d (backend %s, committed %s): %w",
				tr.Header.Scenario, i+1, len(tr.Txs), tr.Txs[i].Backend, tr.Txs[i].Commit.Format(tsLayout), err)
		}
		xids = append(xids, xid)
	}
	return xids, nil
}

// ShiftWindow bounds which timestamp literals Replay moves: those within
// this distance of the recorded transaction's now.
const ShiftWindow = 24 * time.Hour

// replayTx replays one transaction and returns its xid (the 32 bits the
// WAL carries).
func replayTx(ctx context.Context, conn *pgx.Conn, tx *Tx) (uint32, error) {
	dbtx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer dbtx.Rollback(ctx)
	var now time.Time
	var xid int64
	if err := dbtx.QueryRow(ctx, `SELECT now() AT TIME ZONE 'UTC', txid_current()`).Scan(&now, &xid); err != nil {
		return 0, err
	}
	shift := now.Sub(tx.Now.Time)
	failed := map[int]bool{}
	for _, i := range tx.Failed {
		failed[i] = true
	}
	pg := dbtx.Conn().PgConn()
	for i, stmt := range tx.Stmts {
		_, err := pg.Exec(ctx, ShiftTimestamps(stmt, tx.Now.Time, shift)).ReadAll()
		switch {
		case err != nil && !failed[i]:
			return 0, fmt.Errorf("statement %d %.200q: %w", i+1, stmt, err)
		case err == nil && failed[i]:
			return 0, fmt.Errorf("statement %d %.200q failed when recorded but succeeded on replay", i+1, stmt)
		}
	}
	return uint32(xid), dbtx.Commit(ctx)
}

// A timestamp literal as psycopg2 renders a datetime ('2026-12-03T06:30:12.123456')
// or Odoo formats one ('2026-12-03 06:30:12').
var tsLiteral = regexp.MustCompile(`'(\d{4}-\d{2}-\d{2})([ T])(\d{2}:\d{2}:\d{2})(\.\d{1,6})?'`)

// ShiftTimestamps returns stmt with every timestamp literal within
// ShiftWindow of base moved by shift, in the literal's own format. It reads
// no SQL grammar: any single-quoted timestamp moves, also one whose quotes
// are doubled inside another string; one embedded in longer text
// does not, nor one in JSON (double-quoted).
func ShiftTimestamps(stmt string, base time.Time, shift time.Duration) string {
	if shift == 0 {
		return stmt
	}
	return tsLiteral.ReplaceAllStringFunc(stmt, func(lit string) string {
		m := tsLiteral.FindStringSubmatch(lit)
		t, err := time.Parse("2006-01-02 15:04:05.999999", m[1]+" "+m[3]+m[4])
		if err != nil || t.Sub(base).Abs() > ShiftWindow {
			return lit
		}
		t = t.Add(shift)
		var b strings.Builder
		b.WriteString("'")
		b.WriteString(t.Format("2006-01-02"))
		b.WriteString(m[2])
		b.WriteString(t.Format("15:04:05"))
		if us := t.Nanosecond() / 1000; us != 0 {
			fmt.Fprintf(&b, ".%06d", us)
		}
		b.WriteString("'")
		return b.String()
	})
}
