package snapshot

import (
	"fmt"
	"slices"
	"strings"
)

// The values of the snapshot setting: on a fresh start, copy the published
// tables (initial) or only the application's users, models and sessions
// tables (never).
const (
	ModeInitial = "initial"
	ModeNever   = "never"
	DefaultMode = ModeInitial
)

// Modes lists the values of the snapshot setting.
var Modes = []string{ModeInitial, ModeNever}

// ValidateMode accepts one of Modes.
func ValidateMode(mode string) error {
	if !slices.Contains(Modes, mode) {
		return fmt.Errorf("%q is not a snapshot mode (want %s)", mode, strings.Join(Modes, " or "))
	}
	return nil
}
