package backup

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/cdcaudit/cdcaudit/sink"
)

// Remote reads the store of the daemon serving dir, over its socket: what
// the read commands read of a sink.Store, with the same answers.
type Remote struct {
	dir  string
	info wireInfo
}

// Dial asks the daemon serving dir's store whether it serves reads. It
// returns ErrNoDaemon when none listens.
func Dial(dir string) (*Remote, error) {
	r := &Remote{dir: dir}
	err := call(context.Background(), dir, "info", []byte("{}"), func(kind string, p []byte) error {
		if kind != "info" {
			return fmt.Errorf("control socket: an unexpected %q frame", kind)
		}
		return json.Unmarshal(p, &r.info)
	})
	if errors.Is(err, errUnknownVerb) {
		return nil, errors.New("the running daemon does not serve reads of its store (an older cdcaudit): stop it, or query a copy ('cdcaudit backup')")
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Dir returns the store directory.
func (r *Remote) Dir() string { return r.dir }

// Close does nothing: every request has its own connection.
func (r *Remote) Close() error { return nil }

// IndexComplete reports whether the store's indexes were complete when
// Dial asked.
func (r *Remote) IndexComplete() (bool, error) { return r.info.IndexComplete, nil }

// Query is sink.Store.Query, answered by the daemon a page at a time.
func (r *Remote) Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (next string, err error) {
	body, err := encodeQuery(q)
	if err != nil {
		return "", err
	}
	err = call(ctx, r.dir, "query", body, func(kind string, p []byte) error {
		switch kind {
		case "ev":
			k, v, err := splitPair(p)
			if err != nil {
				return err
			}
			return fn(k, v)
		case "next":
			next = string(p)
			return nil
		}
		return fmt.Errorf("control socket: an unexpected %q frame", kind)
	})
	if err != nil {
		return "", err
	}
	return next, nil
}

// Count is sink.Store.Count.
func (r *Remote) Count(ctx context.Context, q sink.Query) (n uint64, err error) {
	body, err := encodeQuery(q)
	if err != nil {
		return 0, err
	}
	err = call(ctx, r.dir, "count", body, func(kind string, p []byte) error {
		if kind != "count" {
			return fmt.Errorf("control socket: an unexpected %q frame", kind)
		}
		n, err = strconv.ParseUint(string(p), 10, 64)
		return err
	})
	return n, err
}

// LoadState is sink.Store.LoadState, for the state buckets the daemon
// serves (sessions).
func (r *Remote) LoadState(bucket string, fn func(key, value []byte) error) error {
	body, err := json.Marshal(struct {
		Bucket string `json:"bucket"`
	}{bucket})
	if err != nil {
		return err
	}
	return call(context.Background(), r.dir, "state", body, func(kind string, p []byte) error {
		if kind != "kv" {
			return fmt.Errorf("control socket: an unexpected %q frame", kind)
		}
		k, v, err := splitPair(p)
		if err != nil {
			return err
		}
		return fn(k, v)
	})
}

// CheckChain is CheckChain, run by the daemon.
func (r *Remote) CheckChain(ctx context.Context, waypoints []string, progress func(done, total uint64)) (ChainReport, error) {
	var rep ChainReport
	body, err := json.Marshal(struct {
		Waypoints []string `json:"waypoints"`
	}{append([]string{}, waypoints...)})
	if err != nil {
		return rep, err
	}
	got := false
	err = call(ctx, r.dir, "verify", body, func(kind string, p []byte) error {
		switch kind {
		case "progress":
			var done, total uint64
			if _, err := fmt.Sscanf(string(p), "%d %d", &done, &total); err == nil && progress != nil {
				progress(done, total)
			}
			return nil
		case "report":
			got = true
			return json.Unmarshal(p, &rep)
		}
		return fmt.Errorf("control socket: an unexpected %q frame", kind)
	})
	if err == nil && !got {
		err = errors.New("control socket: the daemon's verify sent no report")
	}
	return rep, err
}

// splitPair splits a frame of a key (its length first) and a value.
func splitPair(p []byte) (key, value []byte, err error) {
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w) {
		return nil, nil, errors.New("control socket: a malformed frame")
	}
	return p[w : w+int(n)], p[w+int(n):], nil
}
