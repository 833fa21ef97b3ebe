package browsertest

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/chromedp/chromedp"
)

// ScreenshotDir is where Screenshot writes: $CDCAUDIT_SCREENSHOTS when set
// (a relative path is taken from the test's package directory, where
// `go test` runs it), else _screenshots in the test's package directory. The
// leading underscore keeps the go tool out of it and .gitignore lists it, so
// the pictures stay for a person to look at and are never committed by
// accident.
func ScreenshotDir() string {
	if d := os.Getenv("CDCAUDIT_SCREENSHOTS"); d != "" {
		return d
	}
	return "_screenshots"
}

// Screenshot saves the whole page as a PNG named after the test and name
// (TestX-name.png) in ScreenshotDir and returns its path. A failed
// screenshot fails the test: a page that cannot be shown is a finding.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	p := b.screenshot(name)
	if strings.HasPrefix(p, "(") {
		b.t.Fatalf("browsertest: screenshot %s %s", name, p)
	}
	return p
}

// screenshot returns the file's path, or the reason in parentheses.
func (b *Browser) screenshot(name string) string {
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "(not taken: " + err.Error() + ")"
	}
	dir := ScreenshotDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "(not saved: " + err.Error() + ")"
	}
	p := filepath.Join(dir, fileName(b.t.Name())+"-"+fileName(name)+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		return "(not saved: " + err.Error() + ")"
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p
}

// fileName keeps letters, digits, '-' and '.'; anything else becomes '_'.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}
