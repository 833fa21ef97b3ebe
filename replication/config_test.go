package replication

import (
	"strings"
	"testing"
	"time"
)

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://alice:s3cret@db:5432/odoo?sslmode=disable":       "postgres://alice:xxxxx@db:5432/odoo?sslmode=disable",
		"postgresql://alice@db/odoo?password=s3cret&sslmode=require": "postgresql://alice@db/odoo?password=xxxxx&sslmode=require",
		"postgres://alice:p%40ss@db/odoo":                            "postgres://alice:xxxxx@db/odoo",
		"postgres://bob@db/odoo":                                     "postgres://bob@db/odoo",
		"host=db user=alice password=s3cret dbname=odoo":             "host=db user=alice password=xxxxx dbname=odoo",
		"host=db PASSWORD='a b\\' c' sslpassword=k dbname=odoo":      "host=db PASSWORD=xxxxx sslpassword=xxxxx dbname=odoo",
		"postgres://alice:s3cr%zzet@db/odoo":                         "postgres://alice:xxxxx@db/odoo",
	} {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchTable(t *testing.T) {
	inc := []string{"public.sale_*", "*.res_users"}
	exc := []string{"public.sale_line"}
	for name, want := range map[string]bool{
		"public.sale_order": true, "public.sale_line": false, "public.res_users": true,
		"other.res_users": true, "public.stock_move": false, "other.sale_order": false,
	} {
		if got := matchTable(inc, exc, name); got != want {
			t.Errorf("%s: %v", name, got)
		}
	}
	if !matchTable(nil, exc, "public.anything") || matchTable(nil, exc, "public.sale_line") {
		t.Error("empty include list must mean all tables")
	}
}

func TestBackoff(t *testing.T) {
	for attempt, bounds := range map[int][2]time.Duration{
		0:  {125 * time.Millisecond, 250 * time.Millisecond},
		1:  {250 * time.Millisecond, 500 * time.Millisecond},
		7:  {15 * time.Second, 30 * time.Second},
		50: {15 * time.Second, 30 * time.Second},
	} {
		for i := 0; i < 100; i++ {
			if d := backoff(attempt); d < bounds[0] || d > bounds[1] {
				t.Fatalf("backoff(%d) = %s, want within %s", attempt, d, bounds)
			}
		}
	}
}

// WithDefaults fills in the exported defaults and applies the exported
// rules, the ones the configuration applies: one rule each.
func TestWithDefaultsUsesTheSettingsRules(t *testing.T) {
	c, err := Config{DSN: "postgres://db/erp"}.WithDefaults()
	if err != nil || c.Slot != DefaultSlot || c.Publication != DefaultPublication || c.StatusInterval != DefaultStatusInterval {
		t.Fatalf("%v %+v", err, c)
	}
	for _, tc := range []struct {
		cfg   Config
		field string
		rule  error
	}{
		{Config{Slot: "My-Slot"}, "slot", ValidateSlotName("My-Slot")},
		{Config{Publication: strings.Repeat("p", 56)}, "publication", ValidatePublicationName(strings.Repeat("p", 56))},
		{Config{Tables: []string{"sale_order"}}, "tables", ValidateTableGlob("sale_order")},
		{Config{Exclude: []string{"public.[a"}}, "tables", ValidateTableGlob("public.[a")},
	} {
		tc.cfg.DSN = "postgres://db/erp"
		_, err := tc.cfg.WithDefaults()
		if tc.rule == nil || err == nil || err.Error() != "replication: "+tc.field+": "+tc.rule.Error() {
			t.Errorf("%+v: %v (rule: %v)", tc.cfg, err, tc.rule)
		}
	}
	for _, ok := range []error{
		ValidateSlotName(strings.Repeat("a", 63)), ValidatePublicationName(strings.Repeat("p", 55)),
		ValidateTableGlob("*.res_*"), ValidateStatusInterval(10 * time.Millisecond), ValidateStatusInterval(10 * time.Minute),
		ValidateDSN("host=db dbname=erp"),
	} {
		if ok != nil {
			t.Error(ok)
		}
	}
	for _, bad := range []error{
		ValidateSlotName(""), ValidateSlotName(strings.Repeat("a", 64)), ValidatePublicationName(""),
		ValidatePublicationName("a\x00b"), ValidateTableGlob(".t"), ValidateTableGlob("s."),
		ValidateStatusInterval(time.Millisecond), ValidateStatusInterval(11 * time.Minute),
	} {
		if bad == nil {
			t.Error("accepted")
		}
	}
	if err := ValidateDSN("postgres://u:s3cret@host:notaport/db"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("ValidateDSN: %v", err)
	}
}
