package profile

import (
	"errors"
	"fmt"
	"strings"
)

// The values of the profile setting: which application profile cdcaudit
// uses. Auto is Odoo once its tables are there (at start or when they
// appear in the stream); Generic is the one described in a profile file.
const (
	ChoiceAuto    = "auto"
	ChoiceOdoo    = "odoo"
	ChoiceGeneric = "generic"
	ChoiceNone    = "none"
	DefaultChoice = ChoiceAuto
)

// Choices lists the values of the profile setting.
var Choices = []string{ChoiceAuto, ChoiceOdoo, ChoiceGeneric, ChoiceNone}

// ErrNoProfileFile: profile generic is chosen without a profile file.
var ErrNoProfileFile = errors.New("generic needs profile_file, the YAML description of the application")

// ValidateChoice accepts one of Choices; generic needs a profile file
// (hasFile). "" is not a choice here (Choose takes it for auto).
func ValidateChoice(choice string, hasFile bool) error {
	switch choice {
	case ChoiceAuto, ChoiceOdoo, ChoiceNone:
		return nil
	case ChoiceGeneric:
		if !hasFile {
			return ErrNoProfileFile
		}
		return nil
	}
	return fmt.Errorf("%q is not a profile (want %s)", choice, strings.Join(Choices, ", "))
}

// ValidateFileChoice refuses a profile file that would not be read: only
// profile generic reads it.
func ValidateFileChoice(file, choice string) error {
	if file != "" && choice != ChoiceGeneric {
		return fmt.Errorf("set, but profile is %s: the file is read only with profile generic (set profile: generic, or remove profile_file)", choice)
	}
	return nil
}

// Choose returns the profile a choice names: Odoo's for odoo and auto (""
// is auto; whether Odoo is there is the caller's to find out), the file's
// for generic, nil for none.
func Choose(choice, file string) (*Profile, error) {
	var p Profile
	switch choice {
	case ChoiceNone:
		return nil, nil
	case ChoiceOdoo, ChoiceAuto, "":
		p = Odoo()
	case ChoiceGeneric:
		var err error
		if p, err = Load(file); err != nil {
			return nil, err
		}
	default:
		return nil, ValidateChoice(choice, file != "")
	}
	return &p, nil
}
