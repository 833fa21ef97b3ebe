package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLabelledSeriesExistFromStart: on a fresh registry every labelled
// counter and gauge of cdcaudit already has its series (at 0), so no
// dashboard panel or alert reads "No data" on a healthy system — except
// events_total, whose labels are the tables the stream brings.
func TestLabelledSeriesExistFromStart(t *testing.T) {
	m, _ := newTest()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, mf := range mfs {
		seen[mf.GetName()] = len(mf.GetMetric())
	}
	for _, name := range []string{
		"cdcaudit_skipped_messages_total", "cdcaudit_flagged_events_total", "cdcaudit_api_signins_total",
		"cdcaudit_api_refused_requests_total", "cdcaudit_slot_wal_status", "cdcaudit_snapshot_tables",
		"cdcaudit_sessions_started_total", "cdcaudit_sessions_open_by_browser", "cdcaudit_sessions_open_by_os",
		"cdcaudit_sessions_open_by_device", "cdcaudit_sessions_open_by_country",
	} {
		if seen[name] == 0 {
			t.Errorf("%s has no series at start", name)
		}
	}
	if seen["cdcaudit_events_total"] != 0 {
		t.Errorf("events_total has %d series before any event", seen["cdcaudit_events_total"])
	}
	// Every labelled *_total is either pre-initialised or events_total.
	for _, mf := range mfs {
		name := mf.GetName()
		if strings.HasPrefix(name, "cdcaudit_") && strings.HasSuffix(name, "_total") && name != "cdcaudit_events_total" && len(mf.GetMetric()) == 0 {
			t.Errorf("%s has no series at start", name)
		}
	}
}

func TestFlaggedEvents(t *testing.T) {
	m, _ := newTest()
	m.AddFlagged("orm_bypass", 3)
	m.AddFlagged("orm_bypass", 0)
	m.AddFlagged("", 5)
	m.AddFlagged("something_new", 1)
	want := `
# HELP cdcaudit_flagged_events_total Row events durable in the store that carry a flag, by flag (an event with two flags counts under each): orm_bypass (changed outside the application), schema_migration, truncate_cascade, truncate_restart_identity, direct_db (no application user, while a database session outside the application was open), cdcaudit (made by cdcaudit ending a session). Counted as the store stores them: an event replayed after a reconnect or a crash, already stored, is not counted again.
# TYPE cdcaudit_flagged_events_total counter
cdcaudit_flagged_events_total{flag="cdcaudit"} 0
cdcaudit_flagged_events_total{flag="direct_db"} 0
cdcaudit_flagged_events_total{flag="orm_bypass"} 3
cdcaudit_flagged_events_total{flag="schema_migration"} 0
cdcaudit_flagged_events_total{flag="something_new"} 1
cdcaudit_flagged_events_total{flag="truncate_cascade"} 0
cdcaudit_flagged_events_total{flag="truncate_restart_identity"} 0
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "cdcaudit_flagged_events_total"); err != nil {
		t.Fatal(err)
	}
}

func TestSessionDetail(t *testing.T) {
	m, _ := newTest()
	// Before the tracker is there: the counter at 0, "unknown" at 0.
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(`
# HELP cdcaudit_sessions_open_by_os Application login sessions open now, by os as the session shows it: the 10 most frequent values, the others summed as "other", "unknown" where it is not known.
# TYPE cdcaudit_sessions_open_by_os gauge
cdcaudit_sessions_open_by_os{os="unknown"} 0
# HELP cdcaudit_sessions_started_total Application login sessions the stream opened since cdcaudit started (each login once; those restored from the store at start are not counted).
# TYPE cdcaudit_sessions_started_total counter
cdcaudit_sessions_started_total 0
`), "cdcaudit_sessions_open_by_os", "cdcaudit_sessions_started_total"); err != nil {
		t.Fatal(err)
	}

	// 15 browsers, one session each, and Chrome 131 with 5: the top 10
	// (Chrome 131, then by name) and the other 6 summed.
	browsers := map[string]int{"Chrome 131": 5, "": 2, "other": 1}
	for i := range 15 {
		browsers[fmt.Sprintf("B%02d", i)] = 1
	}
	m.SessionDetailFrom(func() (uint64, map[string]int, map[string]int, map[string]int, map[string]int) {
		return 42, browsers, map[string]int{"Windows 10": 3}, map[string]int{"computer": 3, "mobile (iPhone)": 1}, map[string]int{"DE": 2, "": 0}
	})
	var b strings.Builder
	b.WriteString(`
# HELP cdcaudit_sessions_open_by_browser Application login sessions open now, by browser as the session shows it: the 10 most frequent values, the others summed as "other", "unknown" where it is not known.
# TYPE cdcaudit_sessions_open_by_browser gauge
`)
	for i := range 9 {
		fmt.Fprintf(&b, "cdcaudit_sessions_open_by_browser{browser=\"B%02d\"} 1\n", i)
	}
	b.WriteString(`cdcaudit_sessions_open_by_browser{browser="Chrome 131"} 5
cdcaudit_sessions_open_by_browser{browser="other"} 6
cdcaudit_sessions_open_by_browser{browser="unknown"} 3
# HELP cdcaudit_sessions_open_by_country Application login sessions open now, by country as the session shows it: the 10 most frequent values, the others summed as "other", "unknown" where it is not known.
# TYPE cdcaudit_sessions_open_by_country gauge
cdcaudit_sessions_open_by_country{country="DE"} 2
cdcaudit_sessions_open_by_country{country="unknown"} 0
# HELP cdcaudit_sessions_open_by_device Application login sessions open now, by device as the session shows it: the 10 most frequent values, the others summed as "other", "unknown" where it is not known.
# TYPE cdcaudit_sessions_open_by_device gauge
cdcaudit_sessions_open_by_device{device="computer"} 3
cdcaudit_sessions_open_by_device{device="mobile (iPhone)"} 1
cdcaudit_sessions_open_by_device{device="unknown"} 0
# HELP cdcaudit_sessions_started_total Application login sessions the stream opened since cdcaudit started (each login once; those restored from the store at start are not counted).
# TYPE cdcaudit_sessions_started_total counter
cdcaudit_sessions_started_total 42
`)
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(b.String()),
		"cdcaudit_sessions_open_by_browser", "cdcaudit_sessions_open_by_country", "cdcaudit_sessions_open_by_device", "cdcaudit_sessions_started_total"); err != nil {
		t.Fatal(err)
	}
}
