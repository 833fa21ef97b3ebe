// Package debinstall installs Debian packages the test harnesses and the demo
// need (PostgreSQL, Chromium) when they are missing: apt-get as root,
// without recommended packages, one process at a time. Without root or
// apt-get it says exactly what to run.
package debinstall

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrCannotInstall means this process cannot install packages (not root, or
// no apt-get); the error says what a person must run instead.
var ErrCannotInstall = errors.New("cannot install Debian packages here")

// Command is the exact shell command that installs packages.
func Command(packages ...string) string {
	return "apt-get update && apt-get install -y --no-install-recommends " + strings.Join(packages, " ")
}

// Install installs packages with apt-get unless found reports, once this
// process holds the install lock, that another process installed them
// meanwhile. logf reports progress (may be nil).
func Install(found func() bool, logf func(format string, args ...any), packages ...string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root; as root run: %s", ErrCannotInstall, Command(packages...))
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%w: apt-get is not available; install the equivalent of Debian's %s", ErrCannotInstall, strings.Join(packages, ", "))
	}
	// Several processes (test binaries, a demo) may get here at once: one
	// installs, the others wait.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "cdcaudit-apt-install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if found() {
		return nil
	}
	if logf != nil {
		logf("installing Debian's %s (apt-get)…", strings.Join(packages, ", "))
	}
	for _, args := range [][]string{
		{"update"},
		append([]string{"install", "-y", "--no-install-recommends"}, packages...),
	} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s failed: %v\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
