package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
)

// row builds a Row from name, encoded value pairs.
func row(kv ...string) audit.Row {
	r := make(audit.Row, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		r = append(r, audit.Column{Name: kv[i], Value: []byte(kv[i+1])})
	}
	return r
}

func ev(table string, op audit.Op, key, before, after audit.Row, changed ...string) *audit.Event {
	return &audit.Event{Schema: "public", Table: table, Op: op, Key: key, Before: before, After: after, Changed: changed}
}

func rowMap(r audit.Row) map[string]string {
	if r == nil {
		return nil
	}
	m := map[string]string{}
	for _, c := range r {
		m[c.Name] = string(c.Value)
	}
	return m
}

const red = `"[redacted]"`

func mac(key, v string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(v))
	return `"hmac-sha256:` + hex.EncodeToString(m.Sum(nil)) + `"`
}

func TestApply(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	hash1 := `"$pbkdf2-sha512$600000$abc$def"`
	totp := `"JBSWY3DPEHPK3PXP"`
	cases := []struct {
		name     string
		key      string
		rules    []profile.ColumnRule
		event    *audit.Event
		key_     map[string]string
		before   map[string]string
		after    map[string]string
		redacted []string
	}{{
		name: "odoo password and totp, placeholder",
		event: ev("res_users", audit.OpUpdate, row("id", "6"),
			row("id", "6", "login", `"alice"`, "password", `"old"`, "totp_secret", "null", "write_uid", "6"),
			row("id", "6", "login", `"alice"`, "password", hash1, "totp_secret", totp, "write_uid", "6"),
			"password", "totp_secret"),
		key_:     map[string]string{"id": "6"},
		before:   map[string]string{"id": "6", "login": `"alice"`, "password": red, "totp_secret": "null", "write_uid": "6"},
		after:    map[string]string{"id": "6", "login": `"alice"`, "password": red, "totp_secret": red, "write_uid": "6"},
		redacted: []string{"password", "totp_secret"},
	}, {
		name: "odoo password, hmac",
		key:  key,
		event: ev("res_users", audit.OpUpdate, row("id", "6"),
			row("id", "6", "password", hash1, "totp_secret", totp),
			row("id", "6", "password", `"new"`, "totp_secret", totp), "password"),
		key_:     map[string]string{"id": "6"},
		before:   map[string]string{"id": "6", "password": mac(key, hash1), "totp_secret": mac(key, totp)},
		after:    map[string]string{"id": "6", "password": mac(key, `"new"`), "totp_secret": mac(key, totp)},
		redacted: []string{"password", "totp_secret"},
	}, {
		name: "insert with NULL secrets: values stay null, names listed",
		event: ev("res_users", audit.OpInsert, row("id", "7"), nil,
			row("id", "7", "totp_secret", "null", "oauth_access_token", "null", "password", `"x"`)),
		key_:     map[string]string{"id": "7"},
		after:    map[string]string{"id": "7", "totp_secret": "null", "oauth_access_token": "null", "password": red},
		redacted: []string{"oauth_access_token", "password", "totp_secret"},
	}, {
		name: "ir_config_parameter database.secret",
		event: ev("ir_config_parameter", audit.OpInsert, row("id", "3"), nil,
			row("id", "3", "key", `"database.secret"`, "value", `"s3cr3t-uuid"`)),
		key_:     map[string]string{"id": "3"},
		after:    map[string]string{"id": "3", "key": `"database.secret"`, "value": red},
		redacted: []string{"value"},
	}, {
		name: "ir_config_parameter other key untouched",
		event: ev("ir_config_parameter", audit.OpInsert, row("id", "4"), nil,
			row("id", "4", "key", `"web.base.url"`, "value", `"https://erp.example"`)),
		key_:  map[string]string{"id": "4"},
		after: map[string]string{"id": "4", "key": `"web.base.url"`, "value": `"https://erp.example"`},
	}, {
		name: "ir_config_parameter key with a slash and capitals",
		event: ev("ir_config_parameter", audit.OpInsert, row("id", "5"), nil,
			row("id", "5", "key", `"auth_oauth/Client_SECRET"`, "value", `"abc"`)),
		key_:     map[string]string{"id": "5"},
		after:    map[string]string{"id": "5", "key": `"auth_oauth/Client_SECRET"`, "value": red},
		redacted: []string{"value"},
	}, {
		name: "ir_config_parameter renamed away from a secret key: both images hidden",
		event: ev("ir_config_parameter", audit.OpUpdate, row("id", "3"),
			row("id", "3", "key", `"database.secret"`, "value", `"v"`),
			row("id", "3", "key", `"database.old"`, "value", `"v"`), "key"),
		key_:     map[string]string{"id": "3"},
		before:   map[string]string{"id": "3", "key": `"database.secret"`, "value": red},
		after:    map[string]string{"id": "3", "key": `"database.old"`, "value": red},
		redacted: []string{"value"},
	}, {
		name:   "delete with the key only: where column absent, nothing to hide",
		event:  ev("ir_config_parameter", audit.OpDelete, row("id", "3"), row("id", "3"), nil),
		key_:   map[string]string{"id": "3"},
		before: map[string]string{"id": "3"},
	}, {
		name:     "secret in the key: http_sessions.sid, and the payload",
		event:    ev("http_sessions", audit.OpDelete, row("sid", `"abcdef"`), row("sid", `"abcdef"`, "payload", `"{}"`), nil),
		key_:     map[string]string{"sid": red},
		before:   map[string]string{"sid": red, "payload": red},
		redacted: []string{"payload", "sid"},
	}, {
		name: "device log session identifier",
		event: ev("res_device_log", audit.OpInsert, row("id", "9"), nil,
			row("id", "9", "session_identifier", `"0123456789abcdef0123456789abcdef0123456789"`, "user_id", "6", "ip_address", `"10.0.0.1"`)),
		key_:     map[string]string{"id": "9"},
		after:    map[string]string{"id": "9", "session_identifier": red, "user_id": "6", "ip_address": `"10.0.0.1"`},
		redacted: []string{"session_identifier"},
	}, {
		name:  "table without rules untouched",
		event: ev("sale_order", audit.OpInsert, row("id", "1"), nil, row("id", "1", "password", `"not a secret here"`)),
		key_:  map[string]string{"id": "1"},
		after: map[string]string{"id": "1", "password": `"not a secret here"`},
	}, {
		name:  "extra glob rules for any table",
		rules: []profile.ColumnRule{{Table: "*", Column: "*token*"}, {Table: "hr.*", Column: "ssn"}},
		event: &audit.Event{Schema: "hr", Table: "employee", Op: audit.OpInsert, Key: row("id", "1"),
			After: row("id", "1", "ssn", `"123-45-6789"`, "api_token", `"t"`, "name", `"Bob"`)},
		key_:     map[string]string{"id": "1"},
		after:    map[string]string{"id": "1", "ssn": red, "api_token": red, "name": `"Bob"`},
		redacted: []string{"api_token", "ssn"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rules := append(profile.Odoo().Secrets, tc.rules...)
			var k []byte
			if tc.key != "" {
				k = []byte(tc.key)
			}
			r, err := New(rules, k)
			if err != nil {
				t.Fatal(err)
			}
			changed := append([]string(nil), tc.event.Changed...)
			r.Apply(tc.event)
			if got := rowMap(tc.event.Key); !reflect.DeepEqual(got, tc.key_) {
				t.Errorf("key = %v, want %v", got, tc.key_)
			}
			if got := rowMap(tc.event.Before); !reflect.DeepEqual(got, tc.before) {
				t.Errorf("before = %v, want %v", got, tc.before)
			}
			if got := rowMap(tc.event.After); !reflect.DeepEqual(got, tc.after) {
				t.Errorf("after = %v, want %v", got, tc.after)
			}
			if !reflect.DeepEqual(tc.event.Redacted, tc.redacted) {
				t.Errorf("redacted = %q, want %q", tc.event.Redacted, tc.redacted)
			}
			if !reflect.DeepEqual(tc.event.Changed, changed) && !(len(changed) == 0 && len(tc.event.Changed) == 0) {
				t.Errorf("changed touched: %q", tc.event.Changed)
			}
			// Applying twice changes nothing more (a replayed event).
			before := rowMap(tc.event.Before)
			r.Apply(tc.event)
			if tc.key == "" && !reflect.DeepEqual(rowMap(tc.event.Before), before) {
				t.Errorf("second Apply changed the event")
			}
		})
	}
}

