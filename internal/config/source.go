package config

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// KeySource names the ERP database's trail (docs/sinks.md).
const KeySource = "source"

// maxSourceLen bounds a source name: a directory name, a Kafka header and
// topic part, a Prometheus label value, a SQL text value.
const maxSourceLen = 64

// ValidSource checks a source name: 1–64 bytes of [A-Za-z0-9._-], the
// first one a letter or digit.
func ValidSource(s string) error {
	if s == "" || len(s) > maxSourceLen {
		return fmt.Errorf("%q is not a source name: want 1 to %d characters", s, maxSourceLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("%q is not a source name: want letters, digits, '.', '_' and '-', starting with a letter or digit", s)
		}
	}
	return nil
}

// DefaultSource is the source of a database that names none: its database
// name, which libpq takes to be the user name when the DSN names none.
func DefaultSource(dsn string) (string, error) {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", errors.New("the DSN does not parse, so it names no database")
	}
	name := pc.Database
	if name == "" {
		name = pc.User
	}
	if err := ValidSource(name); err != nil {
		return "", fmt.Errorf("the database name does not make a source name (%v): set one", err)
	}
	return name, nil
}

// defaultSource fills the source from the DSN when none is configured.
func (c *Config) defaultSource() error {
	if c.Source != "" || c.DSN == "" {
		return nil
	}
	s, err := DefaultSource(c.DSN)
	if err != nil {
		return fmt.Errorf("config: %s: %v (set --%s or %s)", KeySource, err, FlagName(KeySource), EnvName(KeySource))
	}
	c.Source = s
	return nil
}
