package main

import (
	"os"
	"testing"
	"time"
)

func TestStatTicksCountsFromTheLastParenthesis(t *testing.T) {
	// A command may hold spaces and ')': fields 14 and 15 are utime, stime.
	line := "4242 (postgres: walsender) x) S 1 4242 4242 0 -1 4194560 1193 0 0 0 157 43 0 0 20 0 1 0 5318 226 2 18446744073709551615\n"
	got, err := statTicks(line)
	if err != nil || got != 200 {
		t.Fatalf("statTicks = %d, %v; want 157+43 = 200", got, err)
	}
	for _, bad := range []string{"", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 1193 0 0 0 u 43 0"} {
		if _, err := statTicks(bad); err == nil {
			t.Errorf("statTicks(%q) accepted", bad)
		}
	}
}

func TestProcessCPUGrowsWithWork(t *testing.T) {
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU (about a second at most) until the kernel has counted a
	// few ticks of it.
	x, after := 0, before
	for round := 0; round < 100 && after < before+5*clockTick; round++ {
		for i := 0; i < 1e7; i++ {
			x += i
		}
		if after, err = processCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after < before+5*clockTick {
		t.Errorf("CPU went from %v to %v while this test computed %d", before, after, x)
	}
	if _, err := processCPU(1 << 30); err == nil {
		t.Error("a pid that does not exist has a CPU time")
	}
}

func TestWalsendersKeepTheLastReadingOfEach(t *testing.T) {
	w := walsenders{}
	w.sample(os.Getpid())
	w.sample(0)                // no walsender yet: ignored
	w[1<<30] = 3 * time.Second // one that has gone: its last reading counts
	w.sampleAll()
	if len(w) != 2 || w[1<<30] != 3*time.Second || w.total() < 3*time.Second {
		t.Fatalf("walsenders = %v, total %v", w, w.total())
	}
}

func TestSpreadMedianAndRange(t *testing.T) {
	for _, c := range []struct {
		s    spread
		want string
	}{
		{spread{3, 1, 2}, "2.0 (1.0 to 3.0)"},
		{spread{4, 1, 3, 2}, "2.5 (1.0 to 4.0)"},
		{spread{7}, "7.0"},
		{nil, "–"},
	} {
		if got := c.s.format("%.1f"); got != c.want {
			t.Errorf("%v.format = %q, want %q", c.s, got, c.want)
		}
	}
}
