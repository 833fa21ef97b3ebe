package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ).
var clockTick = func() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, perr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && perr == nil && n > 0 {
		return time.Second / time.Duration(n)
	}
	return 10 * time.Millisecond // USER_HZ is 100 on every Linux port but alpha
}()

// processCPU reads the user+system CPU a process has used so far, all its
// threads included: /proc/<pid>/stat fields 14 and 15. Reading another
// user's process (the server's walsenders run as postgres) needs root.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := statTicks(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(ticks) * clockTick, nil
}

// statTicks adds utime and stime (fields 14 and 15) of a /proc/<pid>/stat line.
func statTicks(stat string) (int64, error) {
	// Field 2 is the command in parentheses and may hold spaces and
	// parentheses: count from the last ')', after which field 3 comes first.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command field")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("too few fields")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q or stime %q is not a number", f[11], f[12])
	}
	return utime + stime, nil
}

// serverProcs follows the CPU of server processes: the walsenders serving
// one slot, or the backends of one client. A consumer that reconnects is
// served by a new walsender: each one's last reading counts.
type serverProcs map[int]time.Duration

// sample reads pid's CPU now; a process that has gone keeps its last reading.
func (w serverProcs) sample(pid int) {
	if pid == 0 {
		return
	}
	if cpu, err := processCPU(pid); err == nil {
		w[pid] = cpu
	}
}

func (w serverProcs) sampleAll() {
	for pid := range w {
		w.sample(pid)
	}
}

// warnIfUnseen says so when no walsender was read: a drain shorter than a
// poll, or a server this user may not read, would count 0 for it.
func (w serverProcs) warnIfUnseen(slot string) {
	if len(w) == 0 {
		log.Printf("the walsender of slot %s was never read from /proc: its CPU counts as 0", slot)
	}
}

func (w serverProcs) total() time.Duration {
	var t time.Duration
	for _, cpu := range w {
		t += cpu
	}
	return t
}

// statusKiB reads a "Name:   123 kB" line of a running process's
// /proc/<pid>/status (0 when it cannot).
func statusKiB(pid int, name string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return statusField(string(b), name)
}

func statusField(status, name string) int64 {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// peakRSS reads a running process's peak resident set (VmHWM, KiB). Not
// rusage: a child started from Go inherits the parent's ru_maxrss. It
// counts the pages of mapped files it touched too: for cdcaudit, the
// store's (bbolt maps its file), which the kernel may drop at any time.
func peakRSS(pid int) int64 { return statusKiB(pid, "VmHWM") }

// anonRSS reads a running process's resident anonymous memory (RssAnon,
// KiB): its heap and stacks, without the mapped store. The kernel keeps no
// peak of it: the bench samples it.
func anonRSS(pid int) int64 { return statusKiB(pid, "RssAnon") }

// writtenBytes reads the bytes a running process has passed to write
// calls so far (wchar of /proc/<pid>/io; root reads any process's).
func writtenBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "wchar:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			return n
		}
	}
	return 0
}
