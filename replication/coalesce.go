package replication

import (
	"net"
	"time"
)

// coalescingConn lets a trickle of small messages arrive in fewer reads.
// A busy OLTP server sends its transactions one by one, each a few small
// messages: read as they come, every message costs a read system call and
// a wake-up of the reading goroutine, which measured as a third of
// cdcaudit's CPU beside pgbench. After a read that found the socket almost
// empty, the next read waits a moment, so that it takes what arrived
// meanwhile. A flood is unaffected: its reads come back full.
type coalescingConn struct {
	net.Conn
	nap bool // the last read was short: wait before the next
}

const (
	// readNap is the wait: what a trickle's changes are delayed by at
	// most, and, with the socket's receive buffer, what bounds a stream
	// that alternates full and short reads (hundreds of MB/s).
	readNap = time.Millisecond
	// shortRead is a read that found at most this many bytes.
	shortRead = 2048
)

func (c *coalescingConn) Read(p []byte) (int, error) {
	if c.nap {
		time.Sleep(readNap)
	}
	n, err := c.Conn.Read(p)
	c.nap = n <= shortRead && n < len(p)
	return n, err
}
