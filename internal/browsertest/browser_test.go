package browsertest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/cdcaudit/cdcaudit/internal/debinstall"
)

// pages serves a page that loads a script from its own origin, fetches from
// other (another origin), logs a console error, throws, and links a
// download.
func pages(t *testing.T, other string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><meta name="viewport" content="width=device-width"><title>t</title><p id="status">loading</p>`+
			`<a id="dl" href="/file">download</a><script src="/app.js"></script>`)
	})
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, `
document.getElementById("status").textContent = "ready " + window.innerWidth;
fetch(%q, {mode: "no-cors"}).finally(() => document.getElementById("status").dataset.fetched = "yes");
console.error("something", "broke");
setTimeout(() => { throw new Error("boom"); }, 0);
setTimeout(() => { document.getElementById("status").dataset.thrown = "yes"; }, 20);
`, other+"/beacon")
	})
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("Content-Disposition", `attachment; filename="events.csv"`)
		fmt.Fprint(w, "id,op\n1,insert\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestBrowserRecordsRequestsProblemsAndDownloads(t *testing.T) {
	beacons := make(chan string, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case beacons <- r.URL.Path:
		default:
		}
	}))
	defer other.Close()
	site := pages(t, other.URL)
	shots := t.TempDir()
	t.Setenv("CDCAUDIT_SCREENSHOTS", shots)

	b := New(t)
	b.Run(
		chromedp.Navigate(site.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-fetched="yes"]`)),
	)
	if got := <-beacons; got != "/beacon" {
		t.Fatalf("other origin got %q", got)
	}
	if status := Get(b, chromedp.Text(chromedp.CSS("#status"))); status != "ready 1366" {
		t.Errorf("status = %q, want the laptop width", status)
	}

	reqs := b.Requests()
	for _, want := range []string{site.URL + "/", site.URL + "/app.js", other.URL + "/beacon"} {
		if !slices.Contains(reqs, want) {
			t.Errorf("request %s not recorded in %q", want, reqs)
		}
	}
	if off := b.OffOrigin(site.URL); !slices.Equal(off, []string{other.URL + "/beacon"}) {
		t.Errorf("OffOrigin = %q, want only the beacon", off)
	}
	if off := b.OffOrigin(other.URL); !slices.Contains(off, site.URL+"/app.js") || slices.Contains(off, other.URL+"/beacon") {
		t.Errorf("OffOrigin(other) = %q, want the page's requests but not the beacon", off)
	}

	// The exception is thrown from a timer: wait for the timer after it.
	b.Run(chromedp.WaitVisible(chromedp.CSS(`#status[data-thrown="yes"]`)))
	problems := strings.Join(b.Problems(), "\n")
	for _, want := range []string{"console.error: something broke", "boom"} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems lack %q:\n%s", want, problems)
		}
	}

	b.Run(chromedp.Click(chromedp.CSS("#dl")))
	p := b.WaitDownload()
	if p != filepath.Join(b.Downloads(), "events.csv") {
		t.Errorf("download saved as %s", p)
	}
	if data, err := os.ReadFile(p); err != nil || string(data) != "id,op\n1,insert\n" {
		t.Errorf("download = %q, %v", data, err)
	}
	if !slices.Contains(b.Requests(), site.URL+"/file") {
		t.Errorf("the download's request is not recorded: %q", b.Requests())
	}

	b.SetViewport(Phone)
	b.Run(chromedp.Reload())
	if status := Get(b, chromedp.Text(chromedp.CSS("#status"))); status != fmt.Sprintf("ready %d", Phone.Width) {
		t.Errorf("status on a phone = %q", status)
	}
	shot := b.Screenshot("phone")
	if want := filepath.Join(shots, "TestBrowserRecordsRequestsProblemsAndDownloads-phone.png"); shot != want {
		t.Errorf("screenshot at %s, want %s", shot, want)
	}
	if data, err := os.ReadFile(shot); err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
		t.Errorf("screenshot is not a PNG: %v", err)
	}
}

// A clean page on one origin passes CheckClean; the recording is per test.
func TestCheckCleanPasses(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>clean</title><p>ok</p>`)
	}))
	defer site.Close()
	b := New(t)
	b.Run(chromedp.Navigate(site.URL + "/"))
	if got := Get(b, chromedp.Title()); got != "clean" {
		t.Fatalf("title %q", got)
	}
	if reqs := b.Requests(); len(reqs) == 0 || reqs[0] != site.URL+"/" {
		t.Errorf("requests = %q", reqs)
	}
	b.CheckClean(site.URL)
}

func TestSkipOnlyWhereChromiumCannotBeInstalled(t *testing.T) {
	cannot := fmt.Errorf("no Chromium found: %w: not root", debinstall.ErrCannotInstall)
	t.Setenv("CI", "")
	if !skips(cannot) || skips(errors.New("apt-get install failed")) {
		t.Error("outside CI: skip only when it cannot be installed")
	}
	t.Setenv("CI", "true")
	if skips(cannot) {
		t.Error("under CI a browser test that cannot run fails")
	}
	t.Setenv("CDCAUDIT_CHROMIUM", filepath.Join(t.TempDir(), "no-such-chromium"))
	if _, err := ensureChromium(t.Logf); err == nil || skips(err) || !strings.Contains(err.Error(), "CDCAUDIT_CHROMIUM") {
		t.Errorf("a CDCAUDIT_CHROMIUM that is not there: %v", err)
	}
}
