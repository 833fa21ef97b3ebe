package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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
