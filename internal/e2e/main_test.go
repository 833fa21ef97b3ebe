package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{
		Settings: map[string]string{
			// Keepalives every second, so the idle advance (and with it the
			// slot's confirmed_flush_lsn) moves promptly when nothing is in
			// flight.
			"wal_sender_timeout": "'2s'",
		},
	})
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary returns the path of the cdcaudit binary, built once per package
// run. It goes into the shared cluster's directory, which pgtest removes when
// the package's tests end (pgtest.Main exits the process, so TestMain itself
// gets no chance to clean up after the tests).
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(pgtest.Shared(t).DataDir), "e2e-bin")
		if binErr = os.MkdirAll(dir, 0o755); binErr != nil {
			return
		}
		p := filepath.Join(dir, "cdcaudit")
		cmd := exec.Command("go", "build", "-o", p, "github.com/cdcaudit/cdcaudit/cmd/cdcaudit")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = &buildError{err: err, out: string(out)}
			return
		}
		binPath = p
		// The test binary does not import package main, so go test's cache
		// would replay a pass after cmd/cdcaudit changed. It does notice the
		// files a test opens or stats: these.
		srcs, _ := filepath.Glob(filepath.Join("..", "..", "cmd", "cdcaudit", "*.go"))
		for _, src := range srcs {
			os.Stat(src)
		}
	})
	if binErr != nil {
		t.Fatalf("build cdcaudit: %v", binErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }
