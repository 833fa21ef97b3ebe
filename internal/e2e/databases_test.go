package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/auth"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sink"
)

// TestManyDatabases runs ONE daemon on two databases of one server
// (config databases): each trail is complete in its own store, with its
// own slot; /metrics shows both sources; status lists both; verify passes
// on each store; each store's sink runner delivers it to one audit table,
// under its source; and when one database's slot is dropped the daemon
// exits 1 naming that source, the other store left whole.
func TestManyDatabases(t *testing.T) {
	a, b, auditDB := newDB(t), newDB(t), newDB(t)
	for _, db := range []testDB{a, b} {
		mustExec(t, connect(t, db.dsn), `CREATE TABLE item (id int PRIMARY KEY, note text)`)
	}
	// a's slot is the default, <slot>_<source>; b names its own.
	slotA, slotB := config.DefaultDatabaseSlot("cdcaudit", a.name), b.slot
	dataDir := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "cdcaudit.yml")
	viewer, _ := access.ParseRole("viewer")
	token, spec, err := auth.NewToken(viewer, "multi", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, "data_dir: %s\nsink_postgres_dsn: %s\napi_tokens: [%q]\ndatabases:\n  - dsn: %s\n  - dsn: %s\n    slot: %s\n",
		dataDir, auditDB.dsn, spec.String(), a.dsn, b.dsn, slotB), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "--config", cfgFile)
	waitSlotActive(t, a.dsn, slotA, 0, d)
	waitSlotActive(t, b.dsn, slotB, 0, d)

	connA, connB := connect(t, a.dsn), connect(t, b.dsn)
	mustExec(t, connA, `INSERT INTO item SELECT g, 'a' FROM generate_series(1, 3) g`)
	mustExec(t, connA, `UPDATE item SET note = 'a2' WHERE id = 1`)
	mustExec(t, connB, `INSERT INTO item SELECT g, 'b' FROM generate_series(1, 5) g`)
	mustExec(t, connB, `DELETE FROM item WHERE id = 5`)
	waitCaughtUp(t, a.dsn, slotA, currentLSN(t, a.dsn), d)
	waitCaughtUp(t, b.dsn, slotB, currentLSN(t, b.dsn), d)

	// One /metrics for both: every cdcaudit series names its source.
	url := metricsURL(d)
	body := scrape(t, url)
	for _, want := range []string{
		`cdcaudit_events_total{op="insert",schema="public",source="` + a.name + `",table="item"} 3`,
		`cdcaudit_events_total{op="update",schema="public",source="` + a.name + `",table="item"} 1`,
		`cdcaudit_events_total{op="insert",schema="public",source="` + b.name + `",table="item"} 5`,
		`cdcaudit_events_total{op="delete",schema="public",source="` + b.name + `",table="item"} 1`,
		`cdcaudit_replication_connected{source="` + a.name + `"} 1`,
		`cdcaudit_replication_connected{source="` + b.name + `"} 1`,
	} {
		if !strings.Contains(body, "\n"+want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^go_goroutines `).FindAllString(body, -1)); n != 1 {
		t.Errorf("go_goroutines appears %d times, want once", n)
	}
	if m := regexp.MustCompile(`(?m)^cdcaudit_[a-z_]+(\{[^}]*\})? `).FindAllStringSubmatch(body, -1); len(m) == 0 {
		t.Error("no cdcaudit series")
	} else {
		for _, s := range m {
			if !strings.Contains(s[1], `source="`) {
				t.Errorf("a series without source: %s", s[0])
			}
		}
	}
	health, err := httpGet(strings.TrimSuffix(url, "/metrics") + "/healthz")
	if err != nil || health != a.name+": ok\n"+b.name+": ok\n" && health != b.name+": ok\n"+a.name+": ok\n" {
		t.Errorf("/healthz: %q %v", health, err)
	}
	// The API serves both sources: name one with ?source=.
	api := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", strings.TrimSuffix(url, "/metrics")+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := api("/api/v1/sources"); code != 200 ||
		body != fmt.Sprintf(`{"sources":[{"name":%q,"database":%q},{"name":%q,"database":%q}]}`+"\n", a.name, a.name, b.name, b.name) {
		t.Errorf("/api/v1/sources: %d %s", code, body)
	}
	if code, body := api("/api/v1/events?table=public.item"); code != 400 || !strings.Contains(body, "several sources") {
		t.Errorf("/api/v1/events without source: %d %s", code, body)
	}
	for _, c := range []struct {
		db   testDB
		want int
	}{{a, 4}, {b, 6}} {
		code, body := api("/api/v1/events?table=public.item&source=" + c.db.name)
		var page struct{ Events []struct{ Database string } }
		if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil || len(page.Events) != c.want || page.Events[0].Database != c.db.name {
			t.Errorf("/api/v1/events?source=%s: %d, %d events, want %d (%v)\n%.500s", c.db.name, code, len(page.Events), c.want, err, body)
		}
	}

	out, errOut, code := runCLI(t, "status", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "source:      "+a.name) || !strings.Contains(out, "source:      "+b.name) ||
		!strings.Contains(out, "slot:        "+slotA+", active") || !strings.Contains(out, "slot:        "+slotB+", active") {
		t.Errorf("status of both sources: exit %d\n%s%s", code, out, errOut)
	}
	// A read command on data_dir names the sources' directories.
	if _, errOut, code := runCLI(t, "export", "--data-dir", dataDir); code != 1 || !strings.Contains(errOut, "holds the stores of several databases") ||
		!strings.Contains(errOut, a.name) || !strings.Contains(errOut, b.name) {
		t.Errorf("export --data-dir data_dir: exit %d %s", code, errOut)
	}
	d.stopClean()

	// Each store holds its own database's trail, and only it.
	dirA, dirB := filepath.Join(dataDir, a.name), filepath.Join(dataDir, b.name)
	for _, s := range []struct {
		db    testDB
		dir   string
		trail string
	}{{a, dirA, "insert 1,insert 2,insert 3,update 1"}, {b, dirB, "insert 1,insert 2,insert 3,insert 4,insert 5,delete 5"}} {
		var trail []string
		for _, e := range readStore(t, s.dir) {
			if e.Database != s.db.name || e.Source != s.db.name {
				t.Errorf("%s's store holds an event of database %s, source %s", s.db.name, e.Database, e.Source)
			}
			id, _ := e.AfterRow.get("id")
			if e.Op == "delete" {
				id, _ = e.KeyRow.get("id")
			}
			trail = append(trail, e.Op+" "+string(id))
		}
		if got := strings.Join(trail, ","); got != s.trail {
			t.Errorf("%s's trail: %s, want %s", s.db.name, got, s.trail)
		}
		verifyOK(t, s.dir, len(strings.Split(s.trail, ",")))
	}

	// Each store's sink runner delivers every record of its store (chain
	// records too) to the one audit table, under the store's source.
	stored := map[string][]string{a.name: storeIDs(t, dirA), b.name: storeIDs(t, dirB)}
	d.start()
	waitSlotActive(t, a.dsn, slotA, 0, d)
	waitSlotActive(t, b.dsn, slotB, 0, d)
	auditConn := connect(t, auditDB.dsn)
	for source, ids := range stored {
		deadline := time.Now().Add(catchUpTimeout)
		for {
			var n int
			err := auditConn.QueryRow(context.Background(), `SELECT count(*) FROM cdcaudit_events WHERE source = $1 AND id = ANY($2)`, source, ids).Scan(&n)
			if err == nil && n == len(ids) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the audit table holds %d of source %s's %d records (%v)", n, source, len(ids), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if out, errOut, code := runCLI(t, "verify", "--postgres", auditDB.dsn); code != 0 || !strings.Contains(out, a.name) || !strings.Contains(out, b.name) {
		t.Errorf("verify --postgres of the two sources: exit %d\n%s%s", code, out, errOut)
	}

	// b's slot dropped while the daemon runs: it exits 1 naming b, after
	// stopping a's pipeline cleanly.
	mustExec(t, connA, `INSERT INTO item VALUES (4, 'a')`)
	waitCaughtUp(t, a.dsn, slotA, currentLSN(t, a.dsn), d)
	dropActiveSlot(t, connB, slotB)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		t.Fatal("the daemon did not stop after one database's slot was dropped")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("the daemon exited %d after a slot was dropped, want 1", code)
	}
	log := d.log()
	if !regexp.MustCompile(`cdcaudit run: source ` + regexp.QuoteMeta(b.name) + `: .*` + regexp.QuoteMeta(slotB)).MatchString(log) {
		t.Errorf("the exit message does not name source %s and its slot:\n%s", b.name, tail(log, 3000))
	}
	verifyOK(t, dirA, 5)
	out, _, code = runCLI(t, "verify", "--data-dir", dirB)
	if code != 3 || !strings.Contains(out, `"op":"slot_lost"`) {
		t.Errorf("verify of %s after its slot was dropped: exit %d, want 3 with the lost slot\n%s", b.name, code, out)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the HTTP server still answers after the daemon exited")
	}
}

// storeIDs lists the ids of every record of a stopped store (chain records
// too), in order.
func storeIDs(t *testing.T, dir string) []string {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ids []string
	if err := st.Records(context.Background(), nil, 0, func(k, _ []byte) error {
		lsn, ord, _ := audit.SplitKey(k)
		ids = append(ids, audit.FormatID(lsn, ord))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}
