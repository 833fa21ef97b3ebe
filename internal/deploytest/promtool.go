package deploytest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"

	"github.com/cdcaudit/cdcaudit/internal/debinstall"
)

var (
	promtoolOnce sync.Once
	promtoolPath string
	promtoolErr  error
)

// findPromtool looks for promtool at $CDCAUDIT_PROMTOOL, then on PATH.
func findPromtool() (string, error) {
	if p := os.Getenv("CDCAUDIT_PROMTOOL"); p != "" {
		return p, nil
	}
	return exec.LookPath("promtool")
}

// Promtool returns promtool's path, installing Debian's prometheus package
// (which ships it) when it is missing and this process may. skip is true
// when it cannot be had here and the caller should skip rather than fail:
// cannot install (not root, no apt-get), outside CI.
func Promtool(logf func(format string, args ...any)) (path string, skip bool, err error) {
	promtoolOnce.Do(func() {
		if promtoolPath, promtoolErr = findPromtool(); promtoolErr == nil {
			return
		}
		found := func() bool { _, err := findPromtool(); return err == nil }
		if err := debinstall.Install(found, logf, "prometheus"); err != nil {
			promtoolErr = fmt.Errorf("promtool: %w (or set CDCAUDIT_PROMTOOL to a promtool binary)", err)
			return
		}
		promtoolPath, promtoolErr = findPromtool()
	})
	if promtoolErr != nil {
		return "", skips(promtoolErr), promtoolErr
	}
	return promtoolPath, false, nil
}

// skips says whether a test without promtool is skipped rather than failed:
// when it cannot be installed here, outside CI.
func skips(err error) bool {
	return errors.Is(err, debinstall.ErrCannotInstall) && os.Getenv("CI") == ""
}
