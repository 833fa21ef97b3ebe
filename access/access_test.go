package access

import (
	"context"
	"errors"
	"testing"
)

func TestParseRole(t *testing.T) {
	for _, s := range []string{"admin", "viewer", "self:alice", "self:a@b.example"} {
		p, err := ParseRole(s)
		if err != nil || p.String() != s {
			t.Errorf("ParseRole(%q) = %v, %v; want it back", s, p, err)
		}
	}
	for _, s := range []string{"", "root", "self", "self:", "Admin", "self:a\nb", "viewer:x"} {
		if p, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) = %v; want an error", s, p)
		}
	}
	if p, _ := ParseRole("self:bob"); p.SeesAll() || p.IsAdmin() || p.Login != "bob" {
		t.Errorf("self:bob = %+v: sees all or acts", p)
	}
	if p, _ := ParseRole("viewer"); !p.SeesAll() || p.IsAdmin() {
		t.Errorf("viewer = %+v", p)
	}
}

// A handler reached without a principal, or with a malformed one, has none.
func TestFromContext(t *testing.T) {
	if _, err := FromContext(context.Background()); !errors.Is(err, ErrNoPrincipal) {
		t.Fatalf("empty context: %v", err)
	}
	if _, err := FromContext(NewContext(context.Background(), Principal{Role: Self})); !errors.Is(err, ErrNoPrincipal) {
		t.Fatalf("self without a login: %v", err)
	}
	want := Principal{Role: Self, Login: "carol", Via: "password"}
	if got, err := FromContext(NewContext(context.Background(), want)); err != nil || got != want {
		t.Fatalf("got %+v, %v", got, err)
	}
}
