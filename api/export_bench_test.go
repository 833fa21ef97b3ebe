package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/export"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/internal/selfusage"
	"github.com/cdcaudit/cdcaudit/internal/storebench"
	"github.com/cdcaudit/cdcaudit/manifest"
	"github.com/cdcaudit/cdcaudit/sink"
)

// BenchmarkExportAPI exports the generated store of 1M events
// (EXPORTBENCH_EVENTS to change it; the store export's benchmark builds
// and caches, under $STOREBENCH_DIR or $TMPDIR/cdcaudit-storebench) in
// each format, first as 'cdcaudit export' does (export.Write, offline),
// then with its manifest (--manifest: the file's SHA-256 too), then
// through the API over a real connection (the client discarding what
// it reads), and reports both rates, their ratio, and how far the
// process's resident anonymous memory grew above where each began (the
// daemon's side: the client holds a 32 KiB buffer).
//
//	go test ./api -run '^$' -bench ExportAPI -benchtime 1x
func BenchmarkExportAPI(b *testing.B) {
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
	cached, _, err := storebench.Cached(root, storebench.Default(n, 1), b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	// A copy the daemon may write (its access log), as it would its own.
	dir := b.TempDir()
	if err := copyFile(filepath.Join(cached, "cdcaudit.db"), filepath.Join(dir, "cdcaudit.db")); err != nil {
		b.Fatal(err)
	}
	s, err := sink.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	key, err := instancekey.LoadOrCreate(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Options{Sources: []Source{{Name: "odoo", Store: s, Signer: key}}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(access.NewContext(r.Context(), admin)))
	}))
	defer srv.Close()
	for _, format := range export.Formats {
		b.Run(format, func(b *testing.B) {
			for b.Loop() {
				var offBytes, apiBytes int64
				off := measure(b, func() error {
					cw := &countingWriter{}
					got, err := export.Write(cw, s, sink.Query{}, format)
					if err == nil && got != uint64(n) {
						b.Fatalf("offline: %d events of %d", got, n)
					}
					offBytes = cw.n
					return err
				})
				signed := measure(b, func() error {
					m, err := manifest.Export(b.Context(), &countingWriter{}, s, sink.Query{}, format, key)
					if err == nil && m.Events != uint64(n) {
						b.Fatalf("offline with a manifest: %d events of %d", m.Events, n)
					}
					return err
				})
				api := measure(b, func() error {
					res, err := http.Get(srv.URL + "/api/v1/export?format=" + format)
					if err != nil {
						return err
					}
					defer res.Body.Close()
					apiBytes, err = io.Copy(io.Discard, res.Body)
					if err == nil && (res.StatusCode != 200 || res.Trailer.Get(DigestTrailer) == "") {
						b.Fatalf("API: %d, no digest trailer: the export did not complete", res.StatusCode)
					}
					return err
				})
				if format != "xlsx" && apiBytes != offBytes {
					b.Fatalf("API: %d bytes, offline %d", apiBytes, offBytes)
				}
				b.ReportMetric(float64(n)/off.took.Seconds(), "offline-events/s")
				b.ReportMetric(float64(n)/api.took.Seconds(), "api-events/s")
				b.ReportMetric(off.took.Seconds()/api.took.Seconds(), "api/offline-rate")
				b.ReportMetric(off.cpu.Seconds()/api.cpu.Seconds(), "api/offline-cpu-rate")
				b.ReportMetric(signed.took.Seconds()/api.took.Seconds(), "api/offline-manifest-rate")
				b.ReportMetric(float64(off.growth)/1024, "offline-rss-growth-MiB")
				b.ReportMetric(float64(api.growth)/1024, "api-rss-growth-MiB")
			}
		})
	}
}

type measured struct {
	took, cpu time.Duration
	growth    int64 // KiB of RssAnon above where it began, at its peak
}

// measure runs fn from a collected heap.
func measure(b *testing.B, fn func() error) measured {
	debug.FreeOSMemory()
	growth := selfusage.AnonRSSGrowth()
	cpu, start := selfusage.CPU(), time.Now()
	err := fn()
	m := measured{took: time.Since(start), cpu: selfusage.CPU() - cpu, growth: growth()}
	if err != nil {
		b.Fatal(err)
	}
	return m
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
