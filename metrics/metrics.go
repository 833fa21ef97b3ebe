// Package metrics holds cdcaudit's Prometheus registry and collectors.
//
// A *Metrics is safe for concurrent use. Every method takes primitives only,
// so any stage can report to it without importing the others; it also
// implements replication.Observer (ServerWALEnd, Confirmed, Reconnected,
// SkippedMessage, SlotStatus).
//
// Exposed series (all prefixed cdcaudit_):
//
//	events_total{schema,table,op}             counter  row events durable in the store (a replay is not counted again)
//	flagged_events_total{flag}                counter  those of them carrying a flag (orm_bypass, …)
//	transactions_total                        counter  transactions durable in the store
//	batch_commit_duration_seconds             histogram one store commit (group commit)
//	batch_events                              histogram events per store commit
//	store_written_bytes_total                 counter  encoded event bytes written
//	duplicate_events_total                    counter  events already in the store (replays)
//	store_size_bytes                          gauge    size of the store file
//	checkpoint_lsn                            gauge    end LSN of the last durable commit
//	last_commit_timestamp_seconds             gauge    commit time of that transaction
//	server_wal_end_lsn                        gauge    server WAL end last seen
//	confirmed_flush_lsn                       gauge    flush position last sent to the server
//	replication_lag_bytes                     gauge    server WAL end − the durable position: max(checkpoint, confirmed), or the
//	                                                   start of the oldest transaction received but not yet durable (≥ 0)
//	replication_lag_seconds                   gauge    now − commit time of that oldest pending transaction; with none,
//	                                                   now − last durable commit time while lag_bytes > 0
//	replication_connected                     gauge    1 while the replication connection is up
//	reconnects_total                          counter  reconnections after a broken connection
//	skipped_messages_total{kind}              counter  unknown/unexpected pgoutput messages skipped (kind "none": always 0)
//	slot_wal_status{status}                   gauge    1 for the slot's current wal_status
//	slot_retained_wal_bytes                   gauge    WAL the slot holds back on the server
//	retention_pruned_events_total             counter  records removed by retention
//	retention_cuts_total                      counter  cut records retention added to the chain
//	retention_last_cut_timestamp_seconds      gauge    when retention last cut the chain
//	sessions_started_total                    counter  application sessions the stream opened (logins)
//	sessions_open_by_{browser,os,device,country} gauge open sessions by each, top 10 + other + unknown
//	api_signins_total{result}                 counter  password sign-ins to the API, by result
//	api_refused_requests_total{reason}        counter  API requests refused before reading data, by reason
//	reads_paced_seconds_total                 counter  time readers of the trail waited for ingest to catch up
//	alerts_delivered_total{channel,result}    counter  alert delivery attempts (docs/alerts.md)
//	alerts_queued                             gauge    alert deliveries waiting
//
// plus the standard go_* and process_* collectors and go_build_info.
//
// A daemon that watches several databases has one Metrics per database
// (Registry.Source), all gathered by one Registry: every cdcaudit_* series
// carries the constant label source (the database's source name, also with
// one database), the Go and process collectors are registered once, and
// one /metrics and one /healthz serve them all. The process-wide series of
// the API (api_signins_total, api_refused_requests_total,
// reads_paced_seconds_total) are the first source's, as sign-ins are.
package metrics

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "cdcaudit"

// DisconnectedGrace is how long the replication connection may be down (or
// not yet up) before Healthy reports unhealthy.
const DisconnectedGrace = 30 * time.Second

// skippedNone is the kind of the skipped_messages_total series that is
// always 0: no message type byte is ever skipped on a healthy stream, and
// this series makes the metric exist from the start (a kind is one
// character or 0xNN, never this).
const skippedNone = "none"

// walStatuses are the values of pg_replication_slots.wal_status.
var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

