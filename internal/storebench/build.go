package storebench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// genVersion names the generator's output: change it whenever the events
// a Workload yields change, or the store's layout changes within a format
// (its indexes), so that cached stores are rebuilt.
const genVersion = 3

// Built is what Build made.
type Built struct {
	Targets   *Targets
	BuildTime time.Duration
	FileSize  int64 // bytes
	Events    int
}

// Build writes w's events into a new store in dir through Store.Append,
// about batchEvents events per Append (whole transactions), each event
// with its Terms as the pipeline gives them. progress, when
// set, is called after every Append with the events written so far.
func Build(dir string, w Workload, batchEvents int, progress func(done int)) (*Built, error) {
	start := time.Now()
	s, err := sink.Open(dir)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	g := NewGenerator(w)
	var arena []byte
	for !g.Done() {
		arena = arena[:0]
		b := sink.Batch{Events: make([]sink.Encoded, 0, batchEvents+50)}
		for !g.Done() && len(b.Events) < batchEvents {
			g.AppendTx(&b, &arena, termsOf)
		}
		if _, err := s.Append([]sink.Batch{b}); err != nil {
			return nil, err
		}
		if progress != nil {
			progress(g.made)
		}
	}
	_, _, count := s.Head()
	if err := s.Close(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(filepath.Join(dir, sink.FileName))
	if err != nil {
		return nil, err
	}
	return &Built{Targets: g.Targets(), BuildTime: time.Since(start), FileSize: fi.Size(), Events: int(count)}, nil
}

// termsOf gives Build's events their terms as the pipeline does.
func termsOf(e *audit.Event) *audit.Terms {
	t := e.Terms()
	return &t
}

// Cached returns the directory of the store of w under root, building it
// there first when it is missing (logging its progress), and what Build
// said of it. The directory is named by the workload, the store format
// and the generator's version; a build interrupted half way is never taken
// for a store (it is built under another name and renamed when complete).
func Cached(root string, w Workload, logf func(format string, args ...any)) (string, *Built, error) {
	name := fmt.Sprintf("gen%d-format%d-n%d-seed%d", genVersion, sink.FormatVersion, w.Events, w.Seed)
	dir := filepath.Join(root, name)
	meta := filepath.Join(dir, "built.json")
	if b, err := os.ReadFile(meta); err == nil {
		var built Built
		if err := json.Unmarshal(b, &built); err != nil {
			return "", nil, fmt.Errorf("storebench: %s: %w (remove the directory to rebuild it)", meta, err)
		}
		return dir, &built, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", nil, err
	}
	tmp := dir + ".building-" + strconv.Itoa(os.Getpid())
	if err := os.RemoveAll(tmp); err != nil {
		return "", nil, err
	}
	logf("storebench: building a store of %d events in %s …", w.Events, tmp)
	step := max(w.Events/20, 1)
	next := step
	built, err := Build(tmp, w, 50_000, func(done int) {
		if done >= next {
			logf("storebench: %d of %d events", done, w.Events)
			next += step
		}
	})
	if err != nil {
		return "", nil, errors.Join(err, os.RemoveAll(tmp))
	}
	b, err := json.MarshalIndent(built, "", "  ")
	if err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "built.json"), b, 0o600); err != nil {
		return "", nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", nil, err
	}
	logf("storebench: built %d events in %s: %d bytes (%.0f B/event)", built.Events, built.BuildTime.Round(time.Second),
		built.FileSize, float64(built.FileSize)/float64(max(built.Events, 1)))
	return dir, built, nil
}
