package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/auth"
)

// buildBinary builds cdcaudit into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cdcaudit")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRunOperation runs the real binary: configuration from a file and the
// environment, /metrics and /healthz on a port picked by the kernel (logged),
// events counted by table and operation, and a clean exit 0 after SIGTERM.
func TestRunOperation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server and the cdcaudit binary")
	}
	cl := erpServer(t, `CREATE TABLE public.sale_order (id int PRIMARY KEY, state text);
		ALTER TABLE public.sale_order REPLICA IDENTITY FULL;
		CREATE TABLE public.ignored (id int PRIMARY KEY);`)
	ctx := context.Background()
	bin := buildBinary(t)
	dataDir := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "cdcaudit.yml")
	viewer, _ := access.ParseRole("viewer")
	token, spec, err := auth.NewToken(viewer, "op-test", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfgFile, []byte("slot: op_test\npublication: op_test\ntables: [public.sale_order]\nhttp_addr: 127.0.0.1:0\n"+
		"api_tokens: [\""+spec.String()+"\"]\n"), 0o600)

	// A password in the DSN (trust auth ignores it) must never be logged.
	dsn := strings.Replace(cl.DSN("erp"), "postgres@", "postgres:hunter2@", 1)
	cmd := exec.Command(bin, "run", "--config", cfgFile, "--log-format", "json", "--log-level", "debug")
	cmd.Env = append(os.Environ(), "CDCAUDIT_DSN="+dsn, "CDCAUDIT_DATA_DIR="+dataDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// Read the JSON log: find the metrics address, keep every line.
	addrCh := make(chan string, 1)
	logDone := make(chan []string)
	go func() {
		var lines []string
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			lines = append(lines, line)
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			if rec["msg"] == "serving metrics" {
				addrCh <- rec["addr"].(string)
			}
		}
		logDone <- lines
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-time.After(30 * time.Second):
		t.Fatal("no 'serving metrics' log line within 30s")
	}
	if strings.HasSuffix(addr, ":0") || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("logged address %q", addr)
	}

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	metric := func(body, series string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}

	// Wait until the slot exists, then write.
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn := cl.Exec(ctx, "erp", `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'op_test') THEN RAISE EXCEPTION 'no slot'; END IF; END $$`)
		if conn == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot op_test not created within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cl.Exec(ctx, "erp", `INSERT INTO sale_order SELECT g, 'draft' FROM generate_series(1, 5) g;
		UPDATE sale_order SET state = 'sale' WHERE id <= 2;
		DELETE FROM sale_order WHERE id = 5;
		INSERT INTO ignored VALUES (1);`); err != nil {
		t.Fatal(err)
	}

	var body string
	for deadline := time.Now().Add(30 * time.Second); ; {
		var code int
		code, body = get("/metrics")
		if code == 200 && metric(body, `cdcaudit_events_total{op="delete",schema="public",source="erp",table="sale_order"}`) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not counted within 30s:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := metric(body, `cdcaudit_events_total{op="insert",schema="public",source="erp",table="sale_order"}`); v != 5 {
		t.Errorf("inserts = %v", v)
	}
	if v := metric(body, `cdcaudit_events_total{op="update",schema="public",source="erp",table="sale_order"}`); v != 2 {
		t.Errorf("updates = %v", v)
	}
	if strings.Contains(body, `table="ignored"`) {
		t.Error("an unpublished table was counted")
	}
	// Every cdcaudit series carries the source, also with one database.
	for _, s := range []string{"cdcaudit_checkpoint_lsn{source=\"erp\"}", "cdcaudit_replication_lag_bytes{source=\"erp\"}",
		"cdcaudit_replication_lag_seconds{source=\"erp\"}", "cdcaudit_batch_commit_duration_seconds_count{source=\"erp\"}",
		"cdcaudit_transactions_total{source=\"erp\"}", "go_goroutines"} {
		if !strings.Contains(body, "\n"+s+" ") {
			t.Errorf("/metrics lacks %s", s)
		}
	}
	if v := metric(body, `cdcaudit_checkpoint_lsn{source="erp"}`); v <= 0 {
		t.Errorf("checkpoint_lsn = %v", v)
	}
	if code, h := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d %q", code, h)
	}

	// The API reads the store while the daemon writes it: only with a token.
	if code, body := get("/api/v1/events"); code != http.StatusUnauthorized || !strings.Contains(body, `"error"`) {
		t.Errorf("/api/v1/events without a token: %d %s", code, body)
	}
	if code, body := get("/api/v1/openapi.json"); code != 200 || !strings.Contains(body, `"openapi"`) {
		t.Errorf("/api/v1/openapi.json: %d %.100s", code, body)
	}
	// The console is the page at /.
	if code, body := get("/"); code != 200 || !strings.Contains(body, "<html") || !strings.Contains(body, "/assets/") {
		t.Errorf("/: %d %.200s", code, body)
	}
	// The live stream, from the start of the store: its first event.
	sreq, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/events/stream?table=public.sale_order", nil)
	sreq.Header.Set("Authorization", "Bearer "+token)
	sreq.Header.Set("Last-Event-ID", "0000000000000000-000000")
	sresp, err := http.DefaultClient.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(sresp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "data: ") {
	}
	if sresp.StatusCode != 200 || !strings.Contains(sc.Text(), `"table":"sale_order"`) {
		t.Errorf("/api/v1/events/stream: %d, first data %.200q", sresp.StatusCode, sc.Text())
	}
	sresp.Body.Close()
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/events?table=public.sale_order&op=update", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Events []map[string]any `json:"events"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(page.Events) != 2 || page.Events[0]["op"] != "update" {
		t.Errorf("/api/v1/events with the token: %d, %v, %v", resp.StatusCode, page.Events, err)
	}
	// An export through the API, and its manifest fetched after it: verify
	// proves the file with the instance key, once the daemon has stopped.
	exportID := ""
	exportFile, manifestFile := filepath.Join(t.TempDir(), "orders.csv"), filepath.Join(t.TempDir(), "orders.manifest.json")
	for _, target := range []string{"/api/v1/export?format=csv&table=public.sale_order", "/api/v1/exports/{id}/manifest"} {
		req, _ := http.NewRequest("GET", "http://"+addr+strings.Replace(target, "{id}", exportID, 1), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v %s", target, resp.StatusCode, err, body)
		}
		if exportID == "" {
			exportID = resp.Header.Get("X-Cdcaudit-Export")
			os.WriteFile(exportFile, body, 0o600)
		} else {
			os.WriteFile(manifestFile, body, 0o600)
		}
	}

	// The read commands work while the daemon holds the store: it reads it
	// for them over its socket. Their output is compared below with theirs
	// once it has stopped.
	reads := [][]string{
		{"export", "--data-dir", dataDir},
		{"export", "--data-dir", dataDir, "--format", "csv", "--op", "update"},
		{"events", "--data-dir", dataDir, "--record", "public.sale_order:2"},
		{"sessions", "--data-dir", dataDir},
	}
	var live []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, errOut, code := runCLI(t, nil, reads[0]...)
		if code == 0 && strings.Count(out, "\n") == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("export while the daemon runs: exit %d, %d events: %s", code, strings.Count(out, "\n"), errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, args := range reads {
		out, errOut, code := runCLI(t, nil, args...)
		if code != 0 {
			t.Errorf("%v while the daemon runs: exit %d: %s", args, code, errOut)
		}
		live = append(live, out)
	}
	if out, errOut, code := runCLI(t, nil, "verify", "--data-dir", dataDir); code != 0 || !strings.Contains(out, "OK: 8 events verified") {
		t.Errorf("verify while the daemon runs: %d\n%s%s", code, out, errOut)
	}

	// SIGTERM: final checkpoint, exit 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	var lines []string
	select {
	case lines = <-logDone:
	case <-time.After(60 * time.Second):
		t.Fatal("cdcaudit did not exit within 60s of SIGTERM")
	}
	if err := <-waitErr; err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, strings.Join(lines, "\n"))
	}
	log := strings.Join(lines, "\n")
	if strings.Contains(log, "hunter2") {
		t.Errorf("the log reveals the DSN's password:\n%s", log)
	}
	if !strings.Contains(log, "stopped cleanly") {
		t.Errorf("no clean-stop log line:\n%s", log)
	}

	// The store holds the 8 events and verifies.
	out, errOut, code := runCLI(t, nil, "verify", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "OK: 8 events verified") {
		t.Errorf("verify: %d\n%s%s", code, out, errOut)
	}
	for i, args := range reads {
		if out, _, _ := runCLI(t, nil, args...); out != live[i] {
			t.Errorf("%v: stopped\n%s\nwhile the daemon ran\n%s", args, out, live[i])
		}
	}
	out, errOut, code = runCLI(t, nil, "verify", "--export", exportFile, "--manifest", manifestFile, "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "from this instance") {
		t.Errorf("verify --export of the API's export: %d\n%s%s", code, out, errOut)
	}
}
