// Package odootrace reads and replays SQL traces recorded from a real Odoo
// 18.0 server (testdata/odoo18/traces): the statements of every committed
// transaction that wrote something, in commit order, as PostgreSQL logged
// them with log_statement = 'all'.
//
// A trace file is JSON lines: a Header first, then one Tx per line. Replay
// applies the transactions in order to a database restored from
// testdata/odoo18/erp.sql.gz (after the traces recorded before it), so the
// WAL a test sees is the WAL real Odoo produced, not a hand-written imitation.
package odootrace

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Header is a trace's first line.
type Header struct {
	Scenario string `json:"scenario"`
	// Seq orders the traces of one recording: replay them in this order onto
	// the dump (each trace starts where the previous one ended).
	Seq int `json:"seq"`
	// Odoo is the server's version ("18.0"), Source what was driven and how.
	Odoo   string `json:"odoo"`
	Source string `json:"source"`
	// TimeBase is the recording's clock when the scenario started (UTC).
	// Timestamp literals in the statements come from that clock.
	TimeBase time.Time `json:"time_base"`
	// Detection says how committed writing transactions were told apart from
	// read-only and rolled-back ones.
	Detection string `json:"detection,omitempty"`
}

// Tx is one committed transaction that wrote something.
type Tx struct {
	// Backend is PostgreSQL's session id (%c) of the connection that ran it,
	// App its application_name (Odoo's "odoo-<pid>", or "psql").
	Backend string `json:"backend"`
	App     string `json:"app,omitempty"`
	Xid     uint64 `json:"xid,omitempty"`
	// Now is the transaction's now() AT TIME ZONE 'UTC' as Odoo's cr.now()
	// saw it, recovered from the audit literals it wrote (exact), or the
	// logged time of its BEGIN when it wrote none (millisecond precision).
	Now Timestamp `json:"now"`
	// NowExact tells which of the two Now is.
	NowExact bool `json:"now_exact"`
	// Commit is the logged time of its COMMIT (millisecond precision).
	Commit Timestamp `json:"commit"`
	// Stmts are the statements between BEGIN and COMMIT, in order; for an
	// implicit (autocommit) transaction, its one statement.
	Stmts []string `json:"stmts"`
	// Failed lists indices of Stmts that raised an error the transaction
	// recovered from (ROLLBACK TO SAVEPOINT follows): replay expects them to
	// fail the same way.
	Failed []int `json:"failed,omitempty"`
}

// Trace is a parsed trace file.
type Trace struct {
	Header Header
	Txs    []Tx
}

// Timestamp is a UTC timestamp written as PostgreSQL prints a timestamp
// without time zone ("2006-01-02 15:04:05.999999").
type Timestamp struct{ time.Time }

const tsLayout = "2006-01-02 15:04:05.999999"

func (t Timestamp) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.UTC().Format(tsLayout))
}

func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(tsLayout, s)
	if err != nil {
		return fmt.Errorf("timestamp %q: %w", s, err)
	}
	t.Time = v
	return nil
}

// Read parses a trace; a gzip stream is recognised by its magic bytes.
func Read(r io.Reader) (*Trace, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	var tr Trace
	if err := dec.Decode(&tr.Header); err != nil {
		return nil, fmt.Errorf("trace header: %w", err)
	}
	if tr.Header.Scenario == "" || tr.Header.TimeBase.IsZero() {
		return nil, fmt.Errorf("trace header: scenario and time_base are required")
	}
	for n := 1; ; n++ {
		var tx Tx
		err := dec.Decode(&tx)
		if err == io.EOF {
			return &tr, nil
		}
		if err != nil {
			return nil, fmt.Errorf("trace %s: transaction %d: %w", tr.Header.Scenario, n, err)
		}
		if len(tx.Stmts) == 0 || tx.Now.IsZero() {
			return nil, fmt.Errorf("trace %s: transaction %d: no statements or no now", tr.Header.Scenario, n)
		}
		tr.Txs = append(tr.Txs, tx)
	}
}

// ReadFile reads a trace from a file (.jsonl or .jsonl.gz).
func ReadFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f)
}

// Write writes a trace as JSON lines.
func Write(w io.Writer, tr *Trace) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tr.Header); err != nil {
		return err
	}
	for i := range tr.Txs {
		if err := enc.Encode(&tr.Txs[i]); err != nil {
			return err
		}
	}
	return nil
}

// Tables returns the tables a transaction's statements write (INSERT INTO,
// UPDATE, DELETE FROM, ALTER TABLE), in first-seen order: enough to find a
// transaction in a trace by what it touched.
func (tx *Tx) Tables() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range tx.Stmts {
		for _, t := range writtenTables(s) {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

func writtenTables(stmt string) []string {
	f := strings.Fields(stmt)
	var out []string
	for i := 0; i+1 < len(f); i++ {
		w := strings.ToUpper(f[i])
		var name string
		switch {
		case (w == "INTO" && i > 0 && strings.EqualFold(f[i-1], "INSERT")) ||
			(w == "FROM" && i > 0 && strings.EqualFold(f[i-1], "DELETE")) ||
			(w == "TABLE" && i > 0 && strings.EqualFold(f[i-1], "ALTER")):
			name = f[i+1]
		case w == "UPDATE" && (i == 0 || !strings.EqualFold(f[i-1], "FOR") && !strings.EqualFold(f[i-1], "DO")):
			name = f[i+1]
		default:
			continue
		}
		if strings.EqualFold(name, "ONLY") && i+2 < len(f) {
			name = f[i+2]
		}
		name = strings.TrimPrefix(name, "public.")
		if j := strings.IndexAny(name, "( "); j >= 0 {
			name = name[:j]
		}
		out = append(out, strings.Trim(name, `"`))
	}
	return out
}
