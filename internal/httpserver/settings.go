// Package httpserver owns the settings of the daemon's HTTP server (its
// address now; TLS and plain HTTP next): their defaults and rules, so that
// the configuration and whoever starts the server agree on them.
package httpserver

import (
	"fmt"
	"net"
	"strconv"
)

// DefaultAddr is loopback only: binding elsewhere is a decision.
const DefaultAddr = "127.0.0.1:9187"

// ValidateAddr accepts host:port with a port of 0 (a free one) to 65535.
func ValidateAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:9187, or :9187 for all interfaces)", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: bad port %q (want 0 to 65535; 0 picks a free port)", a, port)
	}
	return nil
}
