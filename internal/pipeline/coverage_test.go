package pipeline

import "testing"

func TestChangesCoverageTable(t *testing.T) {
	for key, want := range map[string]string{
		"public.res_partner update, delete 000000000162A0B8":   "public.res_partner",
		`public."sale order" update, delete 000000000162A0B8`:  `public."sale order"`,
		"* update, delete 0000000001000000":                    "*",
		"public.res_partner insert, truncate 000000000162A0B8": "",
		"garbage": "",
	} {
		got, ok := changesCoverageTable(key)
		if got != want || ok != (want != "") {
			t.Errorf("%q: %q, %v; want %q", key, got, ok, want)
		}
	}
}
