package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/applog"
	"github.com/cdcaudit/cdcaudit/sink"
)

func init() {
	commandFlags["logins"] = []string{"data-dir", "login", "ip", "failed", "since", "format", "config"}
}

// loginsStore records the logins of the real Odoo 18 log with the tailer,
// into a real store.
func loginsStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile("../../testdata/odoo18/odoo.log")
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "odoo.log")
	if err := os.WriteFile(logFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := sink.NewWriter(store, sink.WriterOptions{})
	tl := applog.New(applog.Options{Path: logFile, Burst: applog.DefaultBurst, Poll: 10 * time.Millisecond}, store.LoadState)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tl.Run(ctx, func(ctx context.Context, recs []sink.StateRecord) error {
			if err := w.Submit(ctx, sink.Batch{State: recs}); err != nil {
				return err
			}
			return w.Flush(ctx)
		})
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		recs, err := applog.ReadLogins(store.LoadState)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	w.Close()
	store.Close()
	return dir
}

func TestLoginsCommand(t *testing.T) {
	dir := loginsStore(t)
	out, errOut, code := runCLI(t, nil, "logins", "--data-dir", dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 9 || !strings.HasPrefix(lines[0], "TIME (UTC)") {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	if !strings.Contains(lines[6], "2026-12-03 06:54:29.401") || !strings.Contains(lines[6], "failed") ||
		!strings.Contains(lines[6], "bob") || !strings.Contains(lines[6], "198.51.100.99") {
		t.Errorf("the failed login: %q", lines[6])
	}
	out, errOut, code = runCLI(t, nil, "logins", "--data-dir", dir, "--failed", "--format", "json")
	var recs []applog.Record
	if code != exitOK || json.Unmarshal([]byte(out), &recs) != nil || len(recs) != 1 || recs[0].Login.Login != "bob" || recs[0].Key == "" {
		t.Fatalf("--failed --format json: exit %d %s %s", code, out, errOut)
	}
	out, _, _ = runCLI(t, nil, "logins", "--data-dir", dir, "--login", "carol", "--since", "2026-12-03T06:54:27Z", "--format", "json")
	if json.Unmarshal([]byte(out), &recs) != nil || len(recs) != 1 || recs[0].IP != "198.51.100.23" {
		t.Errorf("--login carol --since: %s", out)
	}
	if _, _, code := runCLI(t, nil, "logins", "--data-dir", dir, "--since", "yesterday"); code != exitUsage {
		t.Errorf("a bad --since: exit %d", code)
	}
	empty := t.TempDir()
	if s, err := sink.Open(empty); err == nil {
		s.Close()
	}
	if out, _, code := runCLI(t, nil, "logins", "--data-dir", empty); code != exitOK || !strings.Contains(out, "No logins") {
		t.Errorf("an empty store: %d %q", code, out)
	}
}
