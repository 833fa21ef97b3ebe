package profile

import (
	"errors"
	"testing"
)

func TestChoice(t *testing.T) {
	for _, c := range Choices {
		if err := ValidateChoice(c, true); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	if err := ValidateChoice(ChoiceGeneric, false); !errors.Is(err, ErrNoProfileFile) {
		t.Errorf("generic without a file: %v", err)
	}
	if ValidateChoice("", false) == nil || ValidateChoice("sap", false) == nil {
		t.Error("unknown profile accepted")
	}
	if ValidateFileChoice("/x.yml", ChoiceOdoo) == nil || ValidateFileChoice("/x.yml", ChoiceGeneric) != nil || ValidateFileChoice("", ChoiceOdoo) != nil {
		t.Error("ValidateFileChoice")
	}
	for choice, want := range map[string]string{"": "odoo", ChoiceAuto: "odoo", ChoiceOdoo: "odoo", ChoiceNone: ""} {
		p, err := Choose(choice, "")
		if err != nil || (p == nil) != (want == "") || p != nil && p.Name != want {
			t.Errorf("Choose(%q): %v %v", choice, p, err)
		}
	}
	if _, err := Choose("sap", ""); err == nil {
		t.Error("Choose(sap) accepted")
	}
	if _, err := Choose(ChoiceGeneric, "/nonexistent.yml"); err == nil {
		t.Error("Choose(generic) without a readable file")
	}
}
