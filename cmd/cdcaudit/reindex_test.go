package main

import (
	"context"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/sink"
)

func TestReindex(t *testing.T) {
	dir := makeStore(t, 10)
	_, errOut, code := runCLI(t, nil, "reindex", "--data-dir", dir)
	if code != 0 || !strings.Contains(errOut, "indexed 11 records") { // the genesis record and 10 events
		t.Fatalf("reindex: %d %q", code, errOut)
	}
	s, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.IndexComplete(); !ok || err != nil {
		t.Errorf("index complete: %v %v", ok, err)
	}
	if n, err := s.Count(context.Background(), sink.Query{Tables: []string{"sale_order"}}); n != 5 || err != nil {
		t.Errorf("count after reindex: %d %v", n, err)
	}
	s.Close()

	held, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, errOut, code := runCLI(t, nil, "reindex", "--data-dir", dir); code != exitFail || !strings.Contains(errOut, "locked") {
		t.Errorf("reindex of a held store: %d %q", code, errOut)
	}
	if _, errOut, code := runCLI(t, nil, "reindex"); code != exitUsage || !strings.Contains(errOut, "data-dir") {
		t.Errorf("reindex without --data-dir: %d %q", code, errOut)
	}
}
