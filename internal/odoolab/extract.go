package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/odootrace"
)

// detection is written into every trace header.
const detection = "PostgreSQL jsonlog with log_statement=all, grouped by session_id: an explicit " +
	"transaction runs from BEGIN to COMMIT/ROLLBACK; kept when it ends with COMMIT, no unrecovered " +
	"ERROR (one not followed by ROLLBACK TO SAVEPOINT) and a txid on the COMMIT line (PostgreSQL " +
	"assigns one only to a transaction that writes). A statement outside BEGIN (psql's autocommit) " +
	"is kept when it is INSERT/UPDATE/DELETE/DDL and no ERROR follows it. Order: the COMMIT's log line."

// logLine is the part of a PostgreSQL jsonlog record the extractor reads.
type logLine struct {
	Timestamp string `json:"timestamp"`
	DB        string `json:"dbname"`
	Session   string `json:"session_id"`
	Txid      uint64 `json:"txid"`
	Severity  string `json:"error_severity"`
	Message   string `json:"message"`
	App       string `json:"application_name"`
}

func (l *logLine) time() time.Time {
	t, _ := time.Parse("2006-01-02 15:04:05.000 MST", l.Timestamp)
	return t.UTC()
}

type openTx struct {
	explicit bool
	begin    time.Time
	app      string
	stmts    []string
	failed   []int
	aborted  bool
}

type committed struct {
	seq int // log line of the commit
	tx  odootrace.Tx
}

// extractTxs returns the committed writing transactions of db in commit order.
func extractTxs(path, db string) ([]committed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	open := map[string]*openTx{}
	// A statement run outside BEGIN is decided by the next line of its
	// session: an ERROR drops it.
	var out []committed
	finishImplicit := func(sess string, ok bool, seq int) {
		tx := open[sess]
		if tx == nil || tx.explicit {
			return
		}
		delete(open, sess)
		if ok && writes(tx.stmts[0]) {
			out = append(out, committed{seq, odootrace.Tx{Backend: sess, App: tx.app, Now: odootrace.Timestamp{Time: tx.begin}, Commit: odootrace.Timestamp{Time: tx.begin}, Stmts: tx.stmts}})
		}
	}
	for n := 0; sc.Scan(); n++ {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n+1, err)
		}
		if l.DB != db || l.App == "pg_dump" || l.Session == "" {
			continue
		}
		tx := open[l.Session]
		if l.Severity == "ERROR" || l.Severity == "FATAL" {
			if tx != nil && tx.explicit {
				tx.failed = append(tx.failed, len(tx.stmts)-1)
				tx.aborted = true
			}
			finishImplicit(l.Session, false, n)
			continue
		}
		sql, ok := strings.CutPrefix(l.Message, "statement: ")
		if !ok {
			continue
		}
		finishImplicit(l.Session, true, n)
		tx = open[l.Session]
		word := strings.ToUpper(firstWord(sql))
		switch {
		case word == "BEGIN" || word == "START":
			open[l.Session] = &openTx{explicit: true, begin: l.time(), app: l.App}
		case tx == nil:
			open[l.Session] = &openTx{begin: l.time(), app: l.App, stmts: []string{sql}}
		case word == "COMMIT" || word == "END":
			delete(open, l.Session)
			if !tx.aborted && l.Txid != 0 {
				now, exact := txNow(tx)
				out = append(out, committed{n, odootrace.Tx{
					Backend: l.Session, App: tx.app, Xid: l.Txid, Now: odootrace.Timestamp{Time: now}, NowExact: exact,
					Commit: odootrace.Timestamp{Time: l.time()}, Stmts: tx.stmts, Failed: tx.failed,
				}})
			}
		case word == "ROLLBACK" && !strings.Contains(strings.ToUpper(sql), " TO "):
			delete(open, l.Session)
		default:
			if word == "ROLLBACK" {
				tx.aborted = false // ROLLBACK TO SAVEPOINT recovers from the error before it
			}
			tx.stmts = append(tx.stmts, sql)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for sess := range open {
		finishImplicit(sess, true, 1<<62)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out, nil
}

func firstWord(sql string) string {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return ""
	}
	return strings.TrimRight(f[0], ";")
}

func writes(sql string) bool {
	switch strings.ToUpper(firstWord(sql)) {
	case "INSERT", "UPDATE", "DELETE", "ALTER", "CREATE", "DROP", "TRUNCATE", "COPY", "WITH":
		return true
	}
	return false
}

var tsLit = regexp.MustCompile(`'(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}\.\d{6})'`)

