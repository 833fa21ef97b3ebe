package config

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcaudit/cdcaudit/audit"
)

// KeySource names the ERP database's trail (docs/sinks.md).
const KeySource = "source"

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
	if err := audit.ValidSource(name); err != nil {
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
