package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDemo runs `cdcaudit demo` for a few seconds: its console link signs
// in once, the feed shows every kind of change, everything shown is stored,
// and the store verifies.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	dir := t.TempDir()
	stdout := &watchedOutput{re: regexp.MustCompile(`console: (http://\S+)`), found: make(chan string, 1)}
	var stderr bytes.Buffer // read once the demo has exited
	c := &cli{stdin: strings.NewReader(""), stdout: stdout, stderr: &syncWriter{w: &stderr}}
	exited := make(chan int, 1)
	go func() {
		exited <- c.main([]string{"demo", "--duration", "8s", "--rate", "25", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--log-level", "debug"})
	}()
	var link string
	select {
	case link = <-stdout.found:
	case code := <-exited:
		t.Fatalf("demo: exit %d before printing the console link\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("no console link\nstdout:\n%s", stdout.String())
	}
	once := checkDemoLink(t, link)
	code := <-exited
	out, errOut := stdout.String(), stderr.String()
	// The code is shown once, to the person at the terminal, and logged
	// nowhere (the log is at debug level here).
	if n := strings.Count(out, once); n != 1 || strings.Contains(errOut, once) {
		t.Errorf("the one-time code is in stdout %d times, in stderr %v", n, strings.Contains(errOut, once))
	}
	if code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// The Odoo workload: who did what, in which session, and a psql edit
	// flagged (the first comes 7 requests in).
	for _, s := range []string{" INSERT ", " UPDATE ", " DELETE ", " → ", "session_row/same_tx", "row_user/only_active",
		"⚠ ORM BYPASS", "metrics     http://127.0.0.1:", "store       " + dir, "verify --data-dir " + dir,
		"sessions --data-dir " + dir, "events --data-dir " + dir + " --record public.sale_order:1"} {
		if !strings.Contains(out, s) {
			t.Errorf("demo output lacks %q", s)
		}
	}
	if !strings.Contains(out, " sale.order.line ") && !strings.Contains(out, " sale_order_line ") {
		t.Errorf("demo output shows no order line")
	}
	if !regexp.MustCompile(`(?m) DELETE +\S+ +\S+ +none +`).MatchString(out) {
		t.Errorf("demo output shows no unattributed (lone) delete")
	}
	m := regexp.MustCompile(`Done\. (\S+) events stored \((\S+) shown above`).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("summary: %v\n%s", m, out)
	}
	if strings.Contains(errOut, "level=WARN") || strings.Contains(errOut, "level=ERROR") {
		t.Errorf("warnings on stderr:\n%s", errOut)
	}
	vout, verr, vcode := runCLI(t, nil, "verify", "--data-dir", dir)
	if vcode != 0 || !strings.Contains(vout, "OK: "+m[1]+" events verified") {
		t.Errorf("verify after demo: %d\n%s%s", vcode, vout, verr)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s\nstderr:\n%s", out, errOut)
	}
}

// checkDemoLink signs in with the demo's console link as the page does (the
// code is in the fragment, POSTed to the API) and reads through it; it
// returns the code.
func checkDemoLink(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Path != "/" || !strings.HasPrefix(u.Fragment, "once=") {
		t.Fatalf("console link %q", link)
	}
	code := strings.TrimPrefix(u.Fragment, "once=")
	origin := u.Scheme + "://" + u.Host
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: time.Minute}
	get := func(path string) (int, http.Header, []byte) {
		t.Helper()
		resp, err := client.Get(origin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	signIn := func(body string) (int, map[string]any) {
		t.Helper()
		resp, err := client.Post(origin+"/api/v1/signin", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}

	// The console page, before signing in; the API refuses.
	status, h, page := get("/")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || h.Get("Content-Security-Policy") == "" || !bytes.Contains(page, []byte("<html")) {
		t.Errorf("GET /: %d %v", status, h)
	}
	if status, _, _ := get("/api/v1/whoami"); status != http.StatusUnauthorized {
		t.Errorf("whoami before signing in: %d", status)
	}
	// No password or token signs in to the demo: only the code.
	if status, _ := signIn(`{"login":"admin","password":"admin"}`); status != http.StatusNotFound {
		t.Errorf("password sign-in: %d", status)
	}
	status, m := signIn(`{"once":"` + code + `"}`)
	if status != 200 || m["role"] != "admin" || m["via"] != "once" {
		t.Fatalf("sign-in with the link's code: %d %v", status, m)
	}
	status, _, body := get("/api/v1/whoami")
	var who map[string]string
	json.Unmarshal(body, &who)
	if status != 200 || who["role"] != "admin" || who["csrf_token"] != m["csrf_token"] {
		t.Errorf("whoami: %d %s", status, body)
	}
	if status, _, body := get("/api/v1/sessions?limit=1"); status != 200 || !bytes.Contains(body, []byte(`"sessions":[`)) {
		t.Errorf("events: %d %.300s", status, body)
	}
	if status, _, body := get("/api/v1/access-log?limit=1"); status != 200 || !bytes.Contains(body, []byte(`"via":"once"`)) || !bytes.Contains(body, []byte(`"action":"signin"`)) {
		t.Errorf("the sign-in is not the access log's last entry: %d %.400s", status, body)
	}
	// Once only.
	if status, _ := signIn(`{"once":"` + code + `"}`); status != http.StatusUnauthorized {
		t.Errorf("the code signed in twice: %d", status)
	}
	return code
}

// watchedOutput is a stdout written by several goroutines that hands on
// the first submatch of re once the output holds it.
type watchedOutput struct {
	re    *regexp.Regexp
	found chan string

	mu   sync.Mutex
	b    bytes.Buffer
	sent bool
}

func (w *watchedOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.b.Write(p)
	if m := w.re.FindSubmatch(w.b.Bytes()); m != nil && !w.sent {
		w.sent = true
		w.found <- string(m[1])
	}
	return n, err
}

func (w *watchedOutput) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
