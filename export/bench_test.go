package export

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/selfusage"
	"github.com/cdcaudit/cdcaudit/internal/storebench"
	"github.com/cdcaudit/cdcaudit/sink"
)

// BenchmarkExport exports a generated store of 1M events (EXPORTBENCH_EVENTS
// to change it; built once and cached under $STOREBENCH_DIR or
// $TMPDIR/cdcaudit-storebench) to a file in each format, and reports the
// rate and how far the process's resident anonymous memory (heap and
// stacks; not the mapped store) grew above where it began: the XLSX writer
// must stay flat, whatever the size.
//
//	go test ./export -run '^$' -bench Export -benchtime 1x
func BenchmarkExport(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("EXPORTBENCH_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	root := os.Getenv("STOREBENCH_DIR")
	if root == "" {
		root = filepath.Join(os.TempDir(), "cdcaudit-storebench")
	}
	dir, _, err := storebench.Cached(root, storebench.Default(n, 1), b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	s, err := sink.OpenReadOnly(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, format := range Formats {
		b.Run(format, func(b *testing.B) {
			out := filepath.Join(b.TempDir(), "export."+format)
			for b.Loop() {
				f, err := os.Create(out)
				if err != nil {
					b.Fatal(err)
				}
				base := anonRSS()
				peak := base
				stop, done := make(chan struct{}), sync.WaitGroup{}
				done.Add(1)
				go func() { // sample: the kernel keeps no peak of RssAnon
					defer done.Done()
					t := time.NewTicker(10 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stop:
							return
						case <-t.C:
							peak = max(peak, anonRSS())
						}
					}
				}()
				cpu, start := selfusage.CPU(), time.Now()
				got, err := Write(f, s, sink.Query{}, format)
				took, cpuTook := time.Since(start), selfusage.CPU()-cpu
				close(stop)
				done.Wait()
				if err != nil || got != uint64(n) {
					b.Fatalf("%d events, %v", got, err)
				}
				fi, _ := f.Stat()
				f.Close()
				b.ReportMetric(float64(n)/took.Seconds(), "events/s")
				b.ReportMetric(float64(n)/cpuTook.Seconds(), "events/cpu-s")
				b.ReportMetric(float64(peak-base)/1024, "rss-growth-MiB")
				b.ReportMetric(float64(fi.Size())/float64(n), "file-B/event")
			}
		})
	}
}

// anonRSS reads this process's resident anonymous memory (RssAnon, KiB).
func anonRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kib
		}
	}
	return 0
}
