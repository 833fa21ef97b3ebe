package e2e

import (
	"bytes"
	"context"
	binenc "encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"
)

// The store under a DBA's operations: gaps and lost slots recorded in the
// chain, hot backups, damaged files, and tampering that only anchors kept
// outside the store can reveal.

// storeWith writes data as the store file of a new data directory.
func storeWith(t *testing.T, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, sink.FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyStoreDir copies a stopped daemon's store (and instance key).
func copyStoreDir(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{sink.FileName, "instance.key"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// boltUsed is how many bytes of a bbolt file its newest valid meta page
// says are in use (the rest is room to grow).
func boltUsed(t *testing.T, data []byte) int {
	t.Helper()
	le := binenc.LittleEndian
	best, bestTx := 0, uint64(0)
	for _, off := range []int{0, int(le.Uint32(data[16+8:]))} {
		m := data[off+16:]
		if le.Uint32(m) != 0xED0CDAED {
			continue
		}
		if tx := le.Uint64(m[48:]); best == 0 || tx > bestTx {
			best, bestTx = int(le.Uint64(m[40:]))*int(le.Uint32(m[8:])), tx
		}
	}
	if best == 0 {
		t.Fatal("no valid meta page")
	}
	return best
}

// noCrash fails when a command died instead of failing cleanly.
func noCrash(t *testing.T, what, stderr string, code int) {
	t.Helper()
	for _, s := range []string{"panic:", "goroutine ", "SIGBUS", "SIGSEGV", "fatal error:"} {
		if strings.Contains(stderr, s) {
			t.Fatalf("%s crashed (exit %d):\n%s", what, code, tail(stderr, 1500))
		}
	}
	if code != 0 && code != 1 {
		t.Fatalf("%s: exit %d, want 0 or 1; stderr %s", what, code, tail(stderr, 500))
	}
}

// TestDamagedStore: truncated files and flipped bytes in a real store make
// verify, export and sessions fail cleanly (exit 1, a message naming the
// damage), never print a line that is not a stored record, and never
// crash; run refuses a damaged store.
func TestDamagedStore(t *testing.T) {
	r := startOdoo(t)
	r.ok(r.sim.Login(r.ctx, odoosim.Alice))
	a := r.newSim().NewDevice(odoosim.Alice, odoosim.Device{IP: "198.51.100.10", Platform: "linux", Browser: "chrome"})
	b := r.newSim().NewDevice(odoosim.Bob, odoosim.Device{IP: "198.51.100.20", Platform: "windows", Browser: "firefox"})
	for i := range 20 {
		r.request(a, func(e *odoosim.Env) error {
			_, err := e.CreatePartner(fmt.Sprintf("Partner %d", i), fmt.Sprintf("p%d@example.com", i), "Lyon", "FR")
			return err
		})
		r.request(b, func(e *odoosim.Env) error {
			return e.WritePartner(int64(10+i%5), odoosim.Vals{"phone": fmt.Sprintf("+1 555 %04d", i)})
		})
	}
	r.stop()

	whole, err := os.ReadFile(filepath.Join(r.dataDir, sink.FileName))
	if err != nil {
		t.Fatal(err)
	}
	used := boltUsed(t, whole)
	good := whole[:used] // the room to grow beyond is not part of the store
	goodDir := storeWith(t, good)
	wantLines := exportLines(t, goodDir)
	known := map[string]bool{}
	for _, l := range wantLines {
		known[l] = true
	}
	if out, _, code := runCLI(t, "sessions", "--data-dir", goodDir, "--format", "json"); code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, "firefox") {
		t.Fatalf("sessions of the intact store: exit %d\n%s", code, out)
	}
	t.Logf("store: %d events, %d bytes in use (file %d bytes)", len(wantLines), used, len(whole))

	type outcome struct{ detected, clean int }
	stats := map[string]*outcome{"verify": {}, "export": {}, "sessions": {}}
	check := func(what string, data []byte, mustFail bool) {
		t.Helper()
		dir := storeWith(t, data)
		for _, cmd := range []string{"verify", "export", "sessions"} {
			args := []string{cmd, "--data-dir", dir}
			if cmd == "sessions" {
				args = append(args, "--format", "json")
			}
			out, errOut, code := runCLI(t, args...)
			name := fmt.Sprintf("%s on %s", cmd, what)
			noCrash(t, name, errOut, code)
			if mustFail && code != 1 {
				t.Errorf("%s: exit %d, want 1\nstdout %s", name, code, tail(out, 300))
			}
			if code == 1 {
				stats[cmd].detected++
				if !strings.Contains(errOut, "damaged") && !(cmd == "verify" && strings.Contains(out, "FAIL:")) {
					t.Errorf("%s: exit 1 without naming the damage: stderr %q stdout %q", name, errOut, tail(out, 300))
				}
			} else {
				stats[cmd].clean++
			}
			switch cmd {
			case "export":
				// Never a line that is not a stored record: each one decodes
				// and is one of the intact store's.
				for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
					if l != "" && (!json.Valid([]byte(l)) || !known[l]) {
						t.Errorf("%s printed a line that is not a stored record (exit %d): %q", name, code, tail(l, 200))
					}
				}
			case "sessions":
				if code == 0 && !json.Valid([]byte(out)) {
					t.Errorf("%s: exit 0 with output that is not JSON: %q", name, tail(out, 300))
				}
			case "verify":
				if code == 0 && !strings.Contains(out, "OK:") {
					t.Errorf("%s: exit 0 without OK: %q", name, out)
				}
			}
		}
	}

	// Truncated anywhere before its end: always detected.
	cuts := map[int]bool{}
	for _, n := range []int{0, 100, 4096, 8192, used / 4, used / 2, used * 3 / 4, used - 4096, used - 1} {
		if n >= 0 && n < used {
			cuts[n] = true
		}
	}
	for n := range cuts {
		check(fmt.Sprintf("the store truncated to %d of %d bytes", n, used), good[:n], true)
	}
	// run refuses a truncated store before it touches the server.
	for _, n := range []int{0, used / 2} {
		dir := storeWith(t, good[:n])
		_, errOut, code := runCLI(t, "run", "--dsn", r.db.dsn, "--data-dir", dir, "--slot", r.db.slot+"_x", "--http-addr", "127.0.0.1:0")
		noCrash(t, "run on a truncated store", errOut, code)
		if code != 1 || !strings.Contains(errOut, "damaged") || !strings.Contains(errOut, "truncated") {
			t.Errorf("run on the store truncated to %d bytes: exit %d, stderr %q; want exit 1 naming the truncation", n, code, tail(errOut, 500))
		}
	}

	// One byte flipped at offsets all over the file: detected, or harmless
	// (free pages, a stale meta page), never a crash or a wrong line.
	const flips = 160
	for i := range flips {
		off := i*used/flips + (i*37)%61
		if i < 8 { // the meta pages' fields
			off = []int{16 + 8, 16 + 40, 16 + 56, 4096 + 16 + 40, 4096 + 16 + 48, 4096 + 16 + 20, 16 + 24, 4096 + 16 + 32}[i]
		}
		off %= used
		d := bytes.Clone(good)
		d[off] ^= 0xFF
		check(fmt.Sprintf("the store with byte %d flipped", off), d, false)
	}
	for cmd, o := range stats {
		t.Logf("%-8s damage detected in %d cases, output intact in %d", cmd, o.detected, o.clean)
		if o.detected < len(cuts) {
			t.Errorf("%s detected damage in only %d cases", cmd, o.detected)
		}
	}
}

// TestBackupWhileDaemonWrites: `cdcaudit backup` copies a store that a
// daemon holds and writes under load; every copy opens and verifies, and
// its chain is a prefix of the store's.
func TestBackupWhileDaemonWrites(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE load (id bigserial PRIMARY KEY, payload text)`)
	dataDir := t.TempDir()
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot)
	waitSlotActive(t, db.dsn, db.slot, 0, d)

	mustExec(t, conn, `INSERT INTO load (payload) VALUES ('first')`) // so every copy holds events
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	loadConn := connect(t, db.dsn)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := loadConn.Exec(context.Background(), `INSERT INTO load (payload) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 200) g`); err != nil {
				t.Errorf("load: %v", err)
				return
			}
		}
	}()
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)

	backups := t.TempDir()
	var copies []string
	for i := range 3 {
		out := filepath.Join(backups, fmt.Sprintf("copy%d.db", i))
		stdout, errOut, code := runCLI(t, "backup", "--data-dir", dataDir, "--out", out)
		if code != 0 || !strings.Contains(stdout, "made by the running daemon") {
			t.Fatalf("backup while the daemon writes: exit %d\nstdout %s\nstderr %s", code, stdout, errOut)
		}
		t.Logf("backup %d: %s", i, strings.ReplaceAll(stdout, "\n", " | "))
		if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("backup file %s: %v %v, want mode 0600", out, fi.Mode(), err)
		}
		copies = append(copies, out)
		time.Sleep(300 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()

	// Without a daemon, backup opens the store itself.
	offline := filepath.Join(backups, "offline.db")
	if stdout, errOut, code := runCLI(t, "backup", "--data-dir", dataDir, "--out", offline); code != 0 || !strings.Contains(stdout, "made by this process") {
		t.Fatalf("backup of a stopped store: exit %d\n%s%s", code, stdout, errOut)
	}
	copies = append(copies, offline)

	final := map[string]string{} // event id → stored record
	for _, e := range readStore(t, dataDir) {
		final[e.ID] = e.Raw
	}
	head := regexp.MustCompile(`head record: (\S+)\nhead hash:   ([0-9a-f]{64})`)
	for i, c := range copies {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		dir := storeWith(t, b)
		out, errOut, code := runCLI(t, "verify", "--data-dir", dir)
		if code != 0 || !strings.Contains(out, "events verified") {
			t.Fatalf("verify of backup %s: exit %d\n%s%s", c, code, out, errOut)
		}
		m := head.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("verify of backup %s names no head: %s", c, out)
		}
		rec, ok := final[m[1]]
		if !ok || !strings.HasSuffix(rec, `"hash":"`+m[2]+`"}`) {
			t.Errorf("backup %d's head %s (%s) is not in the daemon's final chain: the copy is not a prefix of the store", i, m[1], m[2])
		}
	}
	if n := len(final); n < 1000 {
		t.Errorf("only %d events under load", n)
	}
}

// attack edits a stopped store's file as someone holding it would: its
// records (in key order: return the record to keep, another to replace
// it, nil to remove it), then its meta.
type attackEdit struct {
	records func(k, rec []byte) ([]byte, error)
	meta    func(meta *bolt.Bucket) error
}

func attack(t *testing.T, dir string, a attackEdit) {
	t.Helper()
	if a.records != nil {
		if err := sink.EditRecords(dir, a.records); err != nil {
			t.Fatal(err)
		}
	}
	db, err := bolt.Open(filepath.Join(dir, sink.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return a.meta(tx.Bucket([]byte("meta"))) }); err != nil {
		t.Fatal(err)
	}
}

// storeKeys returns the keys of a stopped store's records and their hashes.
func storeKeys(t *testing.T, dir string) (keys [][]byte, hashes []audit.Hash) {
	t.Helper()
	if err := sink.EditRecords(dir, func(k, rec []byte) ([]byte, error) {
		_, _, h, _ := audit.Check(rec)
		keys, hashes = append(keys, bytes.Clone(k)), append(hashes, h)
		return rec, nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys, hashes
}

// reseal recomputes a record's hash after prev, as an attacker rewriting
// the chain would.
func reseal(rec []byte, prev audit.Hash) ([]byte, audit.Hash) {
	return audit.Seal(nil, rec[:len(rec)-audit.SealedLen(0)], prev)
}

// TestTamperingContradictsAnchors: a store rewritten with its chain
// recomputed, cut short with its meta fixed, or wiped with its checkpoint
// kept is consistent in itself, but contradicts the anchors the daemon
// signed and published outside it.
func TestTamperingContradictsAnchors(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric)`)
	dataDir := t.TempDir()
	anchors := filepath.Join(t.TempDir(), "anchors")
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot, "--anchor-file", anchors)
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	for i := range 10 {
		mustExec(t, conn, `INSERT INTO acct VALUES ($1, $2, 100)`, i, fmt.Sprintf("owner %d", i))
	}
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean() // anchors the head at the first commit and at the stop
	d.start()
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	for i := range 10 {
		mustExec(t, conn, `UPDATE acct SET balance = balance + $2 WHERE id = $1`, i, i)
	}
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()

	anchorFile, _ := os.ReadFile(anchors)
	if n := bytes.Count(anchorFile, []byte("cdcaudit-anchor.v1.")); n < 3 {
		t.Fatalf("the anchor file holds %d anchors, want at least 3:\n%s", n, anchorFile)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "instance.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("instance key: %v %v, want mode 0600", fi.Mode(), err)
	}
	// The intact store agrees with its anchors, from the file and from the log.
	for _, src := range []string{anchors, d.logPath} {
		out, errOut, code := runCLI(t, "verify", "--data-dir", dataDir, "--anchor", src)
		if code != 0 || !strings.Contains(out, "agree with the store") {
			t.Fatalf("verify --anchor %s on the intact store: exit %d\n%s%s", src, code, out, errOut)
		}
	}

	attacks := []struct {
		name       string
		edit       func(dir string) attackEdit
		plainFails bool   // whether verify alone sees it
		reason     string // in verify --anchor's message
	}{
		{"an edit with the chain recomputed", func(string) attackEdit {
			var prev audit.Hash
			edited := false
			return attackEdit{records: func(k, rec []byte) ([]byte, error) {
				if !edited && bytes.Contains(rec, []byte(`"owner":"owner 3"`)) {
					rec = bytes.Replace(rec, []byte(`"balance":"100"`), []byte(`"balance":"999"`), 1)
					edited = true
				}
				if edited {
					rec, prev = reseal(rec, prev)
					return rec, nil
				}
				_, _, prev, _ = audit.Check(rec)
				return rec, nil
			}, meta: func(meta *bolt.Bucket) error {
				if !edited {
					return fmt.Errorf("no record to edit")
				}
				return meta.Put([]byte("head_hash"), prev[:])
			}}
		}, false, "rewritten"},
		{"the tail deleted and meta fixed", func(dir string) attackEdit {
			keys, hashes := storeKeys(t, dir)
			cut := keys[len(keys)-4]
			return attackEdit{records: func(k, rec []byte) ([]byte, error) {
				if bytes.Compare(k, cut) >= 0 {
					return nil, nil
				}
				return rec, nil
			}, meta: func(meta *bolt.Bucket) error {
				count := binenc.BigEndian.Uint64(meta.Get([]byte("count")))
				meta.Put([]byte("head_key"), keys[len(keys)-5])
				meta.Put([]byte("head_hash"), hashes[len(keys)-5][:])
				return meta.Put([]byte("count"), binenc.BigEndian.AppendUint64(nil, count-4))
			}}
		}, false, "removed"},
		{"a wipe keeping the checkpoint", func(string) attackEdit {
			return attackEdit{records: func(k, rec []byte) ([]byte, error) { return nil, nil }, meta: func(meta *bolt.Bucket) error {
				meta.Delete([]byte("head_key"))
				meta.Delete([]byte("head_hash"))
				return meta.Put([]byte("count"), binenc.BigEndian.AppendUint64(nil, 0))
			}}
		}, true, "genesis"},
	}
	attacks = append(attacks, struct {
		name       string
		edit       func(dir string) attackEdit
		plainFails bool
		reason     string
	}{"a new store in its place", nil, false, "another chain"})
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			dir := copyStoreDir(t, dataDir)
			if a.edit != nil {
				attack(t, dir, a.edit(dir))
			} else {
				// Same instance key, a fresh chain: consistent, and empty.
				os.Remove(filepath.Join(dir, sink.FileName))
				s, err := sink.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
			}
			out, errOut, code := runCLI(t, "verify", "--data-dir", dir)
			t.Logf("verify alone: exit %d: %s", code, strings.TrimSpace(out+errOut))
			if a.plainFails != (code == 1) {
				t.Errorf("verify without anchors: exit %d, want failure %v", code, a.plainFails)
			}
			out, errOut, code = runCLI(t, "verify", "--data-dir", dir, "--anchor", anchors)
			t.Logf("verify --anchor: exit %d: %s", code, strings.TrimSpace(out+errOut))
			if code != 1 || !strings.Contains(out, "FAIL:") || !strings.Contains(out, a.reason) {
				t.Errorf("verify --anchor after %s: exit %d\nstdout %s\nstderr %s\nwant exit 1 and a FAIL naming %q", a.name, code, out, errOut, a.reason)
			}
		})
	}
}

