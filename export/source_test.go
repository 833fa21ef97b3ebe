package export

import (
	"bytes"
	"encoding/csv"
	"slices"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The source member has its CSV column (the last, so the others keep
// their places), empty for an event stored before sources; every row
// gives back its record byte for byte, with or without a source.
func TestCSVSourceColumn(t *testing.T) {
	s, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b sink.Batch
	for i, source := range []string{"", "erp_a", "erp.b-2"} {
		commit := uint64(i+1) << 8
		e := &audit.Event{LSN: commit - 0x10, CommitLSN: commit, Ordinal: 1, XID: 700, CommitTime: t0.Add(time.Duration(i) * time.Minute),
			Database: "odoo", Source: source, Schema: "public", Table: "res_partner", Op: audit.OpInsert,
			Key: audit.Row{{Name: "id", Value: []byte("1")}}, After: audit.Row{{Name: "id", Value: []byte("1")}}}
		b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
		b.Checkpoint = commit + 8
	}
	if _, err := s.Append([]sink.Batch{b}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Write(&buf, s, sink.Query{}, "csv"); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := slices.Index(Columns, "source")
	if col != len(Columns)-1 || rows[0][col] != "source" || len(rows) != 4 {
		t.Fatalf("header %v, %d rows", rows[0], len(rows))
	}
	var got []string
	i := 1
	if err := s.Scan(nil, nil, func(_, rec []byte) error {
		got = append(got, rows[i][col])
		back, err := RecordOfRow(rows[i])
		if err != nil || !bytes.Equal(back, rec) {
			t.Errorf("row %d gives back\n%s (%v)\nnot\n%s", i, back, err, rec)
		}
		if _, _, _, err := audit.Check(back); err != nil {
			t.Error(err)
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"", "erp_a", "erp.b-2"}) {
		t.Fatalf("source column %q", got)
	}
}
