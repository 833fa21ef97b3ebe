package export

import (
	"os"
	"path/filepath"
	"strconv"
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
				growth := selfusage.AnonRSSGrowth()
				cpu, start := selfusage.CPU(), time.Now()
				got, err := Write(f, s, sink.Query{}, format)
				took, cpuTook := time.Since(start), selfusage.CPU()-cpu
				grew := growth()
				if err != nil || got != uint64(n) {
					b.Fatalf("%d events, %v", got, err)
				}
				fi, _ := f.Stat()
				f.Close()
				b.ReportMetric(float64(n)/took.Seconds(), "events/s")
				b.ReportMetric(float64(n)/cpuTook.Seconds(), "events/cpu-s")
				b.ReportMetric(float64(grew)/1024, "rss-growth-MiB")
				b.ReportMetric(float64(fi.Size())/float64(n), "file-B/event")
			}
		})
	}
}
