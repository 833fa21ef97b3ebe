package replication

import (
	"net"
	"time"
)

// coalescingConn lets a trickle of small messages arrive in fewer reads.
// A busy OLTP server sends its transactions one by one, each a few small
// messages: read as they come, every message costs a read system call and
// a wake-up of the reading goroutine, which measured as a third of
// cdcaudit's CPU beside pgbench. After a read that did not fill its buffer
// (it emptied the socket), the next read waits a moment, so that it takes
// what arrived meanwhile. A flood is unaffected: its reads come back full,
// or at least 2×napBytes long (a message bigger than the socket's buffer is
// read into a buffer of its own size, which its reads rarely fill).
//
// The wait adapts to the stream: as long as about napBytes take to arrive
// at the rate the last wait saw, between minNap and maxNap. A trickle of
// 4 KB/ms is then read every 8 ms, not every millisecond, while no wait
// lets more arrive than a quarter of the smallest receive buffer Linux
// gives a TCP socket (so the server is never held back by a full one).
type coalescingConn struct {
	net.Conn
	nap time.Duration // the wait before the next read; 0 after a full read
}

const (
	// maxNap bounds what a trickle's changes are delayed by (the store's
	// group commit waits 50 ms anyway).
	minNap   = time.Millisecond
	maxNap   = 10 * time.Millisecond
	napBytes = 32 << 10
)

func (c *coalescingConn) Read(p []byte) (int, error) {
	napped := c.nap
	if napped > 0 {
		time.Sleep(napped)
	}
	n, err := c.Conn.Read(p)
	c.nap = nextNap(napped, n, len(p))
	return n, err
}

// nextNap is the wait after a read of n bytes into a buffer of size bytes
// that followed a wait of napped.
func nextNap(napped time.Duration, n, size int) time.Duration {
	switch {
	case n >= size || n >= 2*napBytes:
		return 0
	case napped == 0 || n <= 0:
		return minNap
	}
	// n bytes arrived in napped: napBytes take this long.
	return min(maxNap, max(minNap, time.Duration(float64(napped)*napBytes/float64(n))))
}
