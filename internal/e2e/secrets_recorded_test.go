package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// recordedSecrets are the secret columns of the recorded Odoo that its
// traffic writes: each must be in redacted of every insert and update of
// its table.
var recordedSecrets = map[string][]string{
	"res_users":               {"password", "totp_secret"},
	"change_password_own":     {"new_password", "confirm_password"},
	"change_password_user":    {"new_passwd"},
	"res_users_identitycheck": {"password"},
	"auth_totp_wizard":        {"secret", "url", "qrcode"},
	"res_users_apikeys":       {"key", "index"},
	"res_device_log":          {"session_identifier"},
}

// TestSecretsRecordedOdooStartOrder: cdcaudit starts first, as in a
// compose file, on an empty database with the default profile (auto); then
// the real Odoo database is restored into it and everything real Odoo
// committed is replayed. No secret the recording holds — the dump's
// password hashes and database.secret, the passwords typed into the
// wizards, the TOTP secret, the API key's hash and index, every session
// identifier of the device log and of Odoo's log — reaches the store, the
// exports, the log, /metrics or the session list; the events of those
// tables exist with the secret columns redacted.
func TestSecretsRecordedOdooStartOrder(t *testing.T) {
	r := startOnEmpty(t)
	ctx, db := r.ctx, r.db

	// Odoo's database appears after cdcaudit.
	restoreRecording(t, db.dsn)
	var secrets []secret
	seen := map[string]bool{}
	keep := func(what string, values ...string) int {
		n := 0
		for _, v := range values {
			if v != "" && !seen[v] {
				seen[v] = true
				secrets = append(secrets, secret{what, v})
				n++
			}
		}
		return n
	}
	column := func(sql string) []string {
		t.Helper()
		rows, err := r.ctl.Query(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return vals
	}
	need := func(what string, n, min int) {
		t.Helper()
		if n < min {
			t.Fatalf("%s: %d found in the recording, want at least %d", what, n, min)
		}
	}
	need("the dump's password hashes", keep("a password hash of the dump", column(`SELECT password FROM res_users WHERE password <> ''`)...), 2)
	need("the dump's database.secret", keep("the dump's database.secret", column(`SELECT value FROM ir_config_parameter WHERE key = 'database.secret'`)...), 1)

	// Updates are captured once cdcaudit lists the table in its changes
	// publication (docs/operations.md).
	waitListed(t, r, "cdcaudit_changes")
	rec := replayRecording(t, db.dsn)

	// The lab's admin password is "admin", its login too: a password that
	// is also a login cannot be searched for.
	logins := column(`SELECT login FROM res_users`)
	var typed, hashes, totp, keys int
	for _, x := range rec.xids {
		tx := rec.byXID[x]
		plain := append(append(append(tx.Literals("change_password_own", "new_password"), tx.Literals("change_password_own", "confirm_password")...),
			tx.Literals("change_password_user", "new_passwd")...), tx.Literals("res_users_identitycheck", "password")...)
		typed += keep("a password typed into a wizard ("+tx.scenario+")", slices.DeleteFunc(plain, func(p string) bool { return slices.Contains(logins, p) })...)
		hashes += keep("a password hash the traces set ("+tx.scenario+")", tx.Literals("res_users", "password")...)
		totp += keep("a TOTP secret", append(tx.Literals("auth_totp_wizard", "secret"), tx.Literals("res_users", "totp_secret")...)...)
		keys += keep("an API key's hash or index", append(tx.Literals("res_users_apikeys", "key"), tx.Literals("res_users_apikeys", "index")...)...)
	}
	need("passwords typed into the wizards", typed, 4)
	need("password hashes set by the traces", hashes, 5)
	need("TOTP secrets (the wizard's and the stored one)", totp, 2)
	need("the API key's hash and index", keys, 2)
	need("session identifiers of the device log", keep("a session identifier (res_device_log)", column(`SELECT session_identifier FROM res_device_log`)...), 5)
	log, err := os.ReadFile(filepath.Join(recordingDir, "odoo.log"))
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	for _, m := range regexp.MustCompile(`revokes devices \(([^)]*)\)`).FindAllStringSubmatch(string(log), -1) {
		logged = append(logged, strings.Split(m[1], ", ")...)
	}
	if len(logged) == 0 {
		t.Fatal("odoo.log: no session identifier logged")
	}
	keep("a session identifier in odoo.log", logged...)
	keep("the database.secret after the replay", column(`SELECT value FROM ir_config_parameter WHERE key = 'database.secret'`)...)
	keep("a password hash after the replay", column(`SELECT password FROM res_users WHERE password <> ''`)...)
	t.Logf("%d secrets from the recording", len(secrets))

	evs := r.stopSearching(secrets)

	if !strings.Contains(r.d.log(), "application profile detected in the stream") || !strings.Contains(r.d.log(), "profile=odoo") {
		t.Errorf("the log does not say when the Odoo profile was detected:\n%s", tail(r.d.log(), 3000))
	}
	count := map[string]int{}
	for _, e := range evs {
		if cols, ok := recordedSecrets[e.Table]; ok && e.Op != "delete" {
			count[e.Table]++
			checkRedacted(t, e, cols...)
		}
		if e.Table == "ir_config_parameter" && value(e.AfterRow, "key") == `"database.secret"` {
			count["database.secret"]++
			checkRedacted(t, e, "value")
		}
	}
	for table := range recordedSecrets {
		if count[table] == 0 {
			t.Errorf("no insert or update of %s captured", table)
		}
	}
	if count["database.secret"] == 0 {
		t.Errorf("database.secret's row not captured")
	}
	t.Logf("events checked for redaction: %v", count)
}

// waitListed waits until publication lists every table of the public
// schema with a usable replica identity: from then on their updates and
// deletes are captured (docs/operations.md).
func waitListed(t *testing.T, r *odooRig, publication string) {
	t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	for {
		var missing []string
		rows, err := r.ctl.Query(r.ctx, `
			SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'public' AND c.relkind = 'r'
			  AND (c.relreplident = 'f'
			       OR c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
			       OR c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident))
			  AND NOT EXISTS (SELECT 1 FROM pg_publication_tables p
			                  WHERE p.pubname = $1 AND p.schemaname = 'public' AND p.tablename = c.relname)
			ORDER BY 1`, publication)
		if err == nil {
			missing, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) == 0 {
			return
		}
		if err := r.d.exited(); err != nil || time.Now().After(deadline) {
			t.Fatalf("publication %s does not list %d restored tables (%s …) (daemon: %v)\n%s",
				publication, len(missing), missing[0], err, tail(r.d.log(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
