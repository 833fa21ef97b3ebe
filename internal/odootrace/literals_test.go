package odootrace

import (
	"path/filepath"
	"slices"
	"testing"
)

// Literals finds what Odoo wrote into a column in each of the shapes it
// writes with: the ORM's INSERT and UPDATE … FROM (VALUES …), raw SET and
// raw INSERT; NULLs and other columns are left out.
func TestLiterals(t *testing.T) {
	tr, err := ReadFile(filepath.Join(tracesDir, "passwords.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	all := func(table, column string) []string {
		var out []string
		for i := range tr.Txs {
			out = append(out, tr.Txs[i].Literals(table, column)...)
		}
		return out
	}
	for _, c := range []struct {
		table, column string
		want          []string
	}{
		{"change_password_own", "new_password", []string{"alice-lab-pw-2"}},                                     // ORM INSERT
		{"res_users_identitycheck", "password", []string{"alice-lab-pw-1", "carol-lab-pw-1", "alice-lab-pw-2"}}, // ORM UPDATE, NULLs left out
		{"res_users_identitycheck", "auth_method", []string{"password", "password", "password"}},
		{"change_password_user", "new_passwd", []string{"bob-lab-pw-2"}},
		{"change_password_user", "user_login", []string{"bob"}},
		{"res_users_apikeys", "index", []string{"e2b663eb"}},                                    // raw INSERT
		{"res_users", "totp_secret", []string{"H7FSF63GRRK7222X2XWSFBB2UKVVHAAH"}},              // raw SET
		{"auth_totp_wizard", "secret", []string{"H7FS F63G RRK7 222X 2XWS FBB2 UKVV HAAH", ""}}, // emptied after use
		{"res_partner", "name", nil},
	} {
		if got := all(c.table, c.column); !slices.Equal(got, c.want) {
			t.Errorf("%s.%s: %q, want %q", c.table, c.column, got, c.want)
		}
	}
	if h := all("res_users", "password"); len(h) != 2 || h[0][:15] != "$pbkdf2-sha512$" {
		t.Errorf("res_users.password: %q, want the two new hashes", h)
	}
	if h := all("res_users_apikeys", "key"); len(h) != 1 || h[0][:15] != "$pbkdf2-sha512$" {
		t.Errorf("res_users_apikeys.key: %q, want the key's hash", h)
	}
}
