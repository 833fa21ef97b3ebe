package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cdcaudit/cdcaudit/backup"
	"github.com/cdcaudit/cdcaudit/sink"
)

// trail is the store the read commands (export, events, sessions, verify)
// read: opened by this process when no daemon holds it, else the running
// daemon's, read over its socket (backup.Remote). The commands render the
// same answers the same way: their output does not depend on which.
type trail interface {
	Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (next string, err error)
	Count(ctx context.Context, q sink.Query) (uint64, error)
	LoadState(bucket string, fn func(key, value []byte) error) error
	IndexComplete() (bool, error)
	CheckChain(ctx context.Context, waypoints []string, progress func(done, total uint64)) (backup.ChainReport, error)
	Dir() string
	Close() error
}

// localTrail is a store this process opened.
type localTrail struct{ *sink.Store }

func (l localTrail) CheckChain(ctx context.Context, waypoints []string, progress func(done, total uint64)) (backup.ChainReport, error) {
	return backup.CheckChain(ctx, l.Store, waypoints, progress)
}

// openTrail opens the store in dir for reading: through the daemon that
// holds it when one answers on its socket, else directly.
func openTrail(dir string) (trail, error) {
	r, derr := backup.Dial(dir)
	if derr == nil {
		return r, nil
	}
	// No daemon, or one that cannot answer (stopping, an older one): the
	// store tells whether it is free.
	s, err := sink.OpenReadOnly(dir)
	if err == nil {
		return localTrail{s}, nil
	}
	if !errors.Is(err, sink.ErrLocked) {
		if stores := sourceStores(dir); stores != nil {
			return nil, fmt.Errorf("%s holds the stores of several databases, one per source: give --data-dir %s (sources: %s)",
				dir, filepath.Join(dir, "<source>"), strings.Join(slices.Sorted(maps.Keys(stores)), ", "))
		}
		return nil, err
	}
	// A daemon may have opened it since: its socket follows.
	if r, derr = backup.Dial(dir); derr == nil {
		return r, nil
	}
	if !errors.Is(derr, backup.ErrNoDaemon) {
		return nil, fmt.Errorf("%w; and the daemon's socket: %v", err, derr)
	}
	return nil, fmt.Errorf("%w; no running 'cdcaudit run' answers on %s to read it for you: it is held by another command (reindex, compact) or a daemon still starting: try again when it is done",
		err, filepath.Join(dir, backup.SocketName))
}
