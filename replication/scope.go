package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// scope filters the stream by --tables/--exclude (the insert publication
// is FOR ALL TABLES, so the server sends every table) and tells the keeper
// about tables it has not decided on yet. pgoutput describes each relation
// (a Relation message) before its first change in a session, so the
// decision is made once per relation and session.
type scope struct {
	cfg *Config
	cat *Catalog // partition roots; nil when no filter is set
	in  map[uint32]bool

	mu        sync.Mutex
	decided   map[uint32]bool // relations the keeper has listed or found unusable
	described map[uint32]bool // relations in scope the stream has described
	wake      chan struct{}
}

func newScope(cfg *Config) *scope {
	s := &scope{cfg: cfg, in: map[uint32]bool{}, decided: map[uint32]bool{}, described: map[uint32]bool{}, wake: make(chan struct{}, 1)}
	if cfg.filtered() {
		s.cat = NewCatalog(cfg.DSN).Expect(cfg.Server)
	}
	return s
}

func (s *scope) close() {
	if s.cat != nil {
		s.cat.Close()
	}
}

// reset forgets the relations of the previous session.
func (s *scope) reset() { clear(s.in) }

// setDecided replaces what the keeper has decided: a table it has not
// listed although it is usable (new, busy) wakes it again when described.
func (s *scope) setDecided(known map[uint32]tableCoverage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.decided)
	for oid, c := range known {
		if c.listed || c.usableSince.IsZero() {
			s.decided[oid] = true
		}
	}
}

// wasDescribed reports whether the stream has described the relation: a
// change of it was streamed, so it is in use.
func (s *scope) wasDescribed(oid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.described[oid]
}

// filter inspects one pgoutput message. It returns the message to hand to
// the consumer (possibly rewritten: a TRUNCATE of tables partly in scope),
// or nil to drop it.
func (s *scope) filter(ctx context.Context, data []byte) []byte {
	if len(data) < 5 {
		return data
	}
	switch data[0] {
	case 'R':
		oid := binary.BigEndian.Uint32(data[1:5])
		schema, rest, ok := cstring(data[5:])
		name, _, ok2 := cstring(rest)
		if !ok || !ok2 {
			return data // malformed: the decoder says so
		}
		in := s.relationInScope(ctx, oid, schema, name)
		s.in[oid] = in
		s.mu.Lock()
		decided := s.decided[oid]
		if in {
			s.described[oid] = true
		}
		s.mu.Unlock()
		if in && !decided {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		return data
	case 'I', 'U', 'D':
		if in, seen := s.in[binary.BigEndian.Uint32(data[1:5])]; seen && !in {
			return nil
		}
		return data
	case 'T':
		return s.truncate(data)
	}
	return data
}

// truncate keeps the relations in scope of a TRUNCATE message: 'T',
// int32 count, int8 options, count × int32 OIDs.
func (s *scope) truncate(data []byte) []byte {
	if len(data) < 6 {
		return data
	}
	n := int(binary.BigEndian.Uint32(data[1:5]))
	if n < 0 || len(data) != 6+4*n {
		return data
	}
	var keep []uint32
	for i := 0; i < n; i++ {
		oid := binary.BigEndian.Uint32(data[6+4*i:])
		if in, seen := s.in[oid]; !seen || in {
			keep = append(keep, oid)
		}
	}
	switch len(keep) {
	case n:
		return data
	case 0:
		return nil
	}
	out := make([]byte, 6, 6+4*len(keep))
	out[0], out[5] = 'T', data[5]
	binary.BigEndian.PutUint32(out[1:5], uint32(len(keep)))
	for _, oid := range keep {
		out = binary.BigEndian.AppendUint32(out, oid)
	}
	return out
}

func (s *scope) relationInScope(ctx context.Context, oid uint32, schema, name string) bool {
	if !s.cfg.filtered() || s.cfg.matches(schema+"."+name) {
		return true
	}
	root, err := s.cat.PartitionRoot(ctx, oid)
	if err != nil {
		// Better an event too many than a lost one. At a stop the lookup is
		// cancelled: the transaction is replayed after the restart anyway.
		if ctx.Err() != nil {
			return true
		}
		s.cfg.Logger.Warn("cannot look up the partition root of a table; it is captured", "table", schema+"."+name, "err", err)
		return true
	}
	return root != "" && s.cfg.matches(root)
}

func cstring(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// keep runs the keeper while Stream runs: a sync at once, then on every
// tick of CatalogInterval and whenever the stream describes a relation in
// scope that the keeper has not looked at (a table created meanwhile).
// A connection to another server ends the stream (fail).
func (st *streamer) keep(ctx context.Context, fail context.CancelCauseFunc) {
	k := newKeeper(st.cfg)
	k.quiet = true // Prepare has just warned about every table
	k.described = st.scope.wasDescribed
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeQuietly(conn)
		}
	}()
	tick := time.NewTicker(st.cfg.CatalogInterval)
	defer tick.Stop()
	for {
		if conn == nil {
			var stop bool
			if conn, stop = st.connectChecked(ctx, fail, "publication keeper"); stop {
				return
			}
		}
		if conn != nil {
			qctx, cancel := context.WithTimeout(ctx, commandTimeout)
			err := k.sync(qctx, conn)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				st.log.Warn("cannot update the changes publication; retrying", "publication", st.cfg.changesPub(), "err", err)
				if conn.IsClosed() || brokenConn(conn, err) {
					closeQuietly(conn)
					conn = nil
				}
			default:
				st.scope.setDecided(k.known)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-st.scope.wake:
		}
	}
}

// connectChecked opens an ordinary connection for a helper goroutine of
// the stream (the slot monitor, the publication keeper) and checks that it
// reached the stream's server: another cluster at the same address must be
// refused as such, not misread (its catalog has no such slot). It returns
// nil when it cannot connect (try again later), and stop when it ended the
// stream with fail.
func (st *streamer) connectChecked(ctx context.Context, fail context.CancelCauseFunc, who string) (conn *pgx.Conn, stop bool) {
	c, err := connectSQL(ctx, st.cfg.DSN)
	if err == nil {
		if err = verifyServer(ctx, c, st.cfg); IsFatal(err) {
			closeQuietly(c)
			st.log.Error("replication stopped", "err", err)
			fail(err)
			return nil, true
		}
		if err != nil {
			closeQuietly(c)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			st.log.Debug(who+" cannot connect", "err", err)
		}
		return nil, false
	}
	return c, false
}

// serverOf is the identity of the server behind an ordinary connection.
func serverOf(ctx context.Context, conn *pgx.Conn) (Identity, error) {
	var id Identity
	err := conn.QueryRow(ctx, "SELECT (SELECT system_identifier::text FROM pg_control_system()), current_database()").Scan(&id.SystemID, &id.Database)
	return id, err
}

// verifyServer checks an ordinary connection against cfg.Server.
func verifyServer(ctx context.Context, conn *pgx.Conn, cfg *Config) error {
	if cfg.Server.SystemID == "" {
		return nil
	}
	id, err := serverOf(ctx, conn)
	if err != nil {
		return fmt.Errorf("replication: read the server's identity: %w", err)
	}
	return cfg.checkServer(id)
}

// errSwitchPublications ends a session that streamed from the insert
// publication alone once it has passed the point where both publications
// exist (see streamer.insertsOnlyUntil).
var errSwitchPublications = errors.New("replication: the changes publication exists from here on; reconnecting with both publications")
