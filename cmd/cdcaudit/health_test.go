package main

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/metrics"
)

// TestHealth asks a real HTTP server's /healthz: exit 0 while healthy,
// 1 with the reason once the slot is lost, 1 when nothing listens.
func TestHealth(t *testing.T) {
	reg := metrics.NewRegistry()
	m := reg.Source("erp")
	hs, err := startHTTP(httpSettings{addr: "127.0.0.1:0"}, reg, newLogger(io.Discard, "text", "error"))
	if err != nil {
		t.Fatal(err)
	}
	defer hs.shutdown()
	_, port, _ := net.SplitHostPort(hs.addr)

	out, errOut, code := runCLI(t, nil, "health", "--url", "http://"+hs.addr+"/healthz")
	if code != 0 || strings.TrimSpace(out) != "connecting" {
		t.Errorf("healthy: code %d, %q %q", code, out, errOut)
	}
	// The address as the container sets it: all interfaces, asked on loopback.
	out, errOut, code = runCLI(t, map[string]string{"CDCAUDIT_HTTP_ADDR": "0.0.0.0:" + port}, "health")
	if code != 0 || strings.TrimSpace(out) != "connecting" {
		t.Errorf("from CDCAUDIT_HTTP_ADDR: code %d, %q %q", code, out, errOut)
	}

	m.SlotStatus("lost", 0, 0)
	out, errOut, code = runCLI(t, nil, "health", "--url", "http://"+hs.addr+"/healthz")
	if code != exitFail || !strings.Contains(errOut, "503") || !strings.Contains(errOut, "wal_status is lost") || out != "" {
		t.Errorf("unhealthy: code %d, %q %q", code, out, errOut)
	}

	hs.shutdown()
	if _, errOut, code = runCLI(t, nil, "health", "--url", "http://"+hs.addr+"/healthz"); code != exitFail || !strings.Contains(errOut, "refused") {
		t.Errorf("nothing listening: code %d, %q", code, errOut)
	}
	if _, _, code = runCLI(t, nil, "health", "extra"); code != exitUsage {
		t.Errorf("an argument: code %d", code)
	}
}

// With several sources, health fails when one is unhealthy and names it.
func TestHealthSeveralSources(t *testing.T) {
	reg := metrics.NewRegistry()
	a, b := reg.Source("erp_a"), reg.Source("erp_b")
	a.SetConnected(true)
	b.SetConnected(true)
	hs, err := startHTTP(httpSettings{addr: "127.0.0.1:0"}, reg, newLogger(io.Discard, "text", "error"))
	if err != nil {
		t.Fatal(err)
	}
	defer hs.shutdown()
	out, errOut, code := runCLI(t, nil, "health", "--url", "http://"+hs.addr+"/healthz")
	if code != 0 || out != "erp_a: ok\nerp_b: ok\n" {
		t.Errorf("healthy: code %d, %q %q", code, out, errOut)
	}
	b.SlotStatus("lost", 0, 0)
	out, errOut, code = runCLI(t, nil, "health", "--url", "http://"+hs.addr+"/healthz")
	if code != exitFail || !strings.Contains(errOut, "503") || !strings.Contains(errOut, "erp_b: replication slot wal_status is lost") || out != "" {
		t.Errorf("erp_b unhealthy: code %d, %q %q", code, out, errOut)
	}
}

func TestLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{
		"": "127.0.0.1:9187", "0.0.0.0:9187": "127.0.0.1:9187", ":8080": "127.0.0.1:8080",
		"[::]:9187": "127.0.0.1:9187", "127.0.0.1:9000": "127.0.0.1:9000", "10.1.2.3:9187": "10.1.2.3:9187",
	} {
		if got := loopbackAddr(in); got != want {
			t.Errorf("loopbackAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
