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
	"syscall"
)

// ErrNoServer means no PostgreSQL server binaries were found.
var ErrNoServer = errors.New("no PostgreSQL server binaries found")

// installHint is what a user without root must run.
const installHint = "install Debian's PostgreSQL server packages as root: apt-get update && apt-get install -y postgresql postgresql-contrib"

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
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w; %s", ErrNoServer, installHint)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("%w and apt-get is not available; install the PostgreSQL server (initdb, postgres) and set CDCAUDIT_PG_BINDIR", ErrNoServer)
	}
	// Several processes (test binaries, a demo) may get here at once: one
	// installs, the others wait.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "cdcaudit-pg-install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if d, err := BinDir(); err == nil {
		return d, nil
	}
	if logf != nil {
		logf("PostgreSQL server not found: installing Debian's postgresql packages (apt-get)…")
	}
	for _, args := range [][]string{
		{"update"},
		{"install", "-y", "--no-install-recommends", "postgresql", "postgresql-contrib"},
	} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get %s failed: %v\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
	}
	return BinDir()
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
