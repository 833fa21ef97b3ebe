package correlate

import (
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// Bounds of the memory of recent stamps: how long (in stream time) and how
// many rows' updated_at are remembered. Forgetting costs proofs, never
// correctness: an update whose previous stamp may be forgotten stays
// undecided.
const (
	recentFor = 5 * time.Minute
	maxRecent = 1 << 17
)

// recentStamps remembers the updated_at that each row of a table without a
// before-image carried in the stream lately, so that an update repeating the
// value an earlier transaction left is known to be unstamped: the
// application would have written its own transaction's timestamp. since is
// the proof's horizon: every row whose updated_at is later than since, and
// that an earlier transaction wrote, is remembered.
type recentStamps struct {
	rows      map[rowRef]recentStamp
	since     int64 // µs since the epoch; 0 until the first transaction
	nextSweep int64
}

type rowRef struct {
	ti  *tableInfo
	key string
}

type recentStamp struct {
	at     int64  // updated_at, µs since the epoch
	commit int64  // of the transaction that wrote it
	xid    uint32 // of that transaction (with commit: which one)
}

func newRecentStamps() recentStamps { return recentStamps{rows: map[rowRef]recentStamp{}} }

// advance moves the stream clock to a transaction's commit: rows written
// longer than recentFor ago are forgotten, and the horizon moves with them.
func (r *recentStamps) advance(commitTime time.Time) {
	now := commitTime.UnixMicro()
	if r.since == 0 {
		r.since, r.nextSweep = now, now
	}
	if now < r.nextSweep {
		return
	}
	cut := now - recentFor.Microseconds()
	for k, s := range r.rows {
		if s.commit < cut {
			delete(r.rows, k)
		}
	}
	// A row stamped after cut was written by a transaction that committed
	// after cut: still here.
	r.since = max(r.since, cut)
	r.nextSweep = now + recentFor.Microseconds()/4
}

func (r *recentStamps) lookup(ev *evInfo, e *audit.Event) (recentStamp, bool) {
	if len(r.rows) == 0 || len(e.Key) == 0 {
		return recentStamp{}, false
	}
	s, ok := r.rows[rowRef{ev.ti, ev.rowKey(e)}]
	return s, ok
}

// same reports whether an earlier transaction left this row with this
// updated_at.
func (r *recentStamps) same(ev *evInfo, e *audit.Event, at int64, xid uint32, commit int64) bool {
	s, ok := r.lookup(ev, e)
	return ok && s.at == at && (s.xid != xid || s.commit != commit)
}

// fresh reports whether this transaction wrote the row's updated_at: no
// earlier transaction can have left that value (it is later than the
// horizon, and no remembered write left it), and it is not after the commit.
func (r *recentStamps) fresh(ev *evInfo, e *audit.Event, at int64, xid uint32, commit int64) bool {
	if at <= max(r.since, ev.ti.since) || at > commit || len(e.Key) == 0 {
		return false
	}
	return !r.same(ev, e, at, xid, commit)
}

// record remembers the updated_at the transaction's rows carry, for tables
// whose updates come without a before-image.
func (r *recentStamps) record(tx *Tx, evs []evInfo, commit int64) {
	for i, e := range tx.Events {
		ev := &evs[i]
		if ev.ti.full || len(e.Key) == 0 || ev.ti.updatedAt.name == "" {
			continue
		}
		switch e.Op {
		case audit.OpInsert, audit.OpUpdate:
			if e.Op == audit.OpInsert {
				v, _ := ev.ti.updatedAt.get(e.After)
				ev.at, ev.atOK = parseStamp(v)
			}
			if !ev.atOK {
				continue
			}
			if len(r.rows) >= maxRecent {
				// Forget everything rather than scan: the horizon moves to now.
				clear(r.rows)
				r.since = max(r.since, commit)
			}
			r.rows[rowRef{ev.ti, ev.rowKey(e)}] = recentStamp{at: ev.at, commit: commit, xid: tx.XID}
		case audit.OpDelete:
			if len(r.rows) > 0 {
				delete(r.rows, rowRef{ev.ti, ev.rowKey(e)})
			}
		}
	}
}

// rowKey is the event's key as recentStamps indexes it, joined once per
// event however often it is looked up.
func (ev *evInfo) rowKey(e *audit.Event) string {
	if !ev.keyOK {
		ev.key, ev.keyOK = keyString(e.Key), true
	}
	return ev.key
}

// keyString joins a row's key values.
func keyString(key audit.Row) string {
	if len(key) == 1 {
		return string(key[0].Value)
	}
	var b strings.Builder
	for i, k := range key {
		if i > 0 {
			b.WriteByte(0)
		}
		b.Write(k.Value)
	}
	return b.String()
}

// parseStamp reads an encoded timestamp as PostgreSQL prints it (ISO
// DateStyle): "2026-11-23 13:34:33.559831", UTC when it has no offset
// (Odoo's write_date is timestamp without time zone, in UTC), or with one
// ("…+02", "…-05:30"). It returns µs since the epoch.
func parseStamp(v []byte) (int64, bool) {
	if len(v) < 21 || v[0] != '"' || v[len(v)-1] != '"' {
		return 0, false
	}
	s := v[1 : len(v)-1]
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	y, ok1 := num(s[0:4])
	mo, ok2 := num(s[5:7])
	d, ok3 := num(s[8:10])
	h, ok4 := num(s[11:13])
	mi, ok5 := num(s[14:16])
	sec, ok6 := num(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 {
		return 0, false
	}
	rest := s[19:]
	micros := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		frac := rest[1:i]
		if len(frac) == 0 || len(frac) > 6 {
			return 0, false
		}
		micros, _ = num(frac)
		for range 6 - len(frac) {
			micros *= 10
		}
		rest = rest[i:]
	}
	offset := 0
	if len(rest) > 0 {
		sign := 1
		switch rest[0] {
		case '+':
		case '-':
			sign = -1
		default:
			return 0, false
		}
		parts := strings.Split(string(rest[1:]), ":")
		if len(parts) > 3 {
			return 0, false
		}
		mult := 3600
		for _, p := range parts {
			n, ok := num([]byte(p))
			if !ok || len(p) != 2 {
				return 0, false
			}
			offset += n * mult
			mult /= 60
		}
		offset *= sign
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, 0, time.UTC)
	return t.Unix()*1e6 - int64(offset)*1e6 + int64(micros), true
}
