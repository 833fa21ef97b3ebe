package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
)

// secret is a value that reaches the WAL and must never be stored.
type secret struct{ what, value string }

// secretsWorkload writes every kind of secret the Odoo profile knows, in
// the ways Odoo writes them, and returns the values (old ones, which the
// before-images carry, included).
type secretsRun struct {
	secrets []secret
	// transactions of interest
	password, totp, totpOff, apiKey, dbSecret, baseURL, deviceRow, revoke uint32
	message                                                               uint32
	alice, carol                                                          *odoosim.Session
}

func secretsWorkload(t *testing.T, r *odooRig) *secretsRun {
	t.Helper()
	w := &secretsRun{}
	admin := r.sim.NewDevice(odoosim.Admin, adminDesk)
	w.alice = r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	w.carol = r.sim.NewDevice(odoosim.Carol, carolMac)
	w.deviceRow = r.request(w.alice, writeOrder(1, odoosim.Vals{"note": "first"}))
	r.request(w.carol, writeOrder(4, odoosim.Vals{"note": "first"}))
	r.request(admin, writePartner(1, odoosim.Vals{"phone": "+32 2 555 00 00"}))

	// Every res_users row image carries its password hash (and carol's her
	// TOTP secret): a write of any user record puts them in the WAL.
	r.request(admin, func(e *odoosim.Env) error {
		return e.SetGroups(odoosim.Bob, []int64{odoosim.GroupSaleManager}, nil)
	})
	r.request(admin, func(e *odoosim.Env) error {
		return e.SetGroups(odoosim.Carol, nil, []int64{odoosim.GroupSaleManager})
	})

	newHash := odoosim.HashPassword("alice-Autumn2026")
	w.password = r.request(w.alice, func(e *odoosim.Env) error { return e.ChangePassword(odoosim.Alice, newHash) })
	totp := odoosim.NewTOTPSecret()
	w.totp = r.request(w.alice, func(e *odoosim.Env) error { return e.SetTOTP(odoosim.Alice, totp) })
	w.totpOff = r.request(w.carol, func(e *odoosim.Env) error { return e.SetTOTP(odoosim.Carol, "") })
	var key odoosim.APIKey
	w.apiKey = r.request(w.carol, func(e *odoosim.Env) (err error) { key, err = e.CreateAPIKey("CI pipeline", "rpc"); return err })
	dbSecret := "7b0f3c52-91d4-4e8a-b6f1-0c9e2d4a5f68"
	w.dbSecret = r.request(admin, func(e *odoosim.Env) error { return e.SetConfigParameter("database.secret", dbSecret) })
	w.baseURL = r.request(admin, func(e *odoosim.Env) error { return e.SetConfigParameter("web.base.url", "https://erp.example.com") })
	// An integration names carol's session by its identifier.
	w.message = r.ok(r.sim.Transaction(r.ctx, odoosim.Carol, func(e *odoosim.Env) error {
		if err := e.EmitMessage(odoosim.Carol, w.carol.Identifier()); err != nil {
			return err
		}
		return e.Unlink("res_users_apikeys", key.ID)
	}))
	w.revoke = r.request(admin, func(e *odoosim.Env) error { return e.RevokeSession(w.alice) })

	w.secrets = []secret{
		{"alice's new password hash", newHash},
		{"alice's TOTP secret", totp},
		{"carol's old TOTP secret", odoosim.CarolTOTPSecret},
		{"the API key's hash", key.Hash},
		{"the API key's index", key.Index},
		{"the API key itself", key.Key},
		{"the new database.secret", dbSecret},
		{"the old database.secret", odoosim.DatabaseSecret},
	}
	for uid, h := range odoosim.PasswordHashes {
		w.secrets = append(w.secrets, secret{"the fixture's password hash of " + odoosim.Logins[uid], h})
	}
	for _, s := range []*odoosim.Session{admin, w.alice, w.carol} {
		w.secrets = append(w.secrets,
			secret{"the session identifier of " + odoosim.Logins[s.UID], s.Identifier()},
			secret{"the session id of " + odoosim.Logins[s.UID], s.SID})
	}
	return w
}

// findSecrets reports every secret found in b (named where).
func findSecrets(t *testing.T, where string, b []byte, secrets []secret) {
	t.Helper()
	for _, s := range secrets {
		if i := bytes.Index(b, []byte(s.value)); i >= 0 {
			lo, hi := max(0, i-80), min(len(b), i+len(s.value)+40)
			t.Errorf("%s holds %s (%q) at byte %d: …%q…", where, s.what, s.value, i, b[lo:hi])
		}
	}
}

