package sink

import (
	"context"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

// A store's source: recorded with the identity, adopted by a store made
// before sources, and never changed.
func TestClaimSource(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimSource("erp_a"); err != nil || s.Source() != "" {
		t.Fatalf("a new store: %v, source %q", err, s.Source())
	}
	if _, ok, _ := s.Identity(); ok {
		t.Fatal("claiming a source recorded an identity in a new store")
	}

	// Made before sources: adopts the configured one, keeping the rest.
	old := Identity{SystemID: "7301", Database: "erp", Slot: "cdcaudit"}
	if err := s.SetIdentity(old); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSource("erp_a"); err != nil || s.Source() != "" {
		t.Fatalf("checked: %v, source %q (checking records nothing)", err, s.Source())
	}
	if err := s.ClaimSource("erp_a"); err != nil {
		t.Fatal(err)
	}
	id, ok, err := s.Identity()
	if old.Source = "erp_a"; !ok || err != nil || id != old || s.Source() != "erp_a" {
		t.Fatalf("adopted: %+v %v %v, source %q", id, ok, err, s.Source())
	}
	if err := s.ClaimSource("erp_a"); err != nil {
		t.Fatalf("its own source: %v", err)
	}

	want := "the store in " + dir + " belongs to source erp_a, not erp_b: a store's source never changes (use --source erp_a, or a new --data-dir)"
	for _, claim := range []func(string) error{s.CheckSource, s.ClaimSource} {
		if err := claim("erp_b"); err == nil || err.Error() != want {
			t.Fatalf("another source:\n got %v\nwant %s", err, want)
		}
	}
	if s.Source() != "erp_a" {
		t.Fatalf("refused, yet the source is now %q", s.Source())
	}

	// It survives reopening.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenReadOnly(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Source() != "erp_a" {
		t.Fatalf("reopened: source %q", s.Source())
	}
}

// Events stored before the source member existed and events with it share
// one chain: both verify, and both are found by the store's queries.
func TestEventsWithAndWithoutSourceVerify(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mustAppend(t, s, txBatch(0x100, 2)) // as stored before sources
	sourced := Batch{Checkpoint: 0x208}
	for ord := uint32(1); ord <= 2; ord++ {
		e := &audit.Event{LSN: 0x1f0, CommitLSN: 0x200, Ordinal: ord, XID: 9, CommitTime: t0,
			Database: "odoo", Source: "erp_a", Schema: "public", Table: "sale_order", Op: audit.OpInsert,
			Key: audit.Row{{Name: "id", Value: []byte("7")}}, After: audit.Row{{Name: "id", Value: []byte("7")}}}
		sourced.Events = append(sourced.Events, Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
	}
	mustAppend(t, s, sourced)
	res, err := s.Verify(context.Background(), nil)
	if err != nil || res.Events != 4 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	var sources []string
	if _, err := s.Query(context.Background(), Query{Tables: []string{"public.sale_order"}}, func(_, rec []byte) error {
		r, err := audit.ParseRecord(rec)
		sources = append(sources, r.Source)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(sources, ",") != ",,erp_a,erp_a" {
		t.Fatalf("queried sources %q", sources)
	}
}
