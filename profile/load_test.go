package profile

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const genericYAML = `
name: shop
users: {table: public.users, id: id, login: email}
logins:
  - {table: public.login_events, user: user_id, at: created_at}
sessions:
  - table: public.http_sessions
    kind: session
    id: sid
    user: user_id
    ip: ip
    user_agent: user_agent
    created: created_at
    last_seen: last_seen
    ended: logged_out_at
columns: {created_by: created_by, updated_by: updated_by, updated_at: updated_at}
secrets:
  - {table: public.users, column: password_hash}
  - {table: public.settings, column: value, where: name, values: ["*secret*"]}
raw_writes:
  - {table: public.job_queue, column: "*"}
`

func writeProfile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "profile.yml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGeneric(t *testing.T) {
	p, err := Load(writeProfile(t, genericYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := Profile{
		Name:   "shop",
		Users:  UsersTable{Table: "public.users", ID: "id", Login: "email"},
		Logins: []LoginTable{{Table: "public.login_events", User: "user_id", At: "created_at"}},
		Sessions: []SessionTable{{Table: "public.http_sessions", Kind: "session", ID: "sid", User: "user_id",
			IP: "ip", UserAgent: "user_agent", Created: "created_at", LastSeen: "last_seen", Ended: "logged_out_at"}},
		Columns: Columns{CreatedBy: "created_by", UpdatedBy: "updated_by", UpdatedAt: "updated_at"},
		Secrets: []ColumnRule{{Table: "public.users", Column: "password_hash"},
			{Table: "public.settings", Column: "value", Where: "name", Values: []string{"*secret*"}}},
		RawWrites: []ColumnRule{{Table: "public.job_queue", Column: "*"}},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got  %+v\nwant %+v", p, want)
	}

	p, err = Parse([]byte("secrets: [{table: public.t, column: c}]\n"))
	if err != nil || p.Name != "generic" {
		t.Fatalf("default name: %v %q", err, p.Name)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"empty", "", "empty profile"},
		{"typo", "sessions:\n  - table: public.s\n    kind: session\n    id: sid\n    usr: user_id\n", "line 5: field usr not found"},
		{"unknown top key", "session: []\n", "field session not found"},
		{"two documents", "name: a\n---\nname: b\n", "more than one YAML document"},
		{"not a mapping", "- a\n", "cannot unmarshal"},
		{"session kind", "sessions: [{table: public.s, kind: sessions, id: sid}]\n", `sessions[0].kind: "sessions" is not a session table kind`},
		{"session kind missing", "sessions: [{table: public.s, id: sid}]\n", "sessions[0].kind: missing"},
		{"session id missing", "sessions: [{table: public.s, kind: session}]\n", "sessions[0].id: missing"},
		{"unqualified table", "sessions: [{table: s, kind: session, id: sid}]\n", `sessions[0].table: "s" is not schema.table`},
		{"glob table", "logins: [{table: public.log_*, user: u}]\n", "logins[0].table: \"public.log_*\": a table here is a name, not a glob"},
		{"login user", "logins: [{table: public.l}]\n", "logins[0].user: missing"},
		{"users login", "users: {table: public.u, id: id}\n", "users.login: missing"},
		{"models", "models: {table: public.ir_model}\n", "models.model: missing"},
		{"bad secret glob", "secrets: [{table: 'public.[x', column: c}]\n", `secrets[0]: table: "public.[x": malformed glob`},
		{"secret without column", "secrets: [{table: public.x}]\n", "secrets[0]: column: missing"},
		{"where without values", "secrets: [{table: public.x, column: v, where: k}]\n", `secrets[0]: where: "k" given without values`},
		{"values without where", "raw_writes: [{table: public.x, column: v, values: [a]}]\n", "raw_writes[0]: values: given without where"},
		{"unqualified rule", "raw_writes: [{table: bus_bus, column: '*'}]\n", `raw_writes[0]: table: "bus_bus" is not schema-qualified`},
		{"id_length", "sessions: [{table: public.s, kind: session, id: sid, id_length: -1}]\n", "sessions[0].id_length: -1 is negative"},
		{"user_key alone", "sessions: [{table: public.s, kind: session, id: sid, user_key: uid}]\n", "sessions[0].user_key: set without user"},
		{"revoked_by alone", "sessions: [{table: public.s, kind: session, id: sid, revoked_by: u}]\n", "revoked_by: set without revoked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeProfile(t, tc.yaml)
			_, err := Load(file)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
				t.Fatalf("error %q lacks %q or the file name", err, tc.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yml")); err == nil {
		t.Fatal("missing file: no error")
	}
}

// The built-in profile passes its own checks, and survives a YAML round trip
// through Load (so `cdcaudit` users can start a generic profile from it).
func TestOdooValid(t *testing.T) {
	if err := Odoo().Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(Odoo())
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !reflect.DeepEqual(p, Odoo()) {
		t.Fatalf("round trip: %+v", p)
	}
}

func TestColumnRuleString(t *testing.T) {
	r := ColumnRule{Table: "public.ir_config_parameter", Column: "value", Where: "key", Values: []string{"database.secret", "*token*"}}
	if got := r.String(); got != "public.ir_config_parameter.value[key=database.secret|*token*]" {
		t.Fatal(got)
	}
	if got := (ColumnRule{Table: "*.res_users", Column: "password"}).String(); got != "*.res_users.password" {
		t.Fatal(got)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*secret*", "database.secret", true},
		{"*secret*", "auth_oauth/secret", true},
		{"a/*", "a/b/c", true},
		{"public.res_*", "public.res_users", true},
		{"public.res_*", "other.res_users", false},
		{"*", "public.x", true},
		{"[", "[", false},
		{"database.secret", "database.secret", true},
		{"database.secret", "database.secrets", false},
	} {
		if got := Match(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
}

func TestParseColumnRule(t *testing.T) {
	for in, want := range map[string]ColumnRule{
		"public.res_partner.vat": {Table: "public.res_partner", Column: "vat"},
		"*.*.api_key":            {Table: "*.*", Column: "api_key"},
		"*.token":                {Table: "*", Column: "token"},
		"public.t.c[ab]":         {Table: "public.t", Column: "c[ab]"},
		" public.ir_config_parameter.value[key=database.secret|*token*] ": {Table: "public.ir_config_parameter", Column: "value",
			Where: "key", Values: []string{"database.secret", "*token*"}},
	} {
		got, err := ParseColumnRule(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseColumnRule(%q) = %+v, %v", in, got, err)
		}
		if err == nil {
			if back, err := ParseColumnRule(got.String()); err != nil || !reflect.DeepEqual(back, got) {
				t.Errorf("round trip of %q: %+v %v", got.String(), back, err)
			}
		}
	}
	for in, wantErr := range map[string]string{
		"vat":                "is not schema.table.column",
		"public.":            "is not schema.table.column",
		"res_partner.vat":    `table: "res_partner" is not schema-qualified`,
		"public.t.c[k=]":     "given without values",
		"public.[t.c":        "malformed glob",
		"public.t.value[=x]": "values: given without where",
		".vat":               "is not schema.table.column",
	} {
		if _, err := ParseColumnRule(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseColumnRule(%q): %v, want %q", in, err, wantErr)
		}
	}
}

// A profile's session identifiers, JSON session payloads and password
// column are secrets even when its author forgot to list them.
func TestSecretRulesImplied(t *testing.T) {
	p := Profile{
		Users:    UsersTable{Table: "public.app_user", ID: "id", Login: "email", Password: "password_hash"},
		Sessions: []SessionTable{{Table: "public.http_sessions", Kind: "session", ID: "sid", User: "payload", UserKey: "uid"}},
		Secrets:  []ColumnRule{{Table: "public.http_sessions", Column: "sid"}, {Table: "public.app_user", Column: "totp"}},
	}
	got := map[string]int{}
	for _, r := range p.SecretRules() {
		got[r.Table+"."+r.Column]++
	}
	for _, want := range []string{"public.http_sessions.sid", "public.http_sessions.payload", "public.app_user.password_hash", "public.app_user.totp"} {
		if got[want] != 1 {
			t.Errorf("%s: %d rules, want exactly 1 (all: %v)", want, got[want], got)
		}
	}
	if len(p.Secrets) != 2 {
		t.Error("SecretRules changed the profile's own list")
	}
	// The Odoo profile lists its own already: nothing is added twice.
	o := Odoo()
	if len(o.SecretRules()) != len(o.Secrets) {
		t.Errorf("Odoo: %d implied rules beyond its list", len(o.SecretRules())-len(o.Secrets))
	}
}
