package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/auth"
)

func init() {
	commandFlags["token"] = []string{"role", "name", "expires", "format"}
}

func TestTokenNew(t *testing.T) {
	tokenNow = func() time.Time { return time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC) }
	t.Cleanup(func() { tokenNow = time.Now })

	out, errOut, code := runCLI(t, nil, "token", "new", "--role", "self:alice@example.com", "--name", "alice-laptop", "--expires", "90d", "--format", "json")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(got["token"]))
	if !strings.HasPrefix(got["token"], auth.TokenPrefix) || got["sha256"] != hex.EncodeToString(sum[:]) ||
		got["expires"] != "2027-03-03T18:00:00Z" || got["role"] != "self:alice@example.com" || got["name"] != "alice-laptop" {
		t.Errorf("json: %v", got)
	}
	tok, err := auth.ParseTokenSpec(got["entry"])
	if err != nil {
		t.Fatalf("the printed entry: %v", err)
	}
	if tok.Name != "alice-laptop" || tok.SHA256 != sum || tok.Principal != (access.Principal{Role: access.Self, Login: "alice@example.com"}) ||
		!tok.Expires.Equal(time.Date(2027, 3, 3, 18, 0, 0, 0, time.UTC)) {
		t.Errorf("entry read as %+v", tok)
	}
	if strings.Contains(got["entry"], got["token"]) {
		t.Error("the entry holds the token")
	}

	// Text: the token once, the entry as YAML; a default name.
	out, _, code = runCLI(t, nil, "token", "new", "--role", "viewer")
	if code != 0 {
		t.Fatalf("text: exit %d", code)
	}
	var token, entry string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, auth.TokenPrefix) {
			token = l
		}
		if strings.HasPrefix(l, `- "name=`) {
			entry = strings.Trim(strings.TrimPrefix(l, "- "), `"`)
		}
	}
	tok, err = auth.ParseTokenSpec(entry)
	if err != nil || tok.SHA256 != sha256.Sum256([]byte(token)) || tok.Principal.Role != access.Viewer || !tok.Expires.IsZero() ||
		tok.Name != "viewer-"+hex.EncodeToString(tok.SHA256[:4]) || strings.Count(out, token) != 1 {
		t.Errorf("text output:\n%s\nentry %+v %v", out, tok, err)
	}

	for _, args := range [][]string{
		{"token"},
		{"token", "old"},
		{"token", "new"},
		{"token", "new", "--role", "root"},
		{"token", "new", "--role", "self:"},
		{"token", "new", "--role", "viewer", "--expires", "2020-01-01"},
		{"token", "new", "--role", "viewer", "--expires", "soon"},
		{"token", "new", "--role", "viewer", "--name", "has space"},
		{"token", "new", "--role", "viewer", "--format", "yaml"},
	} {
		out, errOut, code := runCLI(t, nil, args...)
		if code != exitUsage || out != "" || errOut == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}
