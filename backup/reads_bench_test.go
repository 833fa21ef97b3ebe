package backup

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/cdcaudit/cdcaudit/sink"
)

// BenchmarkQuery reads every event of a store of 100,000 (of about 500
// bytes), from the store itself and through the daemon's socket.
func BenchmarkQuery(b *testing.B) {
	s, dir := storeOf(b, 100_000, 300)
	srv, err := Serve(dir, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.ServeReads(s, nil)
	r, err := Dial(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		src  interface {
			Query(context.Context, sink.Query, func(k, v []byte) error) (string, error)
		}
	}{{"store", s}, {"socket", r}} {
		b.Run(c.name, func(b *testing.B) {
			var bytes int64
			for b.Loop() {
				bytes = 0
				if _, err := c.src.Query(context.Background(), sink.Query{}, func(_, v []byte) error { bytes += int64(len(v)); return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(bytes)
		})
	}
}
