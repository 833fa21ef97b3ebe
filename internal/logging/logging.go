// Package logging makes cdcaudit's own logger from the log_format and
// log_level settings, and owns their values, defaults and rules.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// The values of the settings, and their defaults.
var (
	Formats = []string{"text", "json"}
	Levels  = []string{"debug", "info", "warn", "error"}
)

const (
	DefaultFormat = "text"
	DefaultLevel  = "info"
)

// ValidateFormat accepts text or json.
func ValidateFormat(format string) error {
	if !slices.Contains(Formats, format) {
		return fmt.Errorf("%q is not a log format (want %s)", format, strings.Join(Formats, " or "))
	}
	return nil
}

// ValidateLevel accepts debug, info, warn or error, as written (slog itself
// would also take "INFO" or "warn+2").
func ValidateLevel(level string) error {
	if !slices.Contains(Levels, level) {
		return fmt.Errorf("%q is not a log level (want debug, info, warn or error)", level)
	}
	return nil
}

// New returns a logger writing text or JSON records at level and above to w.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	if err := ValidateFormat(format); err != nil {
		return nil, err
	}
	if err := ValidateLevel(level); err != nil {
		return nil, err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
