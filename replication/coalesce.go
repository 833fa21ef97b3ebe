package replication

import (
	"net"
	"time"
)

// coalescingConn lets a trickle of small messages arrive in fewer reads.
// A busy OLTP server sends its transactions one by one, each a few small
// messages: read as they come, every message costs a read system call and
// a wake-up of the reading goroutine, which measured as a third of
// cdcaudit's CPU beside pgbench. After a read that did not fill the
// buffer (it emptied the socket), the next read waits a moment, so that it
// takes what arrived meanwhile. A flood is unaffected: its reads come back
// full. (A threshold of 2 KB instead left a trickle of 4 KB/ms at two
// reads and one wake-up each millisecond: the read after a nap took more
// than 2 KB, the next found the socket empty and parked.)
type coalescingConn struct {
	net.Conn
	nap bool // the last read did not fill its buffer: wait before the next
}

const (
	// readNap is the wait: what a trickle's changes are delayed by at
	// most, and, with the socket's receive buffer, what bounds a stream
	// that alternates full and short reads (hundreds of MB/s).
	readNap = time.Millisecond
)

func (c *coalescingConn) Read(p []byte) (int, error) {
	if c.nap {
		time.Sleep(readNap)
	}
	n, err := c.Conn.Read(p)
	c.nap = n < len(p)
	return n, err
}
