package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Consumer is what the stream feeds; implemented by the pipeline. Stream
// calls its methods from one goroutine, except Notify's channel, which it
// only receives from. While Handle runs nothing is read and no keepalive is
// answered: Handle must not block for anywhere near wal_sender_timeout
// (default 60s), or the server drops the connection.
type Consumer interface {
	// Handle takes one pgoutput message (the XLogData payload); data is
	// valid only during the call. An error wrapping ErrSkippable is logged
	// and counted and streaming continues; any other error ends the
	// session (reconnect, after Reset).
	Handle(ctx context.Context, walStart uint64, data []byte) error
	// Position reports that everything up to durable is stored; inFlight
	// means a transaction is open or received data is not yet durable.
	Position() (durable uint64, inFlight bool)
	// AdvanceIdle persists lsn as the checkpoint: nothing before it
	// concerns the consumer. Called only when Position says nothing is in
	// flight; may complete asynchronously (Position shows it once durable).
	AdvanceIdle(lsn uint64)
	// Notify is signalled whenever durable moves, so a status update goes
	// out promptly.
	Notify() <-chan struct{}
	// Reset is called after a lost connection: drop partial state, wait
	// until written data is durable, return the LSN to resume from.
	Reset(ctx context.Context) (resume uint64, err error)
}

const (
	connectTimeout = 30 * time.Second
	commandTimeout = 30 * time.Second
	writeTimeout   = 10 * time.Second
	// pollInterval bounds a blocking read, so a Notify signal is noticed
	// within this time even when the server is silent.
	pollInterval = 100 * time.Millisecond
	// minStatusGap rate-limits the status updates Notify triggers: one per
	// durable batch is plenty, one per event would double the walsender's
	// work.
	minStatusGap = 100 * time.Millisecond
	// A silent server is asked for a reply after probeAfter; one that stays
	// silent for deadAfter is a dead connection (e.g. after a failover
	// behind a pooler, where reads would otherwise wait for ever).
	probeAfter = 15 * time.Second
	deadAfter  = 90 * time.Second
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
	// A session that streamed this long resets the backoff.
	stableAfter = 30 * time.Second
)

// Stream streams from start until ctx is cancelled (it then sends a final
// status update with the consumer's durable position and returns nil) or a
// fatal error (IsFatal). A lost connection is retried with capped
// exponential backoff with jitter, resuming from c.Reset.
func Stream(ctx context.Context, cfg Config, start uint64, c Consumer) error {
	cfg, err := cfg.normalize()
	if err != nil {
		return err
	}
	st := &streamer{cfg: &cfg, c: c, log: cfg.Logger.With(cfg.server(), "slot", cfg.Slot), warned: map[byte]bool{}, scope: newScope(&cfg)}
	defer st.scope.close()

	// The slot monitor and the publication keeper end the stream by
	// cancelling ctx with a fatal cause.
	ctx, fail := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		st.monitor(ctx, fail)
	}()
	go func() {
		defer wg.Done()
		st.keep(ctx, fail)
	}()
	err = st.loop(ctx, start)
	fail(nil)
	wg.Wait()
	return err
}

type streamer struct {
	cfg    *Config
	c      Consumer
	log    *slog.Logger
	warned map[byte]bool // message kinds already logged as skipped
	scope  *scope
	// insertsOnlyUntil, when not 0, makes sessions stream from the insert
	// publication alone up to this LSN: the WAL before it was written while
	// the changes publication did not exist yet (an installation upgraded
	// from one publication), which pgoutput (PostgreSQL < 18) refuses to
	// decode with it named.
	insertsOnlyUntil uint64
}

// stopped reports whether ctx ended the stream, and the error to return:
// the monitor's fatal error, or nil for a cancellation.
func stopped(ctx context.Context) (bool, error) {
	if ctx.Err() == nil {
		return false, nil
	}
	if cause := context.Cause(ctx); IsFatal(cause) {
		return true, cause
	}
	return true, nil
}

