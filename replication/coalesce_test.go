package replication

import (
	"testing"
	"time"
)

func TestNextNap(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		napped  time.Duration
		n, size int
		want    time.Duration
	}{
		{0, 8192, 8192, 0},       // a full read: the socket may hold more
		{5 * ms, 8192, 8192, 0},  // after a wait too
		{0, 100, 8192, ms},       // the socket emptied: wait the least
		{ms, 4096, 8192, 8 * ms}, // 4 KB/ms: 32 KB take 8 ms
		{8 * ms, 32 << 10, 64 << 10, 8 * ms},
		{ms, 100, 8192, maxNap},       // a trickle: wait the most
		{ms, 48 << 10, 128 << 10, ms}, // 48 KB/ms: never less than minNap
		{ms, 0, 8192, ms},             // an error, say
		{0, 200 << 10, 4 << 20, 0},    // a part of a 4 MB message: the stream is fast
		{ms, 2 * napBytes, 4 << 20, 0},
	} {
		if got := nextNap(c.napped, c.n, c.size); got != c.want {
			t.Errorf("nextNap(%v, %d, %d) = %v, want %v", c.napped, c.n, c.size, got, c.want)
		}
	}
}
