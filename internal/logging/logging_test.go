package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "shown" || strings.Contains(buf.String(), "hidden") {
		t.Fatalf("%v %s", err, buf.String())
	}
	buf.Reset()
	log, err = New(&buf, DefaultFormat, DefaultLevel)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("shown")
	if got := buf.String(); !strings.Contains(got, "level=INFO msg=shown") || strings.Contains(got, "hidden") {
		t.Fatalf("%q", got)
	}
	for _, bad := range [][2]string{{"xml", "info"}, {"text", "verbose"}, {"text", "INFO"}, {"text", "warn+2"}, {"", "info"}} {
		if _, err := New(&buf, bad[0], bad[1]); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
