package browsertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/cdcaudit/cdcaudit/internal/debinstall"
)

// errNoChromium means no Chromium binary was found.
var errNoChromium = errors.New("no Chromium found")

// defaultChromium is where Debian's chromium package puts its launcher.
const defaultChromium = "/usr/bin/chromium"

// packages are what ensureChromium installs: a font too, so screenshots
// show letters.
var packages = []string{"chromium", "fonts-dejavu-core"}

// findChromium looks at $CDCAUDIT_CHROMIUM, then /usr/bin/chromium, then
// `chromium` on PATH.
func findChromium() (string, error) {
	if p := os.Getenv("CDCAUDIT_CHROMIUM"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%w at CDCAUDIT_CHROMIUM=%s", errNoChromium, p)
	}
	if isExecutable(defaultChromium) {
		return defaultChromium, nil
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", errNoChromium
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// ensureChromium returns Chromium's path, installing Debian's package first
// when none is found, as internal/localpg does for PostgreSQL. An error
// wrapping debinstall.ErrCannotInstall says what a person must run.
func ensureChromium(logf func(format string, args ...any)) (string, error) {
	if p, err := findChromium(); err == nil || os.Getenv("CDCAUDIT_CHROMIUM") != "" {
		return p, err
	}
	found := func() bool { _, err := findChromium(); return err == nil }
	if err := debinstall.Install(found, logf, packages...); err != nil {
		return "", fmt.Errorf("%w: %w (or set CDCAUDIT_CHROMIUM to a Chromium binary)", errNoChromium, err)
	}
	return findChromium()
}
