package audit

import (
	"strings"
	"testing"
)

func TestValidSource(t *testing.T) {
	for _, s := range []string{"erp", "ERP_a", "erp.prod-1", "0", strings.Repeat("a", 64)} {
		if err := ValidSource(s); err != nil {
			t.Errorf("ValidSource(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "_erp", ".erp", "-erp", "erp a", "erp/a", "erp\n", "é", strings.Repeat("a", 65), "erp{x}"} {
		if err := ValidSource(s); err == nil {
			t.Errorf("ValidSource(%q) accepted", s)
		}
	}
}
