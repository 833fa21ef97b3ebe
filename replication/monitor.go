package replication

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// monitor watches the slot over an ordinary connection while Stream runs:
// its wal_status and retained WAL go to the Observer; a lost or vanished
// slot means events are gone, so it ends the stream with a fatal error
// (fail) rather than letting it retry for ever. A server it cannot reach is
// the stream loop's business, not the monitor's: it just tries again.
func (st *streamer) monitor(ctx context.Context, fail context.CancelCauseFunc) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeQuietly(conn)
		}
	}()
	tick := time.NewTicker(st.cfg.MonitorInterval)
	defer tick.Stop()
	last := ""
	for {
		// Prepare has just looked at the slot: the first look is due one
		// interval from now.
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil {
			var stop bool
			if conn, stop = st.connectChecked(ctx, fail, "slot monitor"); stop {
				return
			}
		}
		if conn != nil {
			qctx, cancel := context.WithTimeout(ctx, commandTimeout)
			s, err := readSlot(qctx, conn, st.cfg.Slot)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				st.log.Debug("slot monitor query failed", "err", err)
				closeQuietly(conn)
				conn = nil
			case !s.Exists:
				err := fatalf(nil, "replication slot %q no longer exists: someone dropped it; changes since the last checkpoint cannot be recovered from this server; restart with --accept-gap to create a new slot and accept the gap", st.cfg.Slot)
				st.log.Error("REPLICATION SLOT DROPPED", "err", err)
				fail(err)
				return
			default:
				st.cfg.Observer.SlotStatus(s.WALStatus, s.RetainedBytes, s.ServerLSN)
				switch s.WALStatus {
				case "lost":
					err := slotLost(nil, st.cfg.Slot)
					st.log.Error("REPLICATION SLOT LOST", "err", err)
					fail(err)
					return
				case "unreserved":
					st.log.Error("REPLICATION SLOT ABOUT TO BE LOST: wal_status unreserved (WAL it needs is past max_slot_wal_keep_size and will be removed at the next checkpoint)",
						"retained_bytes", s.RetainedBytes)
				case "extended":
					if last != "extended" {
						st.log.Warn("replication slot retains more WAL than max_wal_size (wal_status extended)", "retained_bytes", s.RetainedBytes)
					}
				}
				last = s.WALStatus
			}
		}
	}
}
