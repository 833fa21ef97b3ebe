package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// mountTmpfs mounts a tmpfs of size (e.g. "4m") on a new directory and
// unmounts it when the test ends. It skips the test when mounting is not
// allowed (not root, no CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// A full disk under the store is reported as what it is — the store, its
// file, "disk full" — and stops the daemon with exit status 1; it is never
// taken for a lost replication connection, and nothing past what is
// stored is confirmed. With space again, a restart resumes without loss.
func TestDiskFull(t *testing.T) {
	const rows = 20_000
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE filler (id int PRIMARY KEY, pad text)`)
	mnt := mountTmpfs(t, "4m")
	dataDir := mnt + "/store"
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot)
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	// 20,000 events of about 1 KB, in transactions of 1,000: about 20 MB,
	// five times the file system.
	for i := 0; i < rows; i += 1000 {
		mustExec(t, conn, fmt.Sprintf(`INSERT INTO filler SELECT g, repeat(md5(g::text), 28) FROM generate_series(%d, %d) g`, i+1, i+1000))
	}
	select {
	case <-d.done:
	case <-time.After(catchUpTimeout):
		t.Fatal("cdcaudit kept running on a full disk")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("cdcaudit run exited with %d on a full disk, want 1", code)
	}
	log := d.log()
	firstErr := ""
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			firstErr = l
			break
		}
	}
	if !strings.Contains(firstErr, "disk full") || !strings.Contains(firstErr, dataDir+"/cdcaudit.db") {
		t.Errorf("the first warning or error does not say the store's disk is full:\n%s", firstErr)
	}
	if strings.Contains(log, "connection lost") {
		t.Errorf("a full disk was logged as a lost connection")
	}
	if lines := strings.Split(strings.TrimSpace(log), "\n"); !strings.Contains(lines[len(lines)-1], "disk full") {
		t.Errorf("the last line (the exit error) does not say disk full: %s", lines[len(lines)-1])
	}

	// Nothing past the store was confirmed to the server.
	checkpoint := storeCheckpoint(t, dataDir)
	confirmed, err := confirmedFlush(db.dsn, db.slot)
	if err != nil {
		t.Fatal(err)
	}
	if confirmed > checkpoint {
		t.Fatalf("the slot was confirmed to %X, past the store's checkpoint %X", confirmed, checkpoint)
	}
	stored := len(readStore(t, dataDir))
	if stored >= rows {
		t.Fatalf("all %d events fit on the small file system: the disk never filled", stored)
	}

	// Space again: a restart stores the rest, exactly once.
	if out, err := exec.Command("mount", "-o", "remount,size=256m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	d.start()
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()
	seen := map[string]bool{}
	for _, e := range readStore(t, dataDir) {
		if e.Table == "filler" {
			seen[string(e.AfterRow.String())] = true
		}
	}
	if len(seen) != rows {
		t.Fatalf("after the restart the store holds %d distinct rows of %d", len(seen), rows)
	}
	verifyOK(t, dataDir, rows)
	os.RemoveAll(dataDir)
}

// TestLargeValueMemory stores one huge value and measures how much the
// daemon's peak resident memory (VmHWM) grew for it: at most 2.5 times the
// value as the server sends it (text output; bytea's is hex, twice its
// size), over the daemon's own baseline. Each copy of a value (the
// message, the decoded value, the record, the store's page) is released
// before the next is made, so no more than two are ever held.
//
// E2E_BIG_VALUES picks the cases, e.g. "text:50,text:200,bytea:200" (MB);
// the default is text:64.
func TestLargeValueMemory(t *testing.T) {
	cases := os.Getenv("E2E_BIG_VALUES")
	if cases == "" {
		cases = "text:64"
	}
	for _, c := range strings.Split(cases, ",") {
		kind, mb, _ := strings.Cut(c, ":")
		n, err := strconv.Atoi(mb)
		if err != nil || (kind != "text" && kind != "bytea") {
			t.Fatalf("E2E_BIG_VALUES: bad case %q (want text:MB or bytea:MB)", c)
		}
		t.Run(c, func(t *testing.T) { largeValueMemory(t, kind, n<<20) })
	}
}

func largeValueMemory(t *testing.T, kind string, size int) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE blob (id int PRIMARY KEY, t text, b bytea)`)
	dataDir := t.TempDir()
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot)
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	mustExec(t, conn, `INSERT INTO blob VALUES (0, 'small', '\x00')`)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	pid := fmt.Sprint(d.pid())
	base, err := vmHWM(pid)
	if err != nil {
		t.Fatal(err)
	}

	wire := size // bytes of the value's text output on the wire
	switch kind {
	case "text":
		// Lines of 64 characters: every line break is escaped in JSON.
		mustExec(t, conn, `INSERT INTO blob (id, t) VALUES (1, repeat(E'abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0\n', $1::int / 64))`, size)
	case "bytea":
		mustExec(t, conn, `INSERT INTO blob (id, b) VALUES (1, decode(repeat('c3a9', $1::int / 2), 'hex'))`, size)
		wire = 2*size + 2
	}
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	peak, err := vmHWM(pid)
	if err != nil {
		t.Fatal(err)
	}
	d.stopClean()
	grew := peak - base
	t.Logf("%s value of %d MB (%d MB on the wire): VmHWM %d MB before, %d MB after: +%d MB = %.2f× the wire size",
		kind, size>>20, wire>>20, base>>20, peak>>20, grew>>20, float64(grew)/float64(wire))
	// The value is stored whole (and the chain holds).
	largest := 0
	scanRaw(t, dataDir, func(id string, rec []byte) { largest = max(largest, len(rec)) })
	if largest < wire {
		t.Errorf("the largest record has %d bytes, want the whole value (%d bytes on the wire)", largest, wire)
	}
	verifyOK(t, dataDir, 2)
	if limit := int64(wire) * 5 / 2; grew > limit {
		t.Errorf("storing one %s value of %d MB (%d MB on the wire) grew the daemon's peak memory by %d MB, more than %d MB (2.5×)",
			kind, size>>20, wire>>20, grew>>20, limit>>20)
	}
}

// scanRaw calls fn with the id and the record of every stored event, without
// decoding it (a record may be hundreds of megabytes).
func scanRaw(t *testing.T, dir string, fn func(id string, rec []byte)) {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Scan(nil, nil, func(key, rec []byte) error {
		lsn, ord, _ := audit.SplitKey(key)
		fn(audit.FormatID(lsn, ord), rec)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
