// Package pgtest gives the tests real PostgreSQL: one throwaway server per
// test package (Main; see internal/localpg, which starts it) and a fresh
// database per test (NewDB). Tests only: nothing the binary runs imports it.
package pgtest

import "github.com/cdcaudit/cdcaudit/internal/localpg"

// Options tune a cluster (localpg.Options). The zero value is fine.
type Options = localpg.Options

// Cluster is a running throwaway PostgreSQL server (localpg.Cluster).
type Cluster = localpg.Cluster

// Start starts a cluster of the test's own (localpg.Start); Stop removes it.
func Start(opts Options) (*Cluster, error) { return localpg.Start(opts) }

// BinDir finds the installed server binaries (localpg.BinDir).
func BinDir() (string, error) { return localpg.BinDir() }
