package sink

import (
	"testing"
)

// A store's source: recorded with the identity, adopted by a store made
// before sources, and never changed.
func TestClaimSource(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimSource("erp_a"); err != nil || s.Source() != "" {
		t.Fatalf("a new store: %v, source %q", err, s.Source())
	}
	if _, ok, _ := s.Identity(); ok {
		t.Fatal("claiming a source recorded an identity in a new store")
	}

	// Made before sources: adopts the configured one, keeping the rest.
	old := Identity{SystemID: "7301", Database: "erp", Slot: "cdcaudit"}
	if err := s.SetIdentity(old); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimSource("erp_a"); err != nil {
		t.Fatal(err)
	}
	id, ok, err := s.Identity()
	if old.Source = "erp_a"; !ok || err != nil || id != old || s.Source() != "erp_a" {
		t.Fatalf("adopted: %+v %v %v, source %q", id, ok, err, s.Source())
	}
	if err := s.ClaimSource("erp_a"); err != nil {
		t.Fatalf("its own source: %v", err)
	}

	err = s.ClaimSource("erp_b")
	want := "the store in " + dir + " belongs to source erp_a, not erp_b: a store's source never changes (use --source erp_a, or a new --data-dir)"
	if err == nil || err.Error() != want {
		t.Fatalf("another source:\n got %v\nwant %s", err, want)
	}
	if s.Source() != "erp_a" {
		t.Fatalf("refused, yet the source is now %q", s.Source())
	}

	// It survives reopening.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = OpenReadOnly(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Source() != "erp_a" {
		t.Fatalf("reopened: source %q", s.Source())
	}
}
