// Package browsertest drives Debian's headless Chromium from Go tests
// through chromedp. Each test gets its own browser (fresh profile: no
// cookies, no storage shared between tests) that records every network
// request the page makes, its console errors and uncaught exceptions, and
// the files it downloads. Screenshots go where a person can look at them
// after `go test` (see ScreenshotDir).
//
// Chromium is found at $CDCAUDIT_CHROMIUM, /usr/bin/chromium or `chromium`
// on PATH; when missing it is installed with apt-get as root, as
// internal/localpg installs PostgreSQL. Where it cannot be installed (not
// root, no apt-get) the test is skipped with the exact command to run —
// except when $CI is set: there a browser test that does not run proves
// nothing, so it fails.
//
// Tests only: nothing the binary runs imports it.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/cdcaudit/cdcaudit/internal/debinstall"
)

// ActionTimeout bounds one Run, Get or WaitDownload: generous, so that only
// a page that never gets there fails, long before `go test`'s own timeout.
const ActionTimeout = 90 * time.Second

// Viewport is a screen size the console must be usable on.
type Viewport struct {
	Width, Height int64
	Mobile        bool // emulate a phone: mobile meta viewport, touch
}

var (
	// Laptop is the small laptop screen of the issue.
	Laptop = Viewport{Width: 1366, Height: 768}
	// Phone is a common phone width.
	Phone = Viewport{Width: 390, Height: 844, Mobile: true}
)

// Browser is one headless Chromium with one tab, for one test.
type Browser struct {
	t         testing.TB
	ctx       context.Context
	downloads string

	mu        sync.Mutex
	requests  []string
	problems  []string
	suggested map[string]string // download GUID → suggested file name
	finished  []string          // GUIDs of completed downloads, in order
	taken     int               // finished downloads WaitDownload returned
	changed   chan struct{}     // closed and replaced when a download ends
}

var (
	chromiumOnce sync.Once
	chromiumPath string
	chromiumErr  error
)

// New starts a browser for t at the Laptop viewport; it is closed at
// cleanup. Downloads are allowed into a fresh temporary directory
// (Downloads).
func New(t testing.TB) *Browser {
	t.Helper()
	chromiumOnce.Do(func() {
		chromiumPath, chromiumErr = ensureChromium(func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "browsertest: "+format+"\n", args...)
		})
	})
	if chromiumErr != nil {
		if skips(chromiumErr) {
			t.Skipf("browsertest: %v", chromiumErr)
		}
		t.Fatalf("browsertest: %v", chromiumErr)
	}
	b := &Browser{
		t:         t,
		downloads: t.TempDir(),
		suggested: map[string]string{},
		changed:   make(chan struct{}),
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(Laptop.Width), int(Laptop.Height)),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox.
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(b.onTabEvent))
	t.Cleanup(func() {
		if t.Failed() {
			if p := b.Problems(); len(p) > 0 {
				t.Logf("browsertest: the page's console errors:\n  %s", strings.Join(p, "\n  "))
			}
		}
		cancel()
		cancelAlloc()
	})
	b.ctx = ctx
	// The first Run starts the browser; it must have no timeout (chromedp
	// ties the browser's life to that context).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browsertest: start %s: %v", chromiumPath, err)
	}
	if err := chromedp.ListenBrowser(ctx, b.onBrowserEvent); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		// allowAndName saves under the download's GUID; WaitDownload
		// renames it to its suggested name once complete.
		Behavior:      cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName,
		DownloadPath:  b.downloads,
		EventsEnabled: new(true),
	}); err != nil {
		t.Fatalf("browsertest: allow downloads: %v", err)
	}
	b.SetViewport(Laptop)
	return b
}

// skips says whether a test without Chromium is skipped rather than
// failed: when it cannot be installed here, outside CI.
func skips(err error) bool {
	return errors.Is(err, debinstall.ErrCannotInstall) && os.Getenv("CI") == ""
}

