package pgsink

import (
	"bytes"
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

// VerifyResult is what Verify checked of one source's chain.
type VerifyResult struct {
	Source      string
	Rows        uint64 // rows read (row events, snapshot records, chain records)
	First, Last string // the first and last id
	Breaks      int    // links across a cut's range (records the store pruned before the sink had them)
	Marks       []string
	// Err, wrapping ErrBroken, says where the chain is broken (nil: intact).
	Err error
}

// Verify checks the chain of every source in the audit table, each on its
// own (only source's when it is not ""), and returns a result per source,
// in name order; err is for a table that cannot be read. Each source's
// rows are read in id order: every row's record's hash recomputed from the
// stored text (byte-exact, as exported), the id, hash and prev_hash columns
// against the record, and each row's prev_hash against the hash of the row
// before it — or, across records a retention cut removed before the sink
// had them, the link the cut row names. The first row's prev_hash is not
// checked (it is the genesis record when the sink delivered from the
// start).
func Verify(ctx context.Context, dsn, table, source string) ([]VerifyResult, error) {
	if table == "" {
		table = DefaultTable
	}
	if err := CheckTable(table); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("pgsink: connect: %w", err)
	}
	defer conn.Close(context.Background())
	var version int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+MigrationsTable+` WHERE table_name = $1`, table).Scan(&version); err != nil {
		return nil, fmt.Errorf("pgsink: migrations of %s: %w", table, err)
	}
	switch {
	case version > Version():
		return nil, fmt.Errorf("pgsink: table %s is at schema version %d, this cdcaudit reads %d: upgrade cdcaudit", table, version, Version())
	case version < Version():
		return nil, fmt.Errorf("pgsink: table %s is at schema version %d, this cdcaudit reads %d: "+
			"a daemon of this version migrates it when its sink next connects", table, version, Version())
	}
	sources := []string{source}
	if source == "" {
		// One index probe per source (the primary key leads with it), not
		// a scan of the table.
		rows, err := conn.Query(ctx, `WITH RECURSIVE s AS (
			SELECT min(source) AS source FROM `+ident(table)+`
			UNION ALL SELECT (SELECT min(source) FROM `+ident(table)+` t WHERE t.source > s.source) FROM s WHERE s.source IS NOT NULL)
			SELECT source FROM s WHERE source IS NOT NULL`)
		if err != nil {
			return nil, fmt.Errorf("pgsink: read the sources of %s: %w", table, err)
		}
		if sources, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, fmt.Errorf("pgsink: read the sources of %s: %w", table, err)
		}
	}
	var out []VerifyResult
	for _, src := range sources {
		res, err := verifySource(ctx, conn, table, src)
		if err != nil && !errors.Is(err, ErrBroken) {
			return out, err
		}
		res.Err = err
		out = append(out, res)
	}
	return out, nil
}

// verifySource checks the chain of one source.
func verifySource(ctx context.Context, conn *pgx.Conn, table, source string) (VerifyResult, error) {
	res := VerifyResult{Source: source}
	// The cuts: chain → before.
	cuts := map[audit.Hash]audit.Hash{}
	crows, err := conn.Query(ctx, `SELECT id, record FROM `+ident(table)+` WHERE source = $1 AND op = 'cut'`, source)
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
			crows.Close()
			return res, fmt.Errorf("%w: cut %s: %v", ErrBroken, id, err)
		}
		cuts[c.chain] = c.before
	}
	if err := crows.Err(); err != nil {
		return res, err
	}
	rows, err := conn.Query(ctx, `SELECT id, op, prev_hash, hash, record FROM `+ident(table)+` WHERE source = $1 ORDER BY id`, source)
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
		if named, ok := recordSource([]byte(rec)); ok && named != source {
			return res, fmt.Errorf("%w: row %s: its source column says %s, its record %s", ErrBroken, id, source, named)
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

// recordSource reads the source member of a row event's record (ok is
// false when it has none: an older event, a chain record). Every member
// before "schema" is a string the encoding escapes, so the first bare
// `,"schema":` ends them, and a `,"source":` before it is the member.
func recordSource(rec []byte) (string, bool) {
	head, _, ok := bytes.Cut(rec, []byte(`,"schema":`))
	if !ok {
		return "", false
	}
	_, v, ok := bytes.Cut(head, []byte(`,"source":`))
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return string(v), true // not a string: it names no source this sink wrote
	}
	return s, true
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