// The encoded event of a redacted change holds no trace of the secret.
func TestEncodedEventHasNoSecret(t *testing.T) {
	r, err := New(profile.Odoo().Secrets, nil)
	if err != nil {
		t.Fatal(err)
	}
	arena := []byte(`"$pbkdf2-sha512$hash"`)
	e := ev("res_users", audit.OpUpdate, row("id", "2"),
		audit.Row{{Name: "id", Value: []byte("2")}, {Name: "password", Value: arena}},
		audit.Row{{Name: "id", Value: []byte("2")}, {Name: "password", Value: arena}})
	r.Apply(e)
	body := string(e.AppendBody(nil))
	if strings.Contains(body, "pbkdf2") || !strings.Contains(body, `"redacted":["password"]`) {
		t.Fatalf("encoded: %s", body)
	}
	// The value was replaced, not overwritten: bytes shared with others stay.
	if string(arena) != `"$pbkdf2-sha512$hash"` {
		t.Fatalf("shared bytes changed: %s", arena)
	}
}

func TestRedactedMergesSorted(t *testing.T) {
	r, _ := New([]profile.ColumnRule{{Table: "public.t", Column: "b"}, {Table: "public.t", Column: "d"}}, nil)
	e := ev("t", audit.OpInsert, nil, nil, row("d", "1", "a", "2", "b", "3"))
	e.Redacted = []string{"a", "c"}
	r.Apply(e)
	if want := []string{"a", "b", "c", "d"}; !reflect.DeepEqual(e.Redacted, want) {
		t.Fatalf("redacted = %q, want %q", e.Redacted, want)
	}
}