// metricsURL reads the daemon's metrics address from its log.
func metricsURL(d *daemon) string {
	m := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+/metrics)`).FindAllStringSubmatch(d.log(), -1)
	if m == nil {
		return ""
	}
	return m[len(m)-1][1]
}

// stopSearching catches up, reads /metrics, stops the daemon and reports
// every secret found in the store's files, both exports, the daemon's log,
// the metrics or the session list; it returns the stored events.
func (r *odooRig) stopSearching(secrets []secret) []*event {
	t := r.t
	t.Helper()
	r.catchUp()
	var metrics []byte
	if u := metricsURL(r.d); u == "" {
		t.Error("no metrics address in the daemon's log")
	} else if resp, err := http.Get(u); err != nil {
		t.Errorf("GET %s: %v", u, err)
	} else {
		metrics, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	evs := r.stop()

	for p, b := range storeFiles(t, r.dataDir) {
		findSecrets(t, "store file "+filepath.Base(p), b, secrets)
	}
	for _, format := range []string{"jsonl", "csv"} {
		out, errOut, code := runCLI(t, "export", "--data-dir", r.dataDir, "--format", format)
		if code != 0 {
			t.Fatalf("export --format %s: exit %d: %s", format, code, errOut)
		}
		findSecrets(t, "the "+format+" export", []byte(out), secrets)
	}
	findSecrets(t, "the daemon's log", []byte(r.d.log()), secrets)
	findSecrets(t, "/metrics", metrics, secrets)
	sessOut, _, _ := runCLI(t, "sessions", "--data-dir", r.dataDir, "--format", "json")
	findSecrets(t, "cdcaudit sessions", []byte(sessOut), secrets)
	return evs
}

// TestAttributionSecrets: password hashes, TOTP secrets, API keys,
// 'database.secret' and session identifiers reach the WAL in Odoo's
// ordinary work; none of them reaches the store file, an export, the log
// or the metrics. The events still say which columns changed and which
// were redacted.
func TestAttributionSecrets(t *testing.T) {
	r := startOdoo(t, "--log-level", "debug")
	w := secretsWorkload(t, r)
	evs := r.stopSearching(w.secrets)

	const red = `"[redacted]"`
	// redacted and changed of the events that carry each secret.
	checkRedacted := func(e *event, cols ...string) {
		t.Helper()
		var redacted []string
		if err := json.Unmarshal(e.Redacted, &redacted); err != nil {
			t.Fatalf("%s: redacted %s", describe(e), e.Redacted)
		}
		for _, c := range cols {
			if !slices.Contains(redacted, c) {
				t.Errorf("%s: redacted %v lacks %s", describe(e), redacted, c)
			}
			for name, img := range map[string]row{"before": e.BeforeRow, "after": e.AfterRow} {
				if v, ok := img.get(c); ok && string(v) != red && string(v) != "null" {
					t.Errorf("%s: %s.%s = %s, want %s", describe(e), name, c, v, red)
				}
			}
		}
	}
	changes := func(e *event, cols ...string) {
		t.Helper()
		for _, c := range cols {
			if !slices.Contains(e.ChangedList, c) {
				t.Errorf("%s: changed %v lacks %s: a redacted change is still a change", describe(e), e.ChangedList, c)
			}
		}
	}

	pw := pick(evs, w.password, "res_users", "update")
	if len(pw) != 2 {
		t.Fatalf("the password change: %d res_users updates, want 2", len(pw))
	}
	checkRedacted(pw[0], "password")
	changes(pw[0], "password")
	if !slices.Equal(pw[0].ChangedList, []string{"password"}) {
		t.Errorf("%s: changed %v, want [password]", describe(pw[0]), pw[0].ChangedList)
	}
	tu := nth(t, evs, w.totp, "res_users", "update", 0)
	checkRedacted(tu, "totp_secret", "password")
	changes(tu, "totp_secret")
	off := nth(t, evs, w.totpOff, "res_users", "update", 0)
	checkRedacted(off, "totp_secret")
	changes(off, "totp_secret")
	if v := value(off.AfterRow, "totp_secret"); v != "null" {
		t.Errorf("%s: disabled TOTP: after.totp_secret = %s, want null (SQL NULL stays null)", describe(off), v)
	}

	k := one(t, evs, w.apiKey, "res_users_apikeys", "insert")
	checkRedacted(k, "key", "index")
	changes(k, "key", "index", "name")
	if value(k.AfterRow, "name") != `"CI pipeline"` {
		t.Errorf("%s: the key's name %s should not be redacted", describe(k), value(k.AfterRow, "name"))
	}
	kd := one(t, evs, w.message, "res_users_apikeys", "delete")
	checkRedacted(kd, "key", "index")
	checkActor(t, kd, who{odoosim.Carol, "message", sid(w.carol), "message"}, "the API key's removal, named by a message carrying carol's session identifier")

	p := one(t, evs, w.dbSecret, "ir_config_parameter", "update")
	checkRedacted(p, "value")
	changes(p, "value")
	u := one(t, evs, w.baseURL, "ir_config_parameter", "update")
	if v := value(u.AfterRow, "value"); v != `"https://erp.example.com"` {
		t.Errorf("%s: web.base.url's value %s: only secret keys are redacted", describe(u), v)
	}
	var ured []string
	json.Unmarshal(u.Redacted, &ured)
	if len(ured) != 0 {
		t.Errorf("%s: redacted %v, want none", describe(u), ured)
	}

	d := one(t, evs, w.deviceRow, "res_device_log", "insert")
	checkRedacted(d, "session_identifier")
	changes(d, "session_identifier")
	for _, e := range pick(evs, w.revoke, "res_device_log", "update") {
		checkRedacted(e, "session_identifier")
		checkActor(t, e, who{user: odoosim.Admin, session: "*"}, "the revocation")
	}
	// Every event of the users table hides every user's hash.
	for _, e := range evs {
		if e.Table == "res_users" {
			checkRedacted(e, "password", "totp_secret")
		}
	}
	if t.Failed() {
		return
	}
	verifyOK(t, r.dataDir, changeCount(evs))
}

// TestAttributionSecretsHMAC: with a key, redacted values become keyed
// HMACs: equal values compare equal, different ones differ, and the values
// themselves stay out of the store. Extra columns can be redacted by
// configuration.
func TestAttributionSecretsHMAC(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "redact.key")
	kb := make([]byte, 24)
	rand.Read(kb)
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(kb)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startOdoo(t, "--redact-key-file", keyFile, "--redact", "public.res_partner.phone")
	alice := r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	r.request(alice, writeOrder(1, odoosim.Vals{"note": "first"}))
	h1, h2 := odoosim.HashPassword("alice-Autumn2026"), odoosim.HashPassword("alice-Winter2027")
	c1 := r.request(alice, func(e *odoosim.Env) error { return e.ChangePassword(odoosim.Alice, h1) })
	time.Sleep(10 * time.Millisecond)
	c2 := r.request(alice, func(e *odoosim.Env) error { return e.ChangePassword(odoosim.Alice, h2) })
	phone := r.request(alice, writePartner(10, odoosim.Vals{"phone": "+1 555 0199"}))
	evs := r.stop()

	secrets := []secret{{"the first new hash", h1}, {"the second new hash", h2}, {"the fixture's hash", odoosim.PasswordHashes[odoosim.Alice]},
		{"the new phone number", "+1 555 0199"}, {"the session identifier", alice.Identifier()}}
	for p, b := range storeFiles(t, r.dataDir) {
		findSecrets(t, "store file "+filepath.Base(p), b, secrets)
	}
	findSecrets(t, "the key file's content in the log", []byte(r.d.log()), []secret{{"the HMAC key", hex.EncodeToString(kb)}})

	hmacRE := regexp.MustCompile(`^"hmac-sha256:[0-9a-f]{64}"$`)
	get := func(e *event, img row, col string) string {
		t.Helper()
		v := value(img, col)
		if !hmacRE.MatchString(v) {
			t.Errorf("%s: %s = %s, want \"hmac-sha256:<64 hex digits>\"", describe(e), col, v)
		}
		return v
	}
	e1 := nth(t, evs, c1, "res_users", "update", 0)
	e2 := nth(t, evs, c2, "res_users", "update", 0)
	old1, new1 := get(e1, e1.BeforeRow, "password"), get(e1, e1.AfterRow, "password")
	old2, new2 := get(e2, e2.BeforeRow, "password"), get(e2, e2.AfterRow, "password")
	if new1 != old2 {
		t.Errorf("the first change's new hash and the second's old one are the same value: HMACs %s and %s differ", new1, old2)
	}
	if old1 == new1 || new1 == new2 {
		t.Errorf("different values with equal HMACs: %s %s %s", old1, new1, new2)
	}
	ph := one(t, evs, phone, "res_partner", "update")
	get(ph, ph.AfterRow, "phone")
	var redacted []string
	json.Unmarshal(ph.Redacted, &redacted)
	if !slices.Contains(redacted, "phone") || !slices.Contains(ph.ChangedList, "phone") {
		t.Errorf("%s: redacted %v, changed %v: want phone in both (--redact public.res_partner.phone)", describe(ph), redacted, ph.ChangedList)
	}
	if strings.Contains(ph.Raw, "555 0199") {
		t.Errorf("%s holds the phone number", describe(ph))
	}
}
