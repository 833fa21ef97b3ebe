// Package selfusage reads what this process has used so far, for the
// benchmarks that report CPU time and bytes written per operation beside
// the wall clock (on a shared machine the wall clock says little).
package selfusage

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU is the process's user and system CPU time so far, every thread.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err) // RUSAGE_SELF with a valid pointer cannot fail
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Written is what the process has passed to write calls so far (wchar of
// /proc/self/io); ok is false where that file cannot be read.
func Written() (n int64, ok bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "wchar: "); found {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// AnonRSS is the process's resident anonymous memory (RssAnon of
// /proc/self/status, KiB): heap and stacks, not mapped files such as the
// store; 0 where it cannot be read.
func AnonRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "RssAnon:"); found {
			kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kib
		}
	}
	return 0
}

// AnonRSSGrowth samples AnonRSS every 10 ms (the kernel keeps no peak of
// it) until stop is called, which returns how far it rose above where it
// began, at its peak (KiB).
func AnonRSSGrowth() (stop func() int64) {
	base := AnonRSS()
	peak := base
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				peak = max(peak, AnonRSS())
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		return max(peak, AnonRSS()) - base
	}
}
