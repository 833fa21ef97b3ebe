package storebench

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The generated trail has the spread the benchmarks rely on, is written
// whole through Append, verifies, and is the same for the same seed.
func TestBuildSpread(t *testing.T) {
	const n = 30_000
	w := Default(n, 7)
	built, err := Build(t.TempDir(), w, 4000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if built.Events != n {
		t.Fatalf("%d events stored, want %d", built.Events, n)
	}

	dir := t.TempDir()
	if _, err := Build(dir, w, 1000, nil); err != nil {
		t.Fatal(err)
	}
	s := openRO(t, dir)
	if _, err := s.Verify(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	users, sessions, tables, ops := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	txs := map[string]int{}
	flagged, keyChanges := 0, 0
	var first, last time.Time
	err = s.Scan(nil, nil, func(_, rec []byte) error {
		r, err := audit.ParseRecord(rec)
		if err != nil {
			return err
		}
		var a struct {
			Login   *string `json:"login"`
			Session *string `json:"session_id"`
		}
		json.Unmarshal(r.Actor, &a)
		if a.Login != nil {
			users[*a.Login]++
		}
		if a.Session != nil {
			sessions[*a.Session]++
		}
		tables[r.Schema+"."+r.Table]++
		ops[r.Op]++
		txs[r.CommitLSN]++
		if bytes.Contains(r.Flags, []byte("orm_bypass")) {
			flagged++
		}
		if r.Op == "update" && bytes.Contains(r.Key, []byte(`"code"`)) && !bytes.Contains(r.Before, r.Key[1:len(r.Key)-1]) {
			keyChanges++
		}
		if first.IsZero() {
			first = r.CommitTime
		}
		last = r.CommitTime
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	maxTx := 0
	for _, c := range txs {
		maxTx = max(maxTx, c)
	}
	days := last.Sub(first).Hours() / 24
	t.Logf("%d users, %d sessions, %d tables, ops %v, %d transactions (largest %d), %d flagged, %d key changes, %.1f days",
		len(users), len(sessions), len(tables), ops, len(txs), maxTx, flagged, keyChanges, days)
	if len(users) < 100 || len(users) > 300 {
		t.Errorf("%d users, want a few hundred", len(users))
	}
	if len(sessions) < 300 {
		t.Errorf("%d sessions", len(sessions))
	}
	if len(tables) != 50 {
		t.Errorf("%d tables, want 50", len(tables))
	}
	if ops["insert"] == 0 || ops["update"] <= ops["insert"] || ops["delete"] == 0 || ops["truncate"] == 0 && n >= 100_000 {
		t.Errorf("ops %v", ops)
	}
	if maxTx > 50 || maxTx < 30 || len(txs) < n/20 {
		t.Errorf("%d transactions, largest %d: want 1–50 events each", len(txs), maxTx)
	}
	if flagged == 0 || keyChanges == 0 {
		t.Errorf("%d flagged, %d key changes", flagged, keyChanges)
	}
	// The rate sets the time axis: 30k events at 60k a day is half a day.
	if days < 0.35 || days > 0.65 {
		t.Errorf("%.2f days of commit times", days)
	}
	// Zipf: the busiest table carries far more than an even share.
	if top := tables["public.mail_message"]; top < 3*n/50 {
		t.Errorf("busiest table %d events", top)
	}
	if tg := built.Targets; len(tg.Sessions) == 0 || tg.TableRecords[0].Records == 0 {
		t.Errorf("targets %+v", tg)
	}

	// The same workload, the same events (but another genesis record).
	var a, b bytes.Buffer
	collect := func(dir string, out *bytes.Buffer) {
		st := openRO(t, dir)
		st.Scan(nil, nil, func(_, rec []byte) error {
			r, _ := audit.ParseRecord(rec)
			out.WriteString(r.ID + r.Table + r.Op + string(r.Key) + string(r.After) + string(r.Actor) + "\n")
			return nil
		})
	}
	d2 := t.TempDir()
	if _, err := Build(d2, w, 777, nil); err != nil {
		t.Fatal(err)
	}
	collect(dir, &a)
	collect(d2, &b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same workload gave other events")
	}
}

func openRO(t *testing.T, dir string) *sink.Store {
	t.Helper()
	s, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