func TestHMACComparable(t *testing.T) {
	k1 := []byte("0123456789abcdef")
	r1, _ := New(profile.Odoo().Secrets, k1)
	r2, _ := New(profile.Odoo().Secrets, []byte("fedcba9876543210"))
	a := ev("res_users_apikeys", audit.OpInsert, nil, nil, row("key", `"k1"`))
	b := ev("res_users_apikeys", audit.OpInsert, nil, nil, row("key", `"k1"`))
	c := ev("res_users_apikeys", audit.OpInsert, nil, nil, row("key", `"k1"`))
	d := ev("res_users_apikeys", audit.OpInsert, nil, nil, row("key", `"k2"`))
	r1.Apply(a)
	r1.Apply(b)
	r2.Apply(c)
	r1.Apply(d)
	va, vb, vc, vd := string(a.After[0].Value), string(b.After[0].Value), string(c.After[0].Value), string(d.After[0].Value)
	if va != vb || va == vc || va == vd || !strings.HasPrefix(va, `"hmac-sha256:`) || len(va) != 2+len(HMACPrefix)+64 {
		t.Fatalf("a %s b %s c %s d %s", va, vb, vc, vd)
	}
	// The caller's key can be reused: New keeps its own copy.
	k1[0] = 'X'
	e := ev("res_users_apikeys", audit.OpInsert, nil, nil, row("key", `"k1"`))
	r1.Apply(e)
	if string(e.After[0].Value) != va {
		t.Fatal("key not copied")
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		rules []profile.ColumnRule
		key   []byte
		want  string
	}{
		{[]profile.ColumnRule{{Table: "public.[x", Column: "c"}}, nil, `rule 1 (public.[x.c): table: "public.[x": malformed glob`},
		{[]profile.ColumnRule{{Table: "public.t", Column: "c["}}, nil, "malformed glob"},
		{[]profile.ColumnRule{{Table: "public.t", Column: "c", Where: "k", Values: []string{"[a"}}}, nil, "values[0]"},
		{[]profile.ColumnRule{{Table: "t", Column: "c"}}, nil, "not schema-qualified"},
		{[]profile.ColumnRule{{Table: "public.t"}}, nil, "column: missing"},
		{nil, []byte("short"), "too short"},
	} {
		if _, err := New(tc.rules, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v): %v, want %q", tc.rules, err, tc.want)
		}
	}
	r, err := New(nil, nil)
	if err != nil || !r.Empty() {
		t.Fatal(err)
	}
	r.Apply(ev("res_users", audit.OpInsert, nil, nil, row("password", `"x"`))) // no rules: nothing
}

