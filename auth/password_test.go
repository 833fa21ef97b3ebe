package auth

import (
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/base64"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/internal/odootrace"
)

const tracesDir = "../testdata/odoo18/traces"

// odooHash hashes password as passlib's pbkdf2_sha512 writes it (salt and
// checksum in adapted base64: '.' for '+', no padding).
func odooHash(t testing.TB, password string, rounds int, salt []byte) string {
	t.Helper()
	sum, err := pbkdf2.Key(sha512.New, password, salt, rounds, 64)
	if err != nil {
		t.Fatal(err)
	}
	ab64 := func(b []byte) string { return strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(b), "+", ".") }
	return "$pbkdf2-sha512$" + strconv.Itoa(rounds) + "$" + ab64(salt) + "$" + ab64(sum)
}

func TestPasswordHashHandMade(t *testing.T) {
	for _, c := range []struct {
		password string
		rounds   int
		salt     []byte
	}{
		{"admin", 1, []byte("0123456789abcdef")},
		{"correct horse battery staple", 1000, []byte{0xfb, 0xef, 0xff, 0x3e, 0, 1}}, // salt whose base64 has '+' ('.' in passlib's)
		{"pässwörd ✓", 29000, make([]byte, 64)},
		{"x", 7, nil}, // passlib allows an empty salt
	} {
		s := odooHash(t, c.password, c.rounds, c.salt)
		h, err := parsePasswordHash(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if h.rounds != c.rounds || string(h.salt) != string(c.salt) {
			t.Errorf("%s: read rounds %d salt %x", s, h.rounds, h.salt)
		}
		if !h.matches(c.password) {
			t.Errorf("%s: %q does not match", s, c.password)
		}
		for _, wrong := range []string{"", c.password + " ", strings.ToUpper(c.password), c.password[:len(c.password)-1]} {
			if h.matches(wrong) {
				t.Errorf("%s: %q matches", s, wrong)
			}
		}
	}
	if s := odooHash(t, "p", 3, []byte{0xfb, 0xef, 0xff}); !strings.Contains(s, ".") {
		t.Fatalf("the test salt should need passlib's '.': %s", s)
	}
}

// The hashes real Odoo 18 wrote in the passwords scenario, against the
// passwords typed into its wizards in the same recording.
func TestPasswordHashRecordedOdoo(t *testing.T) {
	tr, err := odootrace.ReadFile(filepath.Join(tracesDir, "passwords.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var hashes, typed []string
	for i := range tr.Txs {
		tx := &tr.Txs[i]
		hashes = append(hashes, tx.Literals("res_users", "password")...)
		typed = append(typed, tx.Literals("change_password_own", "new_password")...) // alice's own change
		typed = append(typed, tx.Literals("change_password_user", "new_passwd")...)  // admin sets bob's
	}
	if len(hashes) != 2 || len(typed) != 2 {
		t.Fatalf("recording: %d hashes, %d typed passwords; want 2 and 2", len(hashes), len(typed))
	}
	for i, s := range hashes {
		h, err := parsePasswordHash(s)
		if err != nil {
			t.Fatalf("hash %d: %v", i, err)
		}
		if h.rounds != odooDefaultRounds || len(h.salt) != 16 {
			t.Errorf("hash %d: rounds %d, salt %d bytes; Odoo 18 writes 600000 and 16", i, h.rounds, len(h.salt))
		}
		if !h.matches(typed[i]) {
			t.Errorf("hash %d does not match the password typed for it", i)
		}
		if h.matches(typed[1-i]) {
			t.Errorf("hash %d matches the other user's password", i)
		}
	}
}

func TestPasswordHashMalformed(t *testing.T) {
	good := odooHash(t, "pw", 10, []byte("saltsaltsaltsalt"))
	parts := strings.Split(good, "$") // "", "pbkdf2-sha512", rounds, salt, sum
	for _, s := range []string{
		"",
		"pw", // Odoo's 'plaintext' scheme: not accepted here
		"$pbkdf2-sha256$10$" + parts[3] + "$" + parts[4],
		"$pbkdf2-sha512$10$" + parts[3], // no checksum
		good + "$",                      // extra field
		"$pbkdf2-sha512$0$" + parts[3] + "$" + parts[4],
		"$pbkdf2-sha512$010$" + parts[3] + "$" + parts[4],
		"$pbkdf2-sha512$-1$" + parts[3] + "$" + parts[4],
		"$pbkdf2-sha512$+10$" + parts[3] + "$" + parts[4],
		"$pbkdf2-sha512$10000001$" + parts[3] + "$" + parts[4], // more rounds than maxRounds
		"$pbkdf2-sha512$99999999999999999999$" + parts[3] + "$" + parts[4],
		"$pbkdf2-sha512$10$" + parts[3] + "==$" + parts[4],      // padding
		"$pbkdf2-sha512$10$" + parts[3] + "$" + parts[4][:80],   // short checksum
		"$pbkdf2-sha512$10$" + parts[3] + "$" + parts[4] + "AA", // long checksum
		"$pbkdf2-sha512$10$sa!t$" + parts[4],
		"$pbkdf2-sha512$10$" + strings.Repeat("A", 1400) + "$" + parts[4], // salt over 1024 bytes
	} {
		if _, err := parsePasswordHash(s); err == nil {
			t.Errorf("%q: accepted", s)
		}
	}
	if _, err := parsePasswordHash(good); err != nil {
		t.Fatalf("the good hash: %v", err)
	}
	h, _ := parsePasswordHash(good)
	if h.matches(strings.Repeat("p", maxPassword+1)) {
		t.Error("a password over passlib's limit was hashed")
	}
}

func TestDummyHashMatchesNothing(t *testing.T) {
	a, b := dummyHash(5), dummyHash(5)
	if a.rounds != 5 || string(a.salt) == string(b.salt) || string(a.checksum) == string(b.checksum) {
		t.Fatalf("dummy hashes: %+v %+v", a, b)
	}
	for _, pw := range []string{"", "admin", "password"} {
		if a.matches(pw) {
			t.Errorf("the dummy hash matches %q", pw)
		}
	}
}

func FuzzParsePasswordHash(f *testing.F) {
	f.Add(odooHash(f, "pw", 10, []byte("saltsaltsaltsalt")))
	f.Add(odooHash(f, "pw", 1, []byte{0xfb, 0xef, 0xff}))
	f.Add("$pbkdf2-sha512$1$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePasswordHash(s)
		if err != nil {
			return
		}
		if h.rounds < 1 || h.rounds > maxRounds || len(h.salt) > maxSaltBytes || len(h.checksum) != checksumBytes {
			t.Fatalf("%q: accepted out of bounds: rounds %d salt %d checksum %d", s, h.rounds, len(h.salt), len(h.checksum))
		}
	})
}
