package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/replication"
)

// Run applies the owners' rules of its settings itself, not only when they
// come through internal/config: an anchor file inside the store is
// refused before anything connects.
func TestRunAppliesTheSettingsRules(t *testing.T) {
	dir := t.TempDir()
	inside := filepath.Join(dir, "anchors")
	rule := anchor.ValidateFile(inside, dir)
	err := Run(context.Background(), Config{
		Replication: replication.Config{DSN: "postgres://u@127.0.0.1:1/erp"},
		DataDir:     dir, AnchorFile: inside,
	})
	if rule == nil || err == nil || !strings.Contains(err.Error(), rule.Error()) {
		t.Fatalf("Run: %v (the rule: %v)", err, rule)
	}
	err = Run(context.Background(), Config{Replication: replication.Config{DSN: "postgres://u@127.0.0.1:1/erp", Slot: "Bad-Slot"}, DataDir: dir})
	if rule := replication.ValidateSlotName("Bad-Slot"); err == nil || !strings.Contains(err.Error(), rule.Error()) {
		t.Fatalf("Run with a bad slot: %v", err)
	}
}