func TestConcurrentApply(t *testing.T) {
	r, err := New(profile.Odoo().Secrets, []byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	tables := []string{"res_users", "sale_order", "ir_config_parameter", "res_device_log", "res_partner"}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				e := ev(tables[(g+i)%len(tables)], audit.OpInsert, nil, nil,
					row("id", "1", "key", `"database.secret"`, "value", `"v"`, "password", `"p"`, "session_identifier", `"s"`, "name", `"n"`))
				r.Apply(e)
			}
		}(g)
	}
	wg.Wait()
}

func BenchmarkApply(b *testing.B) {
	r, err := New(profile.Odoo().Secrets, nil)
	if err != nil {
		b.Fatal(err)
	}
	after := row("id", "42", "name", `"S00042"`, "state", `"sale"`, "partner_id", "7", "amount_total", `"120.00"`,
		"create_uid", "6", "create_date", `"2026-11-23 13:34:33.559831"`, "write_uid", "6", "write_date", `"2026-11-23 13:34:33.559831"`)
	secret := row("id", "6", "login", `"alice"`, "password", `"$pbkdf2$x"`, "totp_secret", "null", "write_uid", "6")
	b.Run("table without rules", func(b *testing.B) {
		e := ev("sale_order", audit.OpUpdate, after[:1], after, after, "state")
		for b.Loop() {
			r.Apply(e)
		}
	})
	b.Run("res_users", func(b *testing.B) {
		for b.Loop() {
			e := ev("res_users", audit.OpUpdate, secret[:1], append(audit.Row(nil), secret...), append(audit.Row(nil), secret...), "password")
			r.Apply(e)
		}
	})
	// As in the pipeline: Odoo's naming rules too, every table described
	// by its Relation before its first event.
	rp, err := New(profile.Odoo().SecretRules(), nil, profile.OdooSecretColumns)
	if err != nil {
		b.Fatal(err)
	}
	names := func(r audit.Row) []profile.Column {
		var cs []profile.Column
		for _, c := range r {
			cs = append(cs, profile.Column{Name: c.Name, Type: 1043})
		}
		return cs
	}
	rp.Relation("public", "sale_order", names(after))
	rp.Relation("public", "res_users", names(secret))
	b.Run("relation, table without secrets", func(b *testing.B) {
		e := ev("sale_order", audit.OpUpdate, after[:1], after, after, "state")
		for b.Loop() {
			rp.Apply(e)
		}
	})
	b.Run("relation, res_users", func(b *testing.B) {
		for b.Loop() {
			e := ev("res_users", audit.OpUpdate, secret[:1], append(audit.Row(nil), secret...), append(audit.Row(nil), secret...), "password")
			rp.Apply(e)
		}
	})
}

// cols describes a table as a Relation message does (names, varchar type
// unless the name is an audit column).
func cols(names ...string) []profile.Column {
	var out []profile.Column
	for _, n := range names {
		typ := uint32(1043)
		switch n {
		case "id", "create_uid", "write_uid", "user_id":
			typ = 23
		case "create_date", "write_date":
			typ = 1114
		}
		out = append(out, profile.Column{Name: n, Type: typ})
	}
	return out
}

