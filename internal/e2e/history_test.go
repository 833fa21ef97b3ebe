package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/history"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The history of records changed by a real workload, streamed by the
// pipeline: every event of each record, in order, through a key change
// (DEFAULT and FULL), a delete and re-insert, a truncate, a composite key;
// at each event's commit time the record is that event's row, a
// microsecond earlier the row before it. And `cdcaudit events` says the
// same, and refuses the store while the pipeline holds it.
func TestRecordHistoryFromTheStream(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE item (id int PRIMARY KEY, name text, price numeric);
		CREATE TABLE code_item (code text PRIMARY KEY, n int); ALTER TABLE code_item REPLICA IDENTITY FULL;
		CREATE TABLE pair (a int, b text, v int, PRIMARY KEY (a, b));
		CREATE TABLE doc (id int PRIMARY KEY, body text, n int); ALTER TABLE doc ALTER body SET STORAGE EXTERNAL`)
	dataDir := t.TempDir()
	p := startPipeline(t, db, dataDir)
	waitSlotActive(t, db.dsn, db.slot, 0, p)

	for _, sql := range []string{
		`INSERT INTO item VALUES (1, 'a', 1.50)`,
		`UPDATE item SET name = 'b' WHERE id = 1`,
		`UPDATE item SET price = 2.00 WHERE id = 1`,
		`UPDATE item SET id = 100 WHERE id = 1`, // key change, DEFAULT: before holds the old key
		`INSERT INTO code_item VALUES ('A', 1)`,
		`DELETE FROM item WHERE id = 100`,
		`BEGIN; INSERT INTO item VALUES (2, 'x', 0); UPDATE item SET name = 'y' WHERE id = 2; COMMIT`,
		`INSERT INTO item VALUES (1, 'again', 3)`,
		`UPDATE code_item SET code = 'B' WHERE code = 'A'`, // key change, FULL
		`UPDATE code_item SET n = 2`,
		`TRUNCATE code_item`,
		`INSERT INTO code_item VALUES ('A', 5)`,
		`INSERT INTO pair VALUES (1, 'x', 0), (1, 'y', 0)`,
		`UPDATE pair SET v = 1 WHERE a = 1 AND b = 'x'`,
		// A TOASTed value the updates leave alone: pgoutput does not send it.
		`INSERT INTO doc SELECT 1, string_agg(md5(g::text), ''), 0 FROM generate_series(1, 500) g`,
		`UPDATE doc SET n = 1 WHERE id = 1`,
		`UPDATE doc SET n = 2 WHERE id = 1`,
	} {
		mustExec(t, conn, sql)
	}
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), p)

	// The pipeline holds the store: it reads it for events, which prints
	// what it prints once the pipeline has stopped.
	live, errOut, code := runCLI(t, "events", "--data-dir", dataDir, "--record", "item:1")
	if code != 0 {
		t.Errorf("events on the pipeline's store: exit %d, %q", code, errOut)
	}
	p.stop(t)
	if out, _, _ := runCLI(t, "events", "--data-dir", dataDir, "--record", "item:1"); out != live {
		t.Errorf("events once the pipeline stopped:\n%s\nwhile it ran:\n%s", out, live)
	}

	evs := readStore(t, dataDir)
	store, err := sink.OpenReadOnly(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	// expect picks the events of table with keys among keys (in order), and
	// the truncates of the table among them.
	expect := func(table string, pick func(e *event) bool) []*event {
		var out []*event
		for _, e := range evs {
			if e.Table == table && pick(e) {
				out = append(out, e)
			}
		}
		return out
	}
	keyIs := func(vals ...string) func(e *event) bool {
		return func(e *event) bool {
			for _, v := range vals {
				if string(e.Key) == v {
					return true
				}
			}
			return false
		}
	}
	item1 := expect("item", keyIs(`{"id":1}`, `{"id":100}`))
	item2 := expect("item", keyIs(`{"id":2}`))
	codeA := expect("code_item", func(e *event) bool { return true }) // every event of code_item is record A's
	pairX := expect("pair", keyIs(`{"a":1,"b":"x"}`))
	for name, c := range map[string]struct {
		got  []*event
		want string
	}{
		"item 1": {item1, "insert update update update delete insert"},
		"item 2": {item2, "insert update"},
		"code A": {codeA, "insert update update truncate insert"},
		"pair x": {pairX, "insert update"},
	} {
		var ops []string
		for _, e := range c.got {
			ops = append(ops, e.Op)
		}
		if strings.Join(ops, " ") != c.want {
			t.Fatalf("%s: the store holds %v, want %s (the workload did not stream as expected)", name, ops, c.want)
		}
	}

	for ref, want := range map[string][]*event{
		"item:1": item1, "public.item:2": item2, "code_item:A": codeA, `pair:{"b":"x","a":1}`: pairX,
	} {
		r, err := history.ParseRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		if _, err := history.Record(store, r, func(e *history.Event) error {
			got = append(got, e.ID)
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		var wantIDs []string
		for _, e := range want {
			wantIDs = append(wantIDs, e.ID)
		}
		if strings.Join(got, " ") != strings.Join(wantIDs, " ") {
			t.Errorf("history of %s:\n got %v\nwant %v", ref, got, wantIDs)
		}

		// At each event's commit time: its row (or gone); just before: the
		// row of the event before it (or unknown before the first).
		// (Of the changes of one transaction, the last decides.)
		for i, e := range want {
			if i+1 < len(want) && want[i+1].CommitTime.Equal(e.CommitTime) {
				continue
			}
			im, err := history.At(store, r, e.CommitTime)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, ref, im, e)
			for i > 0 && want[i-1].CommitTime.Equal(e.CommitTime) {
				i--
			}
			im, err = history.At(store, r, e.CommitTime.Add(-time.Microsecond))
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				if im.State != history.Unknown || im.Next == nil || im.Next.ID != want[0].ID {
					t.Errorf("%s before its first event: %s (%s)", ref, im.State, im.Reason())
				}
				continue
			}
			checkImage(t, ref, im, want[i-1])
		}
	}

	// At each update of doc 1, its row holds the large value that the
	// stream left out (unchanged_toast), the insert's; where cdcaudit filled
	// it in itself (a last image of the record), the same.
	docs := expect("doc", keyIs(`{"id":1}`))
	body, _ := docs[0].AfterRow.get("body")
	r, _ := history.ParseRef("doc:1")
	for _, e := range docs[1:] {
		filled, _ := e.AfterRow.get("body")
		if (len(e.Toast) != 1 || e.Toast[0] != "body") && string(filled) != string(body) {
			t.Fatalf("update %s: unchanged_toast %v and no body in after (the workload did not exercise TOAST)", e.ID, e.Toast)
		}
		im, err := history.At(store, r, e.CommitTime)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseRow(im.Row)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := e.AfterRow.get("n")
		if v, _ := got.get("body"); len(body) < 2000 || string(v) != string(body) || im.Missing != nil || strings.Join(got.names(), ",") != "id,body,n" {
			t.Errorf("doc 1 at %s: row has body of %d bytes (want %d), columns %v, missing %v", e.ID, len(v), len(body), got.names(), im.Missing)
		}
		if v, _ := got.get("n"); string(v) != string(n) {
			t.Errorf("doc 1 at %s: n %s, want %s", e.ID, v, n)
		}
	}

	// The command says the same: the row of item 1 as its price changed,
	// gone after its delete.
	priced := item1[2]
	out, errOut, code := runCLI(t, "events", "--data-dir", dataDir, "--record", "public.item:1", "--at",
		string(audit.AppendTime(nil, priced.CommitTime)), "--format", "json")
	var got struct {
		State string          `json:"state"`
		Row   json.RawMessage `json:"row"`
		Event struct{ ID string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || got.State != "exists" || got.Event.ID != priced.ID ||
		compact(got.Row) != string(priced.After) {
		t.Errorf("events --at the price change: exit %d, %v, %s\n%s", code, err, errOut, out)
	}
	out, _, code = runCLI(t, "events", "--data-dir", dataDir, "--record", "item:1", "--at",
		string(audit.AppendTime(nil, item1[4].CommitTime)), "--format", "jsonl")
	if code != 4 || !strings.Contains(out, `"state":"gone"`) || !strings.Contains(out, item1[4].ID) {
		t.Errorf("events --at the delete: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "events", "--data-dir", dataDir, "--record", "code_item:A", "--format", "jsonl")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != len(codeA) || lines[3] != codeA[3].Raw {
		t.Errorf("events code_item:A: exit %d\n%s", code, out)
	}
}

// checkImage requires im to be the state event e left.
func checkImage(t *testing.T, ref string, im *history.Image, e *event) {
	t.Helper()
	what := fmt.Sprintf("%s at %s", ref, audit.AppendTime(nil, im.At))
	if im.Event == nil || im.Event.ID != e.ID {
		t.Errorf("%s: %s (%s), want it from event %s", what, im.State, im.Reason(), e.ID)
		return
	}
	switch e.Op {
	case "delete", "truncate":
		if im.State != history.Gone || im.Row != nil {
			t.Errorf("%s: %s %s, want gone", what, im.State, im.Row)
		}
	default:
		if im.State != history.Exists || string(im.Row) != string(e.After) {
			t.Errorf("%s: %s %s, want the row %s", what, im.State, im.Row, e.After)
		}
	}
}

// compact undoes the indentation of --format json.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