// Metrics are the collectors of one source (one database's pipeline).
type Metrics struct {
	reg    *prometheus.Registry // the process's, that gathers every source
	own    prometheus.Registerer
	source string
	now    func() time.Time // for tests

	events        *prometheus.CounterVec
	flagged       *prometheus.CounterVec
	transactions  prometheus.Counter
	commitSeconds prometheus.Histogram
	batchEvents   prometheus.Histogram
	writtenBytes  prometheus.Counter
	duplicates    prometheus.Counter
	storeSize     prometheus.Gauge
	sessions      sessionsCollector
	sessionDetail *sessionDetailCollector
	checkpoint    prometheus.Gauge
	lastCommit    prometheus.Gauge
	walEnd        prometheus.Gauge
	confirmed     prometheus.Gauge
	connected     prometheus.Gauge
	reconnects    prometheus.Counter
	skipped       *prometheus.CounterVec
	slotStatus    *prometheus.GaugeVec
	slotRetained  prometheus.Gauge
	snap          snapshotMetrics
	ret           retentionMetrics
	api           apiMetrics
	alerts        alertMetrics
	outbox        outboxMetrics
	terminated    *prometheus.CounterVec // sessionctl.go

	mu              sync.Mutex
	checkpointLSN   uint64
	confirmedLSN    uint64
	serverWALEnd    uint64
	lastCommitTime  time.Time
	pendingFrom     uint64    // WAL start of the oldest transaction received and not durable; 0: none
	pendingTime     time.Time // its commit time
	isConnected     bool
	connChangedAt   time.Time // when isConnected last changed (or New)
	walStatus       string
	lastReconnectEr string
}

// New returns the Metrics of a process with one source that has no name
// (its series carry no source label) in a registry of its own: for tests
// and tools. The daemon names its sources (Registry.Source).
func New() *Metrics { return NewRegistry().Source("") }

func newMetrics(now func() time.Time) *Metrics { return newRegistry(now).Source("") }