// txNow recovers the transaction's now(): Odoo writes it as create_date /
// write_date literals (cr.now()), and PostgreSQL starts the transaction's
// clock just before it logs BEGIN, so it is the most frequent microsecond
// literal within 2 ms of BEGIN's log time. Without one, BEGIN's log time.
func txNow(tx *openTx) (time.Time, bool) {
	count := map[time.Time]int{}
	for _, s := range tx.stmts {
		for _, m := range tsLit.FindAllStringSubmatch(s, -1) {
			t, err := time.Parse("2006-01-02 15:04:05.000000", m[1]+" "+m[2])
			if err == nil && t.Sub(tx.begin).Abs() <= 2*time.Millisecond {
				count[t]++
			}
		}
	}
	var best time.Time
	for t, c := range count {
		if c > count[best] || c == count[best] && t.Before(best) {
			best = t
		}
	}
	if best.IsZero() {
		return tx.begin, false
	}
	return best, true
}

func extractCmd(args []string) error {
	fs := flag.NewFlagSet("extract", flag.ExitOnError)
	pglog := fs.String("pglog", "/work/odoo-lab/pg/log/pg.json", "PostgreSQL jsonlog of the recording (root can read it)")
	odooLog := fs.String("odoolog", "/work/odoo-lab/home/odoo.log", "Odoo's log file")
	run := fs.String("run", "/work/odoo-lab/run", "the drive command's output directory")
	out := fs.String("out", "testdata/odoo18", "where traces/, sessions/ and odoo.log go")
	fs.Parse(args)
	var marks []mark
	b, err := os.ReadFile(filepath.Join(*run, "marks.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &marks); err != nil {
		return err
	}
	txs, err := extractTxs(*pglog, "erp")
	if err != nil {
		return err
	}
	// Transactions before the first scenario are the server's own start.
	marks = append([]mark{{"serve", time.Time{}}}, marks...)
	for _, dir := range []string{"traces", "sessions"} {
		if err := os.MkdirAll(filepath.Join(*out, dir), 0o755); err != nil {
			return err
		}
	}
	for i, m := range marks[:len(marks)-1] {
		end := marks[i+1].Start
		tr := &odootrace.Trace{Header: odootrace.Header{
			Scenario: m.Scenario, Seq: i, Odoo: "18.0",
			Source:   "vanilla Odoo 18.0 (root commit 504b0670 of Disassembling-Odoo/core), base+contacts+sale_management, driven over JSON-RPC by internal/odoolab",
			TimeBase: m.Start, Detection: detection,
		}}
		for _, c := range txs {
			if !c.tx.Commit.Before(m.Start) && c.tx.Commit.Before(end) {
				tr.Txs = append(tr.Txs, c.tx)
			}
		}
		if m.Scenario == "serve" {
			if len(tr.Txs) == 0 {
				continue
			}
			tr.Header.TimeBase = tr.Txs[0].Commit.Time
		}
		if err := writeTrace(filepath.Join(*out, "traces", m.Scenario), tr); err != nil {
			return err
		}
		fmt.Printf("%-10s %4d transactions\n", m.Scenario, len(tr.Txs))
		if l, err := os.ReadFile(filepath.Join(*run, "sessions-"+m.Scenario+".txt")); err == nil {
			if err := os.WriteFile(filepath.Join(*out, "sessions", m.Scenario+".txt"), l, 0o644); err != nil {
				return err
			}
		}
	}
	return writeOdooLog(*odooLog, filepath.Join(*out, "odoo.log"), marks)
}

// writeTrace writes name.jsonl, or name.jsonl.gz when it is big.
func writeTrace(name string, tr *odootrace.Trace) error {
	var buf bytes.Buffer
	if err := odootrace.Write(&buf, tr); err != nil {
		return err
	}
	os.Remove(name + ".jsonl")
	os.Remove(name + ".jsonl.gz")
	if buf.Len() < 256<<10 {
		return os.WriteFile(name+".jsonl", buf.Bytes(), 0o644)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(buf.Bytes())
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(name+".jsonl.gz", gz.Bytes(), 0o644)
}

// The lines of Odoo's log that say who logged in, failed, changed a
// password or revoked a device.
var odooLogLine = regexp.MustCompile(`Login successful|Login failed|Password change for|revokes devices|logout|Logout`)

func writeOdooLog(in, out string, marks []mark) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var w strings.Builder
	w.WriteString("# Excerpt of Odoo 18.0's log (odoo-bin --logfile) during the recording: logins, failed logins,\n# password changes, revocations. Headings name the scenario (testdata/odoo18/traces).\n")
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		if !odooLogLine.MatchString(line) || len(line) < 23 {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05,000", line[:23])
		if err != nil {
			continue
		}
		if t.Before(marks[1].Start) {
			continue // before the first scenario: an earlier run's lines, or the server's start
		}
		sc := ""
		for _, m := range marks {
			if !t.Before(m.Start) {
				sc = m.Scenario
			}
		}
		if sc != cur {
			fmt.Fprintf(&w, "## %s\n", sc)
			cur = sc
		}
		w.WriteString(line + "\n")
	}
	return os.WriteFile(out, []byte(w.String()), 0o644)
}
