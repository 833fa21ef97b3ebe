package localpg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cdcaudit/cdcaudit/internal/debinstall"
)

// ErrNoServer means no PostgreSQL server binaries were found.
var ErrNoServer = errors.New("no PostgreSQL server binaries found")

// BinDir finds the directory holding initdb and postgres: $CDCAUDIT_PG_BINDIR,
// then `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if d := os.Getenv("CDCAUDIT_PG_BINDIR"); d != "" {
		if hasServer(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w in CDCAUDIT_PG_BINDIR=%s", ErrNoServer, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); hasServer(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	return "", ErrNoServer
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func hasServer(dir string) bool {
	for _, b := range []string{"initdb", "postgres", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return false
		}
	}
	return true
}

// EnsureInstalled returns the server's bin directory, installing Debian's
// packages first when none is found and we are root. Without root it says
// exactly what to install. logf reports progress (may be nil).
func EnsureInstalled(logf func(format string, args ...any)) (string, error) {
	if d, err := BinDir(); err == nil {
		return d, nil
	}
	found := func() bool { _, err := BinDir(); return err == nil }
	if err := debinstall.Install(found, logf, "postgresql", "postgresql-contrib"); err != nil {
		return "", fmt.Errorf("%w: %w (or set CDCAUDIT_PG_BINDIR to a server's bin directory)", ErrNoServer, err)
	}
	return BinDir()
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
