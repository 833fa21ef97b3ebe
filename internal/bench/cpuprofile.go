package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// profiled starts cmd's cdcaudit with its /debug/pprof endpoint when
// --cpuprofile is given, and collects its CPU profile while the returned
// stop is not called, as one-second pieces in dir named after run:
// net/http/pprof writes a profile only once its duration is over, and
// `go tool pprof DIR/*.pb.gz` merges the pieces. Stop waits for the piece
// under way (the process is idle by then). Without dir, nothing.
func profiled(args []string, dir, run string) (_ []string, stop func(), err error) {
	if dir == "" {
		return args, func() {}, nil
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, err
	}
	args = slices.Clone(args)
	i := slices.Index(args, "--http-addr")
	if i < 0 || i+1 >= len(args) {
		return nil, nil, fmt.Errorf("--cpuprofile: no --http-addr in %v", args)
	}
	args[i+1] = addr
	args = append(args, "--pprof")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopping := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 10 * time.Second}
		for n := 0; ; n++ {
			select {
			case <-stopping:
				return
			default:
			}
			if err := savePiece(ctx, client, "http://"+addr+"/debug/pprof/profile?seconds=1", filepath.Join(dir, fmt.Sprintf("%s-%04d.pb.gz", run, n))); err != nil {
				// Not listening yet, or stopping: try again shortly.
				select {
				case <-stopping:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}()
	var once sync.Once
	return args, func() {
		once.Do(func() {
			close(stopping)
			wg.Wait()
			cancel()
		})
	}, nil
}

func savePiece(ctx context.Context, client *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
