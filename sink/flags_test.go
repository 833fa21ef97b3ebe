package sink

import (
	"maps"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

// flagged is ev with flags in its terms, as the pipeline hands it over.
func flagged(commit uint64, ord uint32, flags ...string) Encoded {
	e := ev(commit, ord)
	e.Terms = &audit.Terms{Schema: "public", Table: "sale_order", Op: audit.OpUpdate, Flags: flags}
	return e
}

// Result.Flags counts the flags of the events an append stored, not of the
// duplicates a replay brings again (metrics: flagged_events_total).
func TestAppendCountsStoredFlags(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	first := Batch{Events: []Encoded{flagged(0x100, 1, "orm_bypass"), flagged(0x100, 2), flagged(0x100, 3, "orm_bypass", "schema_migration")}, Checkpoint: 0x108}
	if r := mustAppend(t, s, first); !maps.Equal(r.Flags, map[string]int{"orm_bypass": 2, "schema_migration": 1}) {
		t.Fatalf("flags %v", r.Flags)
	}
	// Replayed, and its replay now made without a flag: nothing counted
	// again; the new event counts.
	replay := Batch{Events: []Encoded{flagged(0x100, 1), flagged(0x100, 2), flagged(0x100, 3), flagged(0x200, 1, "orm_bypass")}, Checkpoint: 0x208}
	if r := mustAppend(t, s, replay); r.Duplicates != 3 || !maps.Equal(r.Flags, map[string]int{"orm_bypass": 1}) {
		t.Fatalf("replay: %+v", r)
	}
	if r := mustAppend(t, s, Batch{Events: []Encoded{flagged(0x300, 1)}, Checkpoint: 0x308}); r.Flags != nil {
		t.Fatalf("no flags: %v", r.Flags)
	}
}
