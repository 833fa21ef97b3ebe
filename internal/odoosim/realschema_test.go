package odoosim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSchemaMatchesRealOdoo: every column of the fixture exists in a real
// Odoo 18.0 (base, contacts, sale_management) with the same type and
// nullability, as recorded in testdata/odoo18/schema-columns.tsv by
// scripts/odoo-lab/record.sh; and the password wizards and the mail tables
// a contact's delete touches are there.
func TestSchemaMatchesRealOdoo(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "odoo18", "schema-columns.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	real := map[string]string{} // "table.column" → "type nullable"
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("schema-columns.tsv: bad line %q", line)
		}
		real[f[0]+"."+f[1]] = f[2] + " " + f[3]
	}
	f := newFixture(t)
	got := f.query(`SELECT c.table_name || '.' || c.column_name || ' ' || c.data_type || ' ' || c.is_nullable
		FROM information_schema.columns c
		JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'`)
	tables := map[string]bool{}
	for _, g := range got {
		col, typ, _ := strings.Cut(g, " ")
		tables[strings.Split(col, ".")[0]] = true
		want, ok := real[col]
		switch {
		case !ok:
			t.Errorf("%s: no such column in Odoo 18.0", col)
		case want != typ:
			t.Errorf("%s: fixture has %s, Odoo 18.0 has %s", col, typ, want)
		}
	}
	for _, tbl := range []string{"change_password_own", "change_password_user", "change_password_wizard",
		"res_users_identitycheck", "auth_totp_wizard", "mail_message", "mail_followers",
		"mail_followers_mail_message_subtype_rel", "mail_tracking_value"} {
		if !tables[tbl] {
			t.Errorf("table %s missing from the fixture", tbl)
		}
	}
}