// newSource makes the collectors of one source and registers them in reg,
// labelled source=name unless name is "".
func newSource(reg *prometheus.Registry, name string, now func() time.Time) *Metrics {
	m := &Metrics{reg: reg, own: reg, source: name, now: now}
	if name != "" {
		m.own = prometheus.WrapRegistererWith(prometheus.Labels{"source": name}, reg)
	}
	m.connChangedAt = now()

	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "events_total",
		Help: "Row events (insert, update, delete, truncate) stored, by table and operation.",
	}, []string{"schema", "table", "op"})
	m.transactions = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "transactions_total",
		Help: "Transactions whose events are durable in the store.",
	})
	m.commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "batch_commit_duration_seconds",
		Help:    "Time to write one batch of transactions and its checkpoint to the store (one bbolt commit, fsync included).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	m.batchEvents = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "batch_events",
		Help:    "Events per store commit (group commit batch size).",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10), // 1 … 262144
	})
	m.writtenBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "store_written_bytes_total",
		Help: "Bytes of encoded events written to the store.",
	})
	m.duplicates = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "duplicate_events_total",
		Help: "Events received again after a restart or reconnect and already in the store (absorbed by their idempotent id).",
	})
	m.sessions = newSessionsCollector()
	m.sessionDetail = newSessionDetailCollector()
	m.storeSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "store_size_bytes",
		Help: "Size of the store file on disk.",
	})
	m.checkpoint = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "checkpoint_lsn",
		Help: "End LSN of the last transaction durable in the store, as a number (the position the slot may be confirmed to).",
	})
	m.lastCommit = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "last_commit_timestamp_seconds",
		Help: "Commit time (Unix seconds) of the last transaction durable in the store.",
	})
	m.walEnd = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "server_wal_end_lsn",
		Help: "Server WAL end last reported by the server, as a number.",
	})
	m.confirmed = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "confirmed_flush_lsn",
		Help: "Flush position last confirmed to the server, as a number.",
	})
	m.connected = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "replication_connected",
		Help: "1 while the replication connection is up, else 0.",
	})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "reconnects_total",
		Help: "Reconnections after a broken replication connection.",
	})
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "skipped_messages_total",
		Help: "Unknown or unexpected pgoutput messages skipped, by message type byte.",
	}, []string{"kind"})
	m.slotStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "slot_wal_status",
		Help: "1 for the replication slot's current pg_replication_slots.wal_status (reserved, extended, unreserved, lost), 0 for the others. lost means the server removed WAL the slot needed: changes were lost.",
	}, []string{"status"})
	m.slotRetained = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "slot_retained_wal_bytes",
		Help: "WAL the replication slot holds back on the server (pg_current_wal_lsn() − restart_lsn).",
	})
	lagBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "replication_lag_bytes",
		Help: "WAL written on the server and not yet durable in the store: server WAL end minus the durable position, which is the checkpoint (or the confirmed position, when an idle publication let it move further), or the start of the oldest transaction received but not yet stored, whichever is lower (0 when caught up).",
	}, func() float64 { b, _ := m.lag(); return float64(b) })
	lagSeconds := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "replication_lag_seconds",
		Help: "Now minus the commit time of the oldest transaction received but not yet durable in the store; when none is, while replication_lag_bytes > 0, now minus the commit time of the last durable transaction; else 0.",
	}, func() float64 { _, s := m.lag(); return s })

	m.own.MustRegister(
		m.events, m.transactions, m.commitSeconds, m.batchEvents, m.writtenBytes,
		m.duplicates, m.storeSize, &m.sessions, m.sessionDetail, m.checkpoint, m.lastCommit, m.walEnd, m.confirmed,
		m.connected, m.reconnects, m.skipped, m.slotStatus, m.slotRetained,
		lagBytes, lagSeconds,
	)
	for _, s := range walStatuses {
		m.slotStatus.WithLabelValues(s).Set(0)
	}
	// Every message type byte the decoder may skip is 0 until one is:
	// the dashboard's rate of skips reads 0, not "No data".
	m.skipped.WithLabelValues(skippedNone)
	m.registerSnapshot()
	m.registerRetention()
	m.registerAPI()
	m.registerAlerts()
	m.registerFlags()
	m.registerOutbox()
	m.registerSessionctl()
	return m
}

// Registry returns the process's registry, which gathers every source.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AddEvents counts n stored events of one table and operation.
func (m *Metrics) AddEvents(schema, table, op string, n int) {
	if n <= 0 {
		return
	}
	m.events.WithLabelValues(schema, table, op).Add(float64(n))
}

// AddTransactions counts n transactions made durable.
func (m *Metrics) AddTransactions(n int) {
	if n <= 0 {
		return
	}
	m.transactions.Add(float64(n))
}

// BatchCommitted records one store commit: the events it held, how many of
// them were already stored, the bytes written, how long the commit took, the
// checkpoint it wrote and the commit time of its last transaction.
func (m *Metrics) BatchCommitted(events, duplicates int, bytes int64, d time.Duration, checkpoint uint64, lastCommitTime time.Time) {
	m.commitSeconds.Observe(d.Seconds())
	if events >= 0 {
		m.batchEvents.Observe(float64(events))
	}
	if duplicates > 0 {
		m.duplicates.Add(float64(duplicates))
	}
	if bytes > 0 {
		m.writtenBytes.Add(float64(bytes))
	}
	m.mu.Lock()
	if checkpoint >= m.checkpointLSN {
		m.checkpointLSN = checkpoint
		if !lastCommitTime.IsZero() {
			m.lastCommitTime = lastCommitTime
		}
	}
	// The gauges move under the lock, with the lag they bound: a scrape
	// never sees the checkpoint behind a lag already computed from it.
	m.checkpoint.Set(float64(m.checkpointLSN))
	if !m.lastCommitTime.IsZero() {
		m.lastCommit.Set(float64(m.lastCommitTime.UnixNano()) / 1e9)
	}
	m.mu.Unlock()
}

