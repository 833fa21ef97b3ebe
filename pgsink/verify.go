package pgsink

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
)

// ErrBroken is wrapped by Verify's error when the table's chain is broken:
// a row whose record does not match its hash, whose columns disagree with
// its record, or that does not link to the row before it.
var ErrBroken = errors.New("the audit table's hash chain is broken")

// VerifyResult is what Verify checked.
type VerifyResult struct {
	Rows        uint64 // rows read (row events, snapshot records, chain records)
	First, Last string // the first and last id
	Breaks      int    // links across a cut's range (records the store pruned before the sink had them)
	Marks       []string
}

// Verify reads the audit table in id order and checks every row: its
// record's hash recomputed from the stored text (byte-exact, as exported),
// the id, hash and prev_hash columns against the record, and each row's
// prev_hash against the hash of the row before it — or, across records a
// retention cut removed before the sink had them, the link the cut row
// names. The first row's prev_hash is not checked (it is the genesis
// record when the sink delivered from the start).
func Verify(ctx context.Context, dsn, table string) (VerifyResult, error) {
	var res VerifyResult
	if table == "" {
		table = DefaultTable
	}
	if err := CheckTable(table); err != nil {
		return res, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return res, fmt.Errorf("pgsink: connect: %w", err)
	}
	defer conn.Close(context.Background())
	// The cuts: chain → before.
	cuts := map[audit.Hash]audit.Hash{}
	crows, err := conn.Query(ctx, `SELECT id, record FROM `+ident(table)+` WHERE op = 'cut'`)
	if err != nil {
		return res, fmt.Errorf("pgsink: read cuts: %w", err)
	}
	for crows.Next() {
		var id, rec string
		if err := crows.Scan(&id, &rec); err != nil {
			return res, err
		}
		c, err := parseCut([]byte(rec))
		if err != nil {
			return res, fmt.Errorf("%w: cut %s: %v", ErrBroken, id, err)
		}
		cuts[c.chain] = c.before
	}
	if err := crows.Err(); err != nil {
		return res, err
	}
	rows, err := conn.Query(ctx, `SELECT id, op, prev_hash, hash, record FROM `+ident(table)+` ORDER BY id`)
	if err != nil {
		return res, fmt.Errorf("pgsink: read %s: %w", table, err)
	}
	defer rows.Close()
	var prev audit.Hash
	for rows.Next() {
		var id, op, prevCol, hashCol, rec string
		if err := rows.Scan(&id, &op, &prevCol, &hashCol, &rec); err != nil {
			return res, err
		}
		rid, p, h, err := audit.Check([]byte(rec))
		if err != nil {
			return res, fmt.Errorf("%w: row %s: its record does not match its hash (%v)", ErrBroken, id, err)
		}
		if rid != id || p.String() != prevCol || h.String() != hashCol {
			return res, fmt.Errorf("%w: row %s: its id, prev_hash or hash column differs from its record", ErrBroken, id)
		}
		if res.Rows > 0 && p != prev {
			if before, ok := cuts[p]; !ok || before != prev {
				return res, fmt.Errorf("%w: row %s does not link to row %s before it (a row removed, inserted or altered)", ErrBroken, id, res.Last)
			}
			res.Breaks++
		}
		if op == "gap" || op == "slot_lost" {
			res.Marks = append(res.Marks, op+" "+id)
		}
		if res.Rows == 0 {
			res.First = id
		}
		res.Rows++
		res.Last, prev = id, h
	}
	return res, rows.Err()
}

type cutLinks struct{ before, chain audit.Hash }

// parseCut reads a cut record's before and chain members.
func parseCut(rec []byte) (cutLinks, error) {
	var j struct {
		Before string `json:"before"`
		Chain  string `json:"chain"`
	}
	var c cutLinks
	if err := json.Unmarshal(rec, &j); err != nil {
		return c, err
	}
	for _, p := range []struct {
		s   string
		dst *audit.Hash
	}{{j.Before, &c.before}, {j.Chain, &c.chain}} {
		b, err := hex.DecodeString(p.s)
		if err != nil || len(b) != audit.HashLen {
			return c, fmt.Errorf("bad hash %q", p.s)
		}
		copy(p.dst[:], b)
	}
	return c, nil
}
