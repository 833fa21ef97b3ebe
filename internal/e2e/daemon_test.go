package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/jackc/pgx/v5"
)

// TestLargeTransaction: 500k rows inserted in ONE transaction are all
// stored, in order, while the daemon's memory stays bounded.
func TestLargeTransaction(t *testing.T) {
	const rows = 500_000
	const rssLimit = 400 << 20
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE big (id int PRIMARY KEY, pad text)`)
	dataDir := t.TempDir()
	ownHWM, _ := vmHWM("self")
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot)
	waitSlotActive(t, db.dsn, db.slot, 0, d)

	// Rows in ascending id order, so the n-th change is id n. The pad
	// makes each event's encoding about 1 KB (see the size check below).
	mustExec(t, conn, fmt.Sprintf(`INSERT INTO big SELECT i, repeat(md5(i::text), 14) FROM generate_series(1, %d) i`, rows))
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	// All the work is done: the peak of the daemon's own memory is its
	// VmHWM now (the final checkpoint on SIGTERM writes nothing more).
	hwm, err := vmHWM(fmt.Sprint(d.pid()))
	if err != nil {
		t.Fatal(err)
	}
	ps := d.stopClean()

	// Check every event cheaply (a full decode of 500k events takes long):
	// its key, xid, table, op and after.id; decode some of them fully.
	st, err := sink.OpenReadOnly(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var (
		n                   int
		first               *event
		bodyBytes, recBytes int64
		fixed               []byte
	)
	err = st.Scan(nil, nil, func(key, rec []byte) error {
		n++
		recBytes += int64(len(rec))
		bodyBytes += int64(len(rec) - audit.SealedLen(0))
		commit, ord, _ := audit.SplitKey(key)
		if first == nil || n%10_000 == 0 || n == rows {
			e, err := decodeEvent(rec)
			if err != nil {
				return err
			}
			if first == nil {
				first = e
				fixed = fmt.Appendf(nil, `,"xid":%d,"commit_time":%q,"database":%q,"source":%q,"schema":"public","table":"big","model":null,"op":"insert","key":{"id":`,
					e.XID, e.CommitTime.Format("2006-01-02T15:04:05.000000Z"), db.name, db.name) // the default source
			}
			pad := fmt.Sprintf("%x", md5.Sum([]byte(fmt.Sprint(n))))
			if want := fmt.Sprintf(`{"id":%d,"pad":"%s"}`, n, strings.Repeat(pad, 14)); e.AfterRow.String() != want {
				return fmt.Errorf("event %s: after = %s, want %s", e.ID, tail(e.AfterRow.String(), 100), tail(want, 100))
			}
		}
		if commit != first.commitLSN || ord != uint32(n) {
			return fmt.Errorf("event %d is %s, want ordinal %d of the transaction at %s", n, audit.FormatID(commit, ord), n, first.CommitLSN)
		}
		if !bytes.Contains(rec, fixed) || !bytes.Contains(rec, fmt.Appendf(nil, `"after":{"id":%d,"pad":"`, n)) {
			return fmt.Errorf("event %d is not the insert of id %d in xid %d: %s", n, n, first.XID, tail(string(rec), 300))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != rows {
		t.Errorf("the store holds %d events, want %d", n, rows)
	}

	// Peak RSS. rusage's ru_maxrss of a child is not its own peak alone:
	// Go starts children with clone(CLONE_VM|CLONE_VFORK), so until its
	// exec the child runs in this test process's address space, and
	// exec_mmap folds that address space's high-water mark into the
	// child's maxrss. After a test that read a big store (bbolt maps it),
	// ru_maxrss reports this process's peak. /proc/PID/status VmHWM is the
	// high-water mark of the daemon's own address space: it is what is
	// checked; ru_maxrss is reported next to it.
	maxrss := ps.SysUsage().(*syscall.Rusage).Maxrss << 10 // Linux reports KiB
	rss := hwm
	t.Logf("%d events in one transaction, %.0f MiB of stored records; peak RSS of cdcaudit run: %.1f MiB (VmHWM); "+
		"ru_maxrss after SIGTERM %.1f MiB (this test process's own VmHWM when it started the daemon: %.1f MiB)",
		n, float64(recBytes)/(1<<20), mib(rss), mib(maxrss), mib(ownHWM))
	// The encoded events of this one transaction — what the pipeline hands
	// to the store, before sealing — add up to more than the limit on
	// their own (checked, so that the bound means something); the decoded
	// events behind them would take more still. A daemon that held the
	// transaction in memory until its commit could not stay under it.
	if bodyBytes <= rssLimit {
		t.Errorf("the encoded events total only %d MiB: make the rows wider, or the RSS limit proves nothing", bodyBytes>>20)
	}
	if rss > rssLimit {
		t.Errorf("peak RSS of cdcaudit run %.1f MiB exceeds %d MiB", mib(rss), rssLimit>>20)
	}
	if maxrss > rssLimit && maxrss > ownHWM {
		// ru_maxrss above what the parent contributed is the child's own.
		t.Errorf("ru_maxrss of cdcaudit run %.1f MiB exceeds %d MiB", mib(maxrss), rssLimit>>20)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// vmHWM returns the peak resident set size of a process ("self" or a pid)
// from /proc/PID/status, in bytes.
func vmHWM(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%s/status", pid)
}

// TestIdleSlotAdvance: with --tables naming one table, heavy writes to
// another table must not make the slot hold WAL: the idle advance confirms
// past them, and nothing of the table out of scope is stored (its inserts
// reach cdcaudit through the FOR ALL TABLES insert publication and are
// filtered in the stream).
func TestIdleSlotAdvance(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE audited (id int PRIMARY KEY, v text); CREATE TABLE noise (id int, pad text)`)
	dataDir := t.TempDir()
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot, "--tables", "public.audited")
	waitSlotActive(t, db.dsn, db.slot, 0, d)

	var pubTables []string
	rows, err := conn.Query(context.Background(), `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'cdcaudit_changes'`)
	if err != nil {
		t.Fatal(err)
	}
	if pubTables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if strings.Join(pubTables, ",") != "public.audited" {
		t.Fatalf("the changes publication holds %v, want [public.audited]", pubTables)
	}

	mustExec(t, conn, `INSERT INTO audited VALUES (1, 'audited')`)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	start, _ := confirmedFlush(db.dsn, db.slot)
	mustExec(t, conn, `INSERT INTO noise SELECT i, md5(i::text) FROM generate_series(1, 50000) i`)
	for i := range 20 {
		mustExec(t, conn, fmt.Sprintf(`UPDATE noise SET pad = pad || 'x' WHERE id %% 20 = %d`, i))
	}
	target := currentLSN(t, db.dsn)
	waitCaughtUp(t, db.dsn, db.slot, target, d)
	t.Logf("slot confirmed from %s past %s, the WAL position after the unpublished writes", audit.FormatLSN(start), audit.FormatLSN(target))
	d.stopClean()

	checkEvents(t, readStore(t, dataDir), []want{
		{table: "audited", op: "insert", key: `{"id":1}`, before: "null", after: `{"id":1,"v":"audited"}`, changed: `["id","v"]`},
	})
	// The advance is the store's checkpoint, not only a status message:
	// a restart resumes past the noise.
	if cp := storeCheckpoint(t, dataDir); cp < target {
		t.Errorf("store checkpoint %s is before %s", audit.FormatLSN(cp), audit.FormatLSN(target))
	}
}

// TestStoreTooling: export (JSON Lines and CSV, filters) and verify through
// the binary, tampering detected, and the same answers while a daemon
// holds the store (it reads it for them).
func TestStoreTooling(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE w1 (id int PRIMARY KEY, s text, j jsonb); CREATE TABLE w2 (id int PRIMARY KEY, s text)`)
	dataDir := t.TempDir()
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot)
	waitSlotActive(t, db.dsn, db.slot, 0, d)

	for _, sql := range []string{
		`INSERT INTO w1 VALUES (1, E'comma, "double" quotes, and a\nnewline', '{"a": "x,\"y\"\n"}'), (2, 'plain', NULL)`,
		`INSERT INTO w2 VALUES (1, 'a,b'), (2, '"')`,
		`UPDATE w1 SET s = s || ', more' WHERE id = 1`,
		`DELETE FROM w2 WHERE id = 2`,
		`UPDATE w2 SET s = E'x\r\ny,"z"' WHERE id = 1`,
		`DELETE FROM w1 WHERE id = 2`,
	} {
		mustExec(t, conn, sql)
	}
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)

	// The store is the daemon's while it runs: export and verify ask it
	// to read it for them (over its socket), and print what they print
	// once it has stopped.
	live := map[string]string{}
	for _, args := range [][]string{
		{"export", "--data-dir", dataDir, "--format", "jsonl"},
		{"verify", "--data-dir", dataDir},
	} {
		out, errOut, code := runCLI(t, args...)
		if code != 0 {
			t.Errorf("cdcaudit %s while the daemon (pid %d) runs: exit %d, stderr %q", args[0], d.pid(), code, errOut)
		}
		live[args[0]] = out
	}
	d.stopClean()
	if out, _, _ := runCLI(t, "export", "--data-dir", dataDir, "--format", "jsonl"); out != live["export"] {
		t.Errorf("export once the daemon stopped:\n%s\nwhile it ran:\n%s", out, live["export"])
	}
	if out, _, _ := runCLI(t, "verify", "--data-dir", dataDir); out != live["verify"] {
		t.Errorf("verify once the daemon stopped:\n%s\nwhile it ran:\n%s", out, live["verify"])
	}

	evs := readStore(t, dataDir)
	if len(evs) != 8 {
		t.Fatalf("the store holds %d events, want 8", len(evs))
	}
	// JSON Lines: the stored records, verbatim, in order.
	jsonl := exportLines(t, dataDir)
	if len(jsonl) != len(evs) {
		t.Fatalf("export --format jsonl gives %d lines, want %d", len(jsonl), len(evs))
	}
	for i, e := range evs {
		if jsonl[i] != e.Raw {
			t.Errorf("jsonl line %d differs from the stored record:\n%s\n%s", i+1, jsonl[i], e.Raw)
		}
	}

	// CSV, read back with encoding/csv, gives the same JSON.
	out, errOut, code := runCLI(t, "export", "--data-dir", dataDir, "--format", "csv")
	if code != 0 {
		t.Fatalf("export --format csv: exit %d: %s", code, errOut)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("the CSV does not parse: %v", err)
	}
	header := "id,lsn,commit_lsn,xid,commit_time,database,schema,table,model,op,key,before,after,changed,unchanged_toast,redacted,actor,flags,prev_hash,hash,before_source,source"
	if len(recs) == 0 || strings.Join(recs[0], ",") != header {
		t.Fatalf("CSV header %v, want %s", recs[:min(1, len(recs))], header)
	}
	if len(recs)-1 != len(jsonl) {
		t.Fatalf("CSV has %d rows, want %d", len(recs)-1, len(jsonl))
	}
	for i, r := range recs[1:] {
		if got := csvToJSON(r); got != jsonl[i] {
			t.Errorf("CSV row %d as JSON:\n%s\nwant\n%s", i+1, got, jsonl[i])
		}
	}
	// --out writes the same, atomically.
	outFile := filepath.Join(t.TempDir(), "events.csv")
	if _, errOut, code := runCLI(t, "export", "--data-dir", dataDir, "--format", "csv", "--out", outFile); code != 0 {
		t.Fatalf("export --out: exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(outFile); err != nil || string(b) != out {
		t.Errorf("export --out %s wrote %d bytes (%v), want the %d bytes of standard output", outFile, len(b), err, len(out))
	}

	// Filters.
	for _, f := range []struct {
		args []string
		keep func(e *event) bool
	}{
		{[]string{"--table", "w2"}, func(e *event) bool { return e.Table == "w2" }},
		{[]string{"--table", "public.w1"}, func(e *event) bool { return e.Table == "w1" }},
		{[]string{"--op", "delete"}, func(e *event) bool { return e.Op == "delete" }},
		{[]string{"--op", "insert,update"}, func(e *event) bool { return e.Op != "delete" }},
		{[]string{"--table", "w1", "--op", "update"}, func(e *event) bool { return e.Table == "w1" && e.Op == "update" }},
		{[]string{"--table", "nosuch"}, func(e *event) bool { return false }},
		{[]string{"--since", evs[2].CommitTime.Format(time.RFC3339Nano), "--until", evs[6].CommitTime.Format(time.RFC3339Nano)},
			func(e *event) bool {
				return !e.CommitTime.Before(evs[2].CommitTime) && e.CommitTime.Before(evs[6].CommitTime)
			}},
		{[]string{"--since", evs[5].CommitTime.Format(time.RFC3339Nano), "--op", "delete"},
			func(e *event) bool { return !e.CommitTime.Before(evs[5].CommitTime) && e.Op == "delete" }},
	} {
		var want []string
		for _, e := range evs {
			if f.keep(e) {
				want = append(want, e.Raw)
			}
		}
		got := exportLines(t, dataDir, f.args...)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("export %v: %d events, want %d:\n%s", f.args, len(got), len(want), strings.Join(got, "\n"))
		}
	}

	verifyOK(t, dataDir, changeCount(evs))

	// One byte of one record changed: verify fails and names the event.
	victim := evs[4]
	key := audit.MakeKey(victim.commitLSN, victim.ordinal)
	err = sink.EditRecords(dataDir, func(k, rec []byte) ([]byte, error) {
		if !bytes.Equal(k, key[:]) {
			return rec, nil
		}
		rec = bytes.Clone(rec)
		i := bytes.Index(rec, []byte(`"after":{"id":1,"s":"comma`))
		if i < 0 {
			return nil, fmt.Errorf("event %s is not the expected one: %s", victim.ID, rec)
		}
		i += len(`"after":{"id":1,"s":"`)
		rec[i] = 'X'
		return rec, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "verify", "--data-dir", dataDir)
	if code != 1 || !strings.Contains(out+errOut, victim.ID) {
		t.Errorf("verify after altering event %s: exit %d, stdout %q, stderr %q; want exit 1 naming the event", victim.ID, code, out, errOut)
	}
}

// exportLines runs export --format jsonl with extra args and returns its lines.
func exportLines(t *testing.T, dataDir string, args ...string) []string {
	t.Helper()
	out, errOut, code := runCLI(t, append([]string{"export", "--data-dir", dataDir, "--format", "jsonl"}, args...)...)
	if code != 0 {
		t.Fatalf("export %v: exit %d: %s", args, code, errOut)
	}
	if out == "" {
		return nil
	}
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("export %v: output does not end with a newline", args)
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// csvToJSON rebuilds the canonical JSON record from a CSV row.
func csvToJSON(r []string) string {
	if len(r) != 22 {
		return fmt.Sprintf("<%d columns>", len(r))
	}
	str := func(s string) string { return string(audit.AppendString(nil, s)) }
	optional := func(name, v string) string {
		if v == "" {
			return ""
		}
		return `,"` + name + `":` + str(v)
	}
	beforeSource, source := optional("before_source", r[20]), optional("source", r[21])
	model := "null"
	if r[8] != "" {
		model = str(r[8])
	}
	return `{"id":` + str(r[0]) + `,"lsn":` + str(r[1]) + `,"commit_lsn":` + str(r[2]) + `,"xid":` + r[3] +
		`,"commit_time":` + str(r[4]) + `,"database":` + str(r[5]) + source + `,"schema":` + str(r[6]) + `,"table":` + str(r[7]) +
		`,"model":` + model + `,"op":` + str(r[9]) + `,"key":` + r[10] + `,"before":` + r[11] + beforeSource + `,"after":` + r[12] +
		`,"changed":` + r[13] + `,"unchanged_toast":` + r[14] + `,"redacted":` + r[15] + `,"actor":` + r[16] +
		`,"flags":` + r[17] + `,"prev_hash":` + str(r[18]) + `,"hash":` + str(r[19]) + `}`
}