// ServerWALEnd records the server's WAL end (from a keepalive or an
// XLogData message). A message from the server also means the replication
// connection is up.
// It is cheap enough to call for every XLogData message too.
func (m *Metrics) ServerWALEnd(lsn uint64) {
	m.mu.Lock()
	if lsn > m.serverWALEnd {
		m.serverWALEnd = lsn
		m.walEnd.Set(float64(lsn))
	}
	wasDown := !m.isConnected
	m.mu.Unlock()
	if wasDown {
		m.SetConnected(true)
	}
}

// Pending records the oldest transaction received and not yet durable in
// the store: where its WAL starts and its commit time; firstLSN 0 when
// nothing received is waiting for the store. The lag counts such a
// transaction from the moment it begins to arrive, however long it takes to
// receive and store (and whatever the idle advance confirmed meanwhile).
func (m *Metrics) Pending(firstLSN uint64, commitTime time.Time) {
	m.mu.Lock()
	m.pendingFrom, m.pendingTime = firstLSN, commitTime
	m.mu.Unlock()
}

// Confirmed records the flush position sent to the server. When the
// publication is idle this may move past the last stored commit (the
// server's WAL end is confirmed with nothing in flight): lag is measured from
// the greater of the two, so an idle publication shows no lag.
func (m *Metrics) Confirmed(lsn uint64) {
	m.confirmed.Set(float64(lsn))
	m.mu.Lock()
	if lsn > m.confirmedLSN {
		m.confirmedLSN = lsn
	}
	m.mu.Unlock()
}

// Reconnected counts a reconnection: the replication connection broke
// with reason and is about to be re-established (after a backoff). Until
// the server is heard from again (ServerWALEnd or SetConnected(true)) the
// connection counts as down.
func (m *Metrics) Reconnected(reason error) {
	m.reconnects.Inc()
	if reason != nil {
		m.mu.Lock()
		m.lastReconnectEr = reason.Error()
		m.mu.Unlock()
	}
	m.SetConnected(false)
}

// SkippedMessage counts a pgoutput message of an unknown or unexpected type
// that was skipped.
func (m *Metrics) SkippedMessage(kind byte) {
	m.skipped.WithLabelValues(kindLabel(kind)).Inc()
}

func kindLabel(kind byte) string {
	if kind >= 0x21 && kind <= 0x7e {
		return string(rune(kind))
	}
	return fmt.Sprintf("0x%02x", kind)
}

// SlotStatus records the slot's wal_status, the WAL bytes it retains and
// the server's WAL position then: while the stream catches up its messages
// carry only the position of what they hold, so this is what shows the
// backlog in replication_lag_bytes.
func (m *Metrics) SlotStatus(walStatus string, retainedBytes int64, serverLSN uint64) {
	known := false
	for _, s := range walStatuses {
		v := 0.0
		if s == walStatus {
			v, known = 1, true
		}
		m.slotStatus.WithLabelValues(s).Set(v)
	}
	if !known && walStatus != "" {
		// A status newer servers may add (or "unreachable" spellings): still show it.
		m.slotStatus.WithLabelValues(walStatus).Set(1)
	}
	m.slotRetained.Set(float64(retainedBytes))
	m.mu.Lock()
	m.walStatus = walStatus
	if serverLSN > m.serverWALEnd {
		m.serverWALEnd = serverLSN
		m.walEnd.Set(float64(serverLSN))
	}
	m.mu.Unlock()
}

// SetConnected records whether the replication connection is up. The
// Observer methods already imply it (ServerWALEnd: up; Reconnected: down);
// call it where the connection state is known exactly.
func (m *Metrics) SetConnected(up bool) {
	m.mu.Lock()
	if up != m.isConnected {
		m.isConnected = up
		m.connChangedAt = m.now()
	}
	m.mu.Unlock()
	if up {
		m.connected.Set(1)
	} else {
		m.connected.Set(0)
	}
}