// The columns of a table are judged once, from its Relation, with the
// classifier's view of the whole table; a later Relation (ALTER TABLE)
// replaces the judgement.
func TestRelation(t *testing.T) {
	r, err := New(profile.Odoo().Secrets, nil, profile.OdooSecretColumns)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Relation("public", "change_password_own", cols("id", "new_password", "confirm_password", "create_uid", "create_date", "write_uid", "write_date"))
	if want := []string{"new_password", "confirm_password"}; !reflect.DeepEqual(got, want) {
		t.Errorf("change_password_own: secret %v, want %v", got, want)
	}
	// A delete carrying the key only is judged by the relation, not by
	// the columns it carries.
	e := ev("change_password_own", audit.OpDelete, row("id", "1"), row("id", "1", "new_password", `"Typed-1"`), nil)
	r.Apply(e)
	if v := rowMap(e.Before)["new_password"]; v != red {
		t.Errorf("before.new_password = %s, want %s", v, red)
	}

	// A business table: nothing until a column is added that holds a
	// capability token.
	orderCols := cols("id", "name", "create_uid", "create_date", "write_uid", "write_date")
	if got := r.Relation("public", "sale_order", orderCols); got != nil {
		t.Errorf("sale_order: secret %v, want none", got)
	}
	got = r.Relation("public", "sale_order", append(orderCols, profile.Column{Name: "access_token", Type: 1043}))
	if want := []string{"access_token"}; !reflect.DeepEqual(got, want) {
		t.Errorf("sale_order with access_token: secret %v, want %v", got, want)
	}
	e = ev("sale_order", audit.OpUpdate, row("id", "2"), nil, row("id", "2", "name", `"S00002"`, "access_token", `"tok"`), "access_token")
	r.Apply(e)
	if m := rowMap(e.After); m["access_token"] != red || m["name"] != `"S00002"` || !reflect.DeepEqual(e.Redacted, []string{"access_token"}) {
		t.Errorf("sale_order update: after %v redacted %v", m, e.Redacted)
	}

	// A table the ORM did not make: the names alone do not decide.
	if got := r.Relation("public", "accounts", cols("id", "password")); got != nil {
		t.Errorf("accounts: secret %v, want none", got)
	}
	// Conditional rules are named too.
	if got := r.Relation("public", "ir_config_parameter", cols("id", "key", "value", "create_uid", "create_date", "write_uid", "write_date")); !reflect.DeepEqual(got, []string{"value"}) {
		t.Errorf("ir_config_parameter: secret %v, want [value]", got)
	}
}

// Without a Relation, a table's columns are learnt from its events: a
// first event that carries the key only does not settle the table.
func TestLearnWithoutRelation(t *testing.T) {
	r, err := New(nil, nil, profile.OdooSecretColumns)
	if err != nil {
		t.Fatal(err)
	}
	r.Apply(ev("res_users_identitycheck", audit.OpDelete, row("id", "1"), row("id", "1"), nil))
	e := ev("res_users_identitycheck", audit.OpInsert, row("id", "2"), nil,
		row("id", "2", "password", `"Typed-2"`, "create_uid", "6", "create_date", `"x"`, "write_uid", "6", "write_date", `"x"`))
	r.Apply(e)
	if v := rowMap(e.After)["password"]; v != red {
		t.Errorf("after.password = %s, want %s", v, red)
	}
}

// ReadKeyFile and New apply one rule of the key's length; the file's
// content never reaches an error.
func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, err := ReadKeyFile(write("good", "  0123456789abcdef\n"))
	if err != nil || string(key) != "0123456789abcdef" {
		t.Fatalf("%q %v", key, err)
	}
	if _, err := New(nil, key); err != nil {
		t.Fatalf("New refuses what ReadKeyFile accepts: %v", err)
	}
	short := write("short", "s3cret-012345\n")
	_, err = ReadKeyFile(short)
	if err == nil || !strings.Contains(err.Error(), short+": the key has 13 bytes, want at least 16") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("short: %v", err)
	}
	if _, err := New(nil, []byte("s3cret-012345")); err == nil || !strings.Contains(err.Error(), "the key has 13 bytes, want at least 16") {
		t.Fatalf("New short: %v", err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "missing"), write("big", strings.Repeat("k", 1<<16+1))} {
		if _, err := ReadKeyFile(p); err == nil {
			t.Errorf("%s accepted", p)
		}
	}
}
