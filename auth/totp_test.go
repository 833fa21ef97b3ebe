package auth

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/odootrace"
)

// RFC 6238, appendix B (SHA-1 key), reduced to Odoo's 6 digits.
func TestHOTPRFC6238(t *testing.T) {
	key := []byte("12345678901234567890")
	for _, c := range []struct {
		unix int64
		want string // the RFC's 8 digits: 94287082 …
	}{
		{59, "287082"},
		{1111111109, "081804"},
		{1111111111, "050471"},
		{1234567890, "005924"},
		{2000000000, "279037"},
		{20000000000, "353130"},
	} {
		if got := hotp(key, uint64(c.unix/totpStep)); got != c.want {
			t.Errorf("T=%d: %s, want %s", c.unix, got, c.want)
		}
	}
}

// Odoo accepts a code of any step between t−30 s and t+30 s.
func TestTOTPWindowIsOdoos(t *testing.T) {
	key := []byte("12345678901234567890")
	code := hotp(key, 100) // the step of [3000, 3030)
	for unix, want := range map[int64]bool{
		2969: false, // steps 97..99
		2970: true,  // 98..100
		3000: true,
		3029: true,
		3059: true, // 100..102
		3060: false,
	} {
		step, ok := matchTOTP(key, code, time.Unix(unix, 0))
		if ok != want || (ok && step != 100) {
			t.Errorf("at %d: step %d ok %v, want ok %v", unix, step, ok, want)
		}
	}
}

// recordedTOTP is alice's two-factor secret as Odoo 18 stored it in the
// passwords scenario, the code the recording's authenticator typed into
// the wizard, and the enabling transaction's time: Odoo checked the code
// then and accepted it.
func recordedTOTP(t testing.TB) (secret, code string, at time.Time) {
	t.Helper()
	tr, err := odootrace.ReadFile(filepath.Join(tracesDir, "passwords.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range tr.Txs {
		tx := &tr.Txs[i]
		if c := tx.Literals("auth_totp_wizard", "code"); len(c) == 1 {
			code = c[0]
		}
		if s := tx.Literals("res_users", "totp_secret"); len(s) == 1 {
			secret, at = s[0], tx.Now.Time
		}
	}
	if secret == "" || code == "" || at.IsZero() {
		t.Fatalf("recording: secret %t, code %t, time %v", secret != "", code != "", at)
	}
	return secret, code, at
}

func TestTOTPRecordedOdoo(t *testing.T) {
	secret, code, at := recordedTOTP(t)
	key, err := decodeTOTPSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 20 {
		t.Fatalf("secret: %d bytes, Odoo makes 160 bits", len(key))
	}
	if _, ok := matchTOTP(key, code, at); !ok {
		t.Fatal("the code Odoo accepted is refused at the time Odoo accepted it")
	}
	if _, ok := matchTOTP(key, code, at.Add(2*time.Minute)); ok {
		t.Error("the code is accepted two minutes later")
	}
	// The wizard shows the secret grouped and lower-cased authenticators
	// accept it so too.
	if k2, err := decodeTOTPSecret("h7fs f63g rrk7 222x 2xws fbb2 ukvv haah"); err != nil || string(k2) != string(key) {
		t.Errorf("grouped secret: %x %v", k2, err)
	}
}

func TestTOTPSecretAndCodeInput(t *testing.T) {
	for _, s := range []string{"", "!!!!", "AAAA", "H7FSF63GRRK7222X2XWSFBB2UKVVHAA1", string(make([]byte, 200))} {
		if _, err := decodeTOTPSecret(s); err == nil {
			t.Errorf("secret %q accepted", s)
		}
	}
	for in, want := range map[string]string{"123456": "123456", " 123 456 ": "123456", "012345": "012345"} {
		if got, ok := normalizeTOTPCode(in); !ok || got != want {
			t.Errorf("code %q: %q %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "12345", "1234567", "12345a", "１２３４５６", "-12345", "+12345"} {
		if _, ok := normalizeTOTPCode(in); ok {
			t.Errorf("code %q accepted", in)
		}
	}
}