// TestGapAndLostSlotInTheChain: a gap accepted with --accept-gap and a slot
// dropped while the daemon runs are recorded in the chain; verify lists
// them (exit 3) instead of calling the trail intact.
func TestGapAndLostSlotInTheChain(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE g (id int PRIMARY KEY)`)
	dataDir := t.TempDir()
	args := []string{"--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot}
	d := startDaemon(t, args...)
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	mustExec(t, conn, `INSERT INTO g VALUES (1)`)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()
	checkpoint := storeCheckpoint(t, dataDir)

	// The slot moves on while cdcaudit is stopped: row 2 is never received.
	mustExec(t, conn, `INSERT INTO g VALUES (2)`)
	// (The walsender of the stopped daemon may still hold the slot a moment.)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err := conn.Exec(context.Background(), `SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())`, db.slot)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("advance the slot: %v", err)
		}
	}
	ahead, err := confirmedFlush(db.dsn, db.slot)
	if err != nil {
		t.Fatal(err)
	}
	d.args = append(d.args, "--accept-gap")
	d.start()
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	mustExec(t, conn, `INSERT INTO g VALUES (3)`)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()
	d.args = d.args[:len(d.args)-1]

	out, errOut, code := runCLI(t, "verify", "--data-dir", dataDir)
	gap := `"op":"gap",`
	if code != 3 || !strings.Contains(out, "INCOMPLETE") || !strings.Contains(out, gap) ||
		!strings.Contains(out, `"from":"`+audit.FormatLSN(checkpoint)+`","to":"`+audit.FormatLSN(ahead)+`"`) {
		t.Fatalf("verify after a gap accepted with --accept-gap (checkpoint %s, slot at %s): exit %d\n%s%s\nwant exit 3 listing the gap",
			audit.FormatLSN(checkpoint), audit.FormatLSN(ahead), code, out, errOut)
	}

	// The slot is dropped while the daemon runs: it stops with an error,
	// after recording the loss.
	d.start()
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	mustExec(t, conn, `INSERT INTO g VALUES (4)`)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	dropActiveSlot(t, conn, db.slot)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		t.Fatal("the daemon did not stop after its slot was dropped")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("the daemon exited %d after its slot was dropped, want 1", code)
	}
	out, errOut, code = runCLI(t, "verify", "--data-dir", dataDir)
	if code != 3 || !strings.Contains(out, `"op":"slot_lost"`) || !strings.Contains(out, `"slot_status":"dropped"`) || !strings.Contains(out, gap) {
		t.Fatalf("verify after the slot was dropped while running: exit %d\n%s%s\nwant exit 3 listing the gap and the lost slot", code, out, errOut)
	}
	// Row events are unchanged: the export holds rows 1, 3 and 4 only.
	var ids []string
	for _, l := range exportLines(t, dataDir) {
		var e struct{ After struct{ ID int } }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprint(e.After.ID))
	}
	if strings.Join(ids, ",") != "1,3,4" {
		t.Errorf("exported rows %v, want 1,3,4 (chain records are not row events)", ids)
	}
}

// dropActiveSlot ends the slot's walsender and drops the slot before the
// daemon reconnects (it waits at least 250ms); if it wins the race, it
// tries again.
func dropActiveSlot(t *testing.T, conn *pgx.Conn, slot string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		mustExec(t, conn, `SELECT pg_terminate_backend(active_pid, 10000) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
		_, err := conn.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, slot)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop the slot: %v", err)
		}
	}
}
