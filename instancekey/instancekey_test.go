package instancekey

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi.Mode(), err)
	}
	again, err := LoadOrCreate(dir)
	if err != nil || again.Public() != k.Public() {
		t.Fatalf("second start: %v, key %s, want the same key %s", err, again.Public(), k.Public())
	}
	pub, err := ParsePublic(k.Public())
	if err != nil || !ed25519.Verify(pub, []byte("m"), k.Sign([]byte("m"))) {
		t.Fatalf("public key %s does not verify the key's signature: %v", k.Public(), err)
	}
	if len(Fingerprint(k.Public())) != 16 {
		t.Errorf("fingerprint %q", Fingerprint(k.Public()))
	}
}

// A key file that is not a key is an error, never replaced: anchors signed
// by the old key would stop matching.
func TestBadKeyFileIsNotReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadOrCreate(dir); err == nil {
		t.Fatal("a garbage key file was accepted")
	}
	if b, _ := os.ReadFile(path); string(b) != "garbage" {
		t.Fatal("the key file was replaced")
	}
	for _, s := range []string{"", "ed25519:", "rsa:AAAA", "ed25519:!!"} {
		if _, err := ParsePublic(s); err == nil {
			t.Errorf("ParsePublic(%q) accepted", s)
		}
	}
}

func TestDerive(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := k.Derive("images"), again.Derive("images")
	if len(a) != 32 || string(a) != string(b) {
		t.Fatal("a derived key must be the same for the same instance key and purpose")
	}
	if string(k.Derive("other")) == string(a) {
		t.Fatal("two purposes derived the same key")
	}
	other, _ := LoadOrCreate(t.TempDir())
	if string(other.Derive("images")) == string(a) {
		t.Fatal("two instances derived the same key")
	}
}