func (st *streamer) loop(ctx context.Context, start uint64) error {
	attempt := 0
	var busySince time.Time
	for {
		lived, err := st.session(ctx, start)
		if done, ferr := stopped(ctx); done {
			return ferr
		}
		if IsFatal(err) {
			st.log.Error("replication stopped", "err", err)
			return err
		}
		switched := false
		switch {
		case errors.Is(err, errChangesMissing):
			until, werr := st.walNow(ctx)
			if werr != nil {
				// Server gone meanwhile: reconnect as after any loss; the
				// next session meets the same WAL and tries again.
				err = fmt.Errorf("%w (and reading the server's WAL position failed: %v)", err, werr)
				break
			}
			st.insertsOnlyUntil = until
			switched = true
			st.log.Warn("a publication did not exist for the WAL being decoded; trying the insert publication alone up to the server's current position",
				"err", err, "from", lsnString(start), "until", lsnString(until))
		case errors.Is(err, errSwitchPublications):
			// The insert publication alone got past it: the changes
			// publication was created after the slot (an upgrade).
			st.log.Warn("UPDATES AND DELETES BETWEEN THESE POSITIONS ARE NOT CAPTURED: publication "+st.cfg.changesPub()+" was created after the slot, and pgoutput cannot decode the WAL before it with it; streaming from both publications again",
				"from", lsnString(start), "until", lsnString(st.insertsOnlyUntil))
			st.cfg.reportCoverage(Coverage{Table: "*", Ops: publishChanges, Captured: false, LSN: start, Time: time.Now(), Reason: "publication " + st.cfg.changesPub() + " did not exist yet"})
			st.cfg.reportCoverage(Coverage{Table: "*", Ops: publishChanges, Captured: true, LSN: st.insertsOnlyUntil, Time: time.Now()})
			st.insertsOnlyUntil = 0
			switched = true
		}
		if lived >= stableAfter {
			attempt = 0
		}
		delay := backoff(attempt)
		attempt++
		if switched {
			delay, attempt = 0, 0
		}
		var busy *errSlotBusy
		if errors.As(err, &busy) {
			if busySince.IsZero() {
				busySince = time.Now()
			}
			holder := st.slotHolder(ctx)
			if waited := time.Since(busySince); waited >= st.cfg.ActiveSlotWait {
				err = fatalf(err, "replication slot %q has been in use by another process for %s (%s): stop that process, or end it with SELECT pg_terminate_backend(pid)", st.cfg.Slot, waited.Round(time.Second), holder)
				st.log.Error("replication stopped", "err", err)
				return err
			}
			st.log.Warn("replication slot is in use by another process; retrying", "holder", holder,
				"waited", time.Since(busySince).Round(time.Second), "give_up_after", st.cfg.ActiveSlotWait, "in", delay.Round(time.Millisecond))
		} else if !switched {
			busySince = time.Time{}
			st.log.Warn("replication connection lost; reconnecting", "err", err, "in", delay.Round(time.Millisecond))
		}
		if !switched {
			st.cfg.Observer.Reconnected(err)
		}

		resume, rerr := st.c.Reset(ctx)
		if done, ferr := stopped(ctx); done {
			return ferr
		}
		if rerr != nil {
			return fmt.Errorf("replication: consumer reset: %w", rerr)
		}
		if resume != 0 { // 0: nothing stored yet, so where we started is still right
			start = resume
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// errChangesMissing: decoding failed on a missing publication while both
// were named; the insert publication alone is tried next.
var errChangesMissing = errors.New("replication: a publication did not exist for the WAL being decoded")

// walNow is the server's WAL position, over an ordinary connection.
func (st *streamer) walNow(ctx context.Context) (uint64, error) {
	conn, err := connectSQL(ctx, st.cfg.DSN)
	if err != nil {
		return 0, fmt.Errorf("replication: connect to %s: %w", RedactDSN(st.cfg.DSN), err)
	}
	defer closeQuietly(conn)
	lsn, _, err := walNow(ctx, conn)
	return lsn, err
}

// backoff is 250ms doubling to 30s, with jitter over its upper half so
// that many clients do not reconnect in step.
func backoff(attempt int) time.Duration {
	d := backoffMax
	if attempt < 10 {
		d = min(backoffMin<<attempt, backoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// slotHolder describes the process holding the slot, for messages.
func (st *streamer) slotHolder(ctx context.Context) string {
	conn, err := connectSQL(ctx, st.cfg.DSN)
	if err != nil {
		return "holder unknown: " + err.Error()
	}
	defer closeQuietly(conn)
	h, err := holderOf(ctx, conn, st.cfg.Slot)
	if err != nil {
		return "holder unknown: " + err.Error()
	}
	return h.String()
}

// session runs one replication connection. It returns nil only when ctx
// ended it (after the final status update), and how long it streamed.
func (st *streamer) session(ctx context.Context, start uint64) (time.Duration, error) {
	conn, err := connectReplication(ctx, st.cfg.DSN)
	if err != nil {
		return 0, classify(ctx, st.cfg, err)
	}
	defer closeQuietly(conn)

	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	// The server at this address may not be the one we streamed from (a
	// restore, another cluster started on its port): check on every
	// connection, before anything is received.
	sys, err := pglogrepl.IdentifySystem(cctx, conn)
	if err != nil {
		return 0, classify(ctx, st.cfg, err)
	}
	if err := st.cfg.checkServer(Identity{SystemID: sys.SystemID, Database: sys.DBName}); err != nil {
		return 0, err
	}
	// wal_level needs a restart to change: check it on every connection.
	res, err := conn.Exec(cctx, "SHOW wal_level").ReadAll()
	if err != nil {
		return 0, classify(ctx, st.cfg, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return 0, errors.New("replication: unexpected answer to SHOW wal_level")
	}
	if level := string(res[0].Rows[0][0]); level != "logical" {
		return 0, fatalf(nil, "wal_level is %q on %s, logical decoding needs logical: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL", level, RedactDSN(st.cfg.DSN))
	}
	insertsOnly := st.insertsOnlyUntil != 0
	err = pglogrepl.StartReplication(cctx, conn, st.cfg.Slot, pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(st.cfg.publicationNames(insertsOnly)),
			"messages 'true'",
		},
	})
	if err != nil {
		return 0, classify(ctx, st.cfg, err)
	}
	st.log.Info("streaming", "start", lsnString(start), "walsender_pid", conn.PID(), "inserts_only", insertsOnly)
	st.scope.reset()

	s := &session{streamer: st, conn: conn, start: start, lastRecv: time.Now()}
	began := time.Now()
	err = s.run(ctx)
	return time.Since(began), err
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// session is the state of one replication connection.
type session struct {
	*streamer
	conn       *pgconn.PgConn
	start      uint64    // where this session asked to start
	received   uint64    // highest LSN received (XLogData start, keepalive WAL end)
	confirmed  uint64    // flush position last sent
	advanced   uint64    // last LSN handed to AdvanceIdle
	lastStatus time.Time // last standby status update
	lastRecv   time.Time // last message from the server
	lastProbe  time.Time // last status update asking for a reply
}

func (s *session) run(ctx context.Context) error {
	notify := s.c.Notify()
	pending := false // durable moved since the last status update
	var win readWindow
	received := false // a message arrived since the last loop
	for {
		if ctx.Err() != nil {
			return s.finish()
		}
		select {
		case <-notify:
			pending = true
		default:
		}
		now := time.Now()
		if received {
			// When it was handled, near enough for deadAfter: one clock
			// read per message, not two.
			s.lastRecv, received = now, false
		}
		if (pending && now.Sub(s.lastStatus) >= minStatusGap) || now.Sub(s.lastStatus) >= s.cfg.StatusInterval {
			if err := s.sendStatus(false); err != nil {
				return err
			}
			pending = false
		}
		if silence := now.Sub(s.lastRecv); silence >= deadAfter {
			return fmt.Errorf("replication: no message from the server for %s", silence.Round(time.Second))
		} else if silence >= probeAfter && now.Sub(s.lastProbe) >= probeAfter {
			if err := s.sendStatus(true); err != nil {
				return err
			}
			s.lastProbe = now
		}

		end := now.Add(pollInterval)
		if due := s.lastStatus.Add(s.cfg.StatusInterval); due.Before(end) {
			end = due
		}
		if err := win.set(s.conn.Conn(), now, end); err != nil {
			return fmt.Errorf("replication: %w", err)
		}
		// No context: ctx is checked between reads (each ends by the
		// window's deadline), and pgconn would register and remove a
		// watch of a cancellable context for every message.
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			if ctx.Err() != nil {
				return s.finish()
			}
			return fmt.Errorf("replication: receive: %w", err)
		}
		received = true
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := s.copyData(ctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			pe := pgconn.ErrorResponseToPgError(m)
			// 42704 while decoding: a publication did not exist for this
			// WAL. If it is the changes publication (created after the slot),
			// the insert publication alone gets past it; if not, that
			// session fails the same way and it is fatal.
			if pe.Code == "42704" && s.insertsOnlyUntil == 0 {
				return fmt.Errorf("%w: %v", errChangesMissing, pe)
			}
			return classify(ctx, s.cfg, pe)
		case *pgproto3.NoticeResponse:
			s.log.Info("server notice", "message", m.Message)
		case *pgproto3.CopyDone, *pgproto3.CommandComplete:
			// A walsender that shuts down ends the copy once we have
			// confirmed what it sent; it then exits.
			return errors.New("replication: the server ended the stream (shutting down?)")
		default:
			s.log.Debug("unexpected message on the replication connection", "type", fmt.Sprintf("%T", m))
		}
	}
}

func (s *session) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("replication: %w", err)
		}
		if until := s.insertsOnlyUntil; until != 0 && len(x.WALData) >= 9 && x.WALData[0] == 'B' &&
			binary.BigEndian.Uint64(x.WALData[1:9]) > until {
			return errSwitchPublications // not handed on: the next session sends it again
		}
		s.received = max(s.received, uint64(x.WALStart))
		// The server's WAL end rides on every XLogData too: keep the lag
		// metric true on a busy stream that sees few keepalives.
		s.cfg.Observer.ServerWALEnd(uint64(x.ServerWALEnd))
		data := s.scope.filter(ctx, x.WALData)
		if data == nil {
			return nil
		}
		if err := s.c.Handle(ctx, uint64(x.WALStart), data); err != nil {
			if !errors.Is(err, ErrSkippable) {
				return fmt.Errorf("replication: consumer: %w", err)
			}
			var kind byte
			if len(x.WALData) > 0 {
				kind = x.WALData[0]
			}
			s.skipped(kind, uint64(x.WALStart), err)
		}
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("replication: %w", err)
		}
		walEnd := uint64(k.ServerWALEnd)
		s.cfg.Observer.ServerWALEnd(walEnd)
		s.received = max(s.received, walEnd)
		if until := s.insertsOnlyUntil; until != 0 {
			// Never confirm past the point where both publications apply:
			// the WAL after it may hold updates this session does not get.
			if _, inFlight := s.c.Position(); walEnd > until && !inFlight {
				s.advanceIdle(until)
				return errSwitchPublications
			}
			walEnd = min(walEnd, until)
		}
		s.advanceIdle(walEnd)
		if k.ReplyRequested {
			return s.sendStatus(false)
		}
	default:
		s.log.Warn("unknown message on the replication stream, ignored", "kind", string(data[0]))
	}
	return nil
}

// skipped logs a skipped message: the first of each kind loudly, the rest
// at debug level, so a server that sends many does not flood the log.
func (s *session) skipped(kind byte, lsn uint64, err error) {
	s.cfg.Observer.SkippedMessage(kind)
	level := slog.LevelDebug
	if !s.warned[kind] {
		s.warned[kind] = true
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "pgoutput message skipped (further ones of this kind are logged at debug level)",
		"kind", string(kind), "lsn", lsnString(lsn), "err", err)
}

// advanceIdle: a keepalive says the server has sent everything up to
// walEnd. If the consumer has nothing in flight, everything before walEnd
// that concerned it is stored, so walEnd can become the checkpoint and the
// slot stops holding WAL written to tables we do not publish. With a
// transaction in flight, jumping would confirm it before it is stored.
func (s *session) advanceIdle(walEnd uint64) {
	durable, inFlight := s.c.Position()
	if inFlight || walEnd <= durable || walEnd <= s.advanced {
		return
	}
	s.advanced = walEnd
	s.c.AdvanceIdle(walEnd)
}

// sendStatus reports write = what we received, flush = apply = what the
// consumer has made durable: the slot is never confirmed past the store.
func (s *session) sendStatus(replyRequested bool) error {
	durable, _ := s.c.Position()
	write := max(s.received, durable)
	if durable == 0 || durable < s.start {
		// Nothing stored since we started: report no position at all.
		// pglogrepl turns a zero flush into the write position, and a
		// flush below our start would (before PostgreSQL 17) move the
		// slot's confirmed_flush_lsn backwards.
		write, durable = 0, 0
	}
	s.conn.Conn().SetWriteDeadline(time.Now().Add(writeTimeout))
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(write),
		WALFlushPosition: pglogrepl.LSN(durable),
		WALApplyPosition: pglogrepl.LSN(durable),
		ReplyRequested:   replyRequested,
	})
	s.conn.Conn().SetWriteDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("replication: send standby status: %w", err)
	}
	s.lastStatus = time.Now()
	if durable != 0 && durable != s.confirmed {
		s.confirmed = durable
		s.cfg.Observer.Confirmed(durable)
	}
	return nil
}

// finish sends the final status update when ctx ends the stream.
func (s *session) finish() error {
	if err := s.sendStatus(false); err != nil {
		s.log.Warn("final standby status update failed", "err", err)
		return nil
	}
	s.log.Info("replication stopped", "confirmed", lsnString(s.confirmed))
	return nil
}

// readWindow gives reads a deadline on the connection itself: one
// deadline serves every read until it passes, so a busy stream costs no
// call per message.
type readWindow struct{ end time.Time }

// set gives conn's reads the deadline end when the current one has passed.
func (w *readWindow) set(conn net.Conn, now, end time.Time) error {
	if !w.end.IsZero() && now.Before(w.end) {
		return nil
	}
	w.end = end
	return conn.SetReadDeadline(end)
}