// StoreSize records the size of the store file.
func (m *Metrics) StoreSize(bytes int64) { m.storeSize.Set(float64(bytes)) }

// SessionsFrom makes the session gauges read f when they are scraped (f
// must be safe for concurrent use; before it is set they read 0): nothing
// is published from the stream's path.
func (m *Metrics) SessionsFrom(f func() (open, users int, skipped uint64)) {
	m.sessions.from.Store(&f)
}

// sessionsCollector reads the session tracker's figures once per scrape.
type sessionsCollector struct {
	open, users, skipped *prometheus.Desc
	from                 atomic.Pointer[func() (open, users int, skipped uint64)]
}

func newSessionsCollector() sessionsCollector {
	return sessionsCollector{
		open: prometheus.NewDesc(namespace+"_sessions_open",
			"Application login sessions open (active or idle), as rebuilt from the stream.", nil, nil),
		users: prometheus.NewDesc(namespace+"_application_users",
			"Application users known to attribution.", nil, nil),
		skipped: prometheus.NewDesc(namespace+"_session_rows_skipped",
			"Rows of the application's user and session tables skipped for missing or malformed values since start.", nil, nil),
	}
}

func (c *sessionsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.users
	ch <- c.skipped
}

func (c *sessionsCollector) Collect(ch chan<- prometheus.Metric) {
	var open, users int
	var skipped uint64
	if f := c.from.Load(); f != nil {
		open, users, skipped = (*f)()
	}
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(open))
	ch <- prometheus.MustNewConstMetric(c.users, prometheus.GaugeValue, float64(users))
	ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.GaugeValue, float64(skipped))
}

// lag computes replication_lag_bytes and replication_lag_seconds.
func (m *Metrics) lag() (bytes uint64, seconds float64) {
	m.mu.Lock()
	end, cp, lct := m.serverWALEnd, max(m.checkpointLSN, m.confirmedLSN), m.lastCommitTime
	if m.pendingFrom != 0 {
		// Received but not durable: behind since that transaction began.
		cp, lct = min(cp, m.pendingFrom), m.pendingTime
	}
	m.mu.Unlock()
	if end <= cp {
		return 0, 0
	}
	bytes = end - cp
	if lct.IsZero() {
		// Nothing durable yet: the age of the backlog is unknown.
		return bytes, 0
	}
	seconds = m.now().Sub(lct).Seconds()
	if seconds < 0 || math.IsNaN(seconds) {
		seconds = 0
	}
	return bytes, seconds
}

// BehindBytes is how far the durable position may trail the server's WAL
// end before ingest counts as behind (readpace): a transaction or two in
// flight is keeping up, a backlog is not.
const BehindBytes = 8 << 20

// Behind reports whether ingest is working through a backlog: connected,
// with more than BehindBytes of the server's WAL not yet durable in the
// store. Disconnected it is not: nothing is being recorded that readers
// could slow.
func (m *Metrics) Behind() bool {
	m.mu.Lock()
	up := m.isConnected
	m.mu.Unlock()
	if !up {
		return false
	}
	b, _ := m.lag()
	return b > BehindBytes
}

// Healthy reports whether the process is healthy, for /healthz: it is not
// when the replication connection has been down (or never up) for more than
// DisconnectedGrace, or when the slot's wal_status is "lost".
func (m *Metrics) Healthy() (ok bool, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.walStatus == "lost" {
		return false, "replication slot wal_status is lost: the server removed WAL the slot still needed (changes were lost)"
	}
	if !m.isConnected {
		down := m.now().Sub(m.connChangedAt)
		if down > DisconnectedGrace {
			r := fmt.Sprintf("replication connection down for %s", down.Truncate(time.Second))
			if m.lastReconnectEr != "" {
				r += " (last error: " + m.lastReconnectEr + ")"
			}
			return false, r
		}
		return true, "connecting"
	}
	return true, "ok"
}