// Context is the tab's chromedp context, for chromedp calls this package
// does not wrap. Derive a timeout from it for long waits (see
// chromedp.Run on why the context itself has none).
func (b *Browser) Context() context.Context { return b.ctx }

// Run runs the actions in the tab, in order, each Run bounded by
// ActionTimeout. On an error it saves a screenshot named "failure" and
// fails the test.
func (b *Browser) Run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(err)
	}
}

// Get runs one action that returns a value (chromedp.Text, Evaluate…) and
// returns it; like Run it fails the test on an error.
func Get[T any](b *Browser, action chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, ActionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		b.fail(err)
	}
	return v
}

func (b *Browser) fail(err error) {
	b.t.Helper()
	loc := ""
	if u, lerr := chromedp.Run(b.ctx, chromedp.Location()); lerr == nil {
		loc = " at " + u
	}
	shot := b.screenshot("failure")
	b.t.Fatalf("browsertest: %v%s (screenshot %s)", err, loc, shot)
}

// SetViewport sizes the page as on v's screen.
func (b *Browser) SetViewport(v Viewport) {
	b.t.Helper()
	var opts []chromedp.EmulateViewportOption
	if v.Mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	b.Run(chromedp.EmulateViewport(v.Width, v.Height, opts...))
}

// onTabEvent runs in the tab's message loop: quick, no commands.
func (b *Browser) onTabEvent(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if ev.Request != nil {
			b.mu.Lock()
			b.requests = append(b.requests, ev.Request.URL)
			b.mu.Unlock()
		}
		return
	case *runtime.EventExceptionThrown:
		problem = "uncaught: " + exceptionText(ev.ExceptionDetails)
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		problem = "console." + string(ev.Type) + ": " + argsText(ev.Args)
	case *cdplog.EventEntryAdded:
		// The browser's own errors: CSP refusals, failed loads.
		if ev.Entry == nil || ev.Entry.Level != cdplog.EntryLevelError {
			return
		}
		problem = string(ev.Entry.Source) + ": " + ev.Entry.Text
		if ev.Entry.URL != "" {
			problem += " (" + ev.Entry.URL + ")"
		}
	default:
		return
	}
	b.mu.Lock()
	b.problems = append(b.problems, problem)
	b.mu.Unlock()
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	s := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		s += " " + d.Exception.Description
	}
	if d.URL != "" {
		s += fmt.Sprintf(" (%s:%d)", d.URL, d.LineNumber+1)
	}
	return s
}

func argsText(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case a == nil:
		case len(a.Value) > 0:
			parts = append(parts, strings.Trim(string(a.Value), `"`))
		case a.Description != "":
			parts = append(parts, a.Description)
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

// Requests returns the URL of every request the page made so far, in order:
// documents, scripts, styles, images, fetches, event streams, downloads.
func (b *Browser) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.requests)
}

// OffOrigin returns the requests that left origin ("http://127.0.0.1:8080").
// data: and blob: URLs never leave the browser and are not counted.
func (b *Browser) OffOrigin(origin string) []string {
	var off []string
	for _, r := range b.Requests() {
		u, err := url.Parse(r)
		if err == nil && (u.Scheme == "data" || u.Scheme == "blob") {
			continue
		}
		if err != nil || u.Scheme+"://"+u.Host != origin {
			off = append(off, r)
		}
	}
	return off
}

// Problems returns the page's console errors, failed assertions, uncaught
// exceptions and the browser's own error log entries (CSP refusals, failed
// loads), in order.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.problems)
}

// CheckClean fails the test (without stopping it) when the page made a
// request off origin or logged a problem.
func (b *Browser) CheckClean(origin string) {
	b.t.Helper()
	if off := b.OffOrigin(origin); len(off) > 0 {
		b.t.Errorf("browsertest: requests left %s:\n  %s", origin, strings.Join(off, "\n  "))
	}
	if p := b.Problems(); len(p) > 0 {
		b.t.Errorf("browsertest: the page logged errors:\n  %s", strings.Join(p, "\n  "))
	}
}
