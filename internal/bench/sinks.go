package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// The sinks of the daemon, by the names of their cursors and metrics.
var sinkNames = []string{"postgres", "kafka"}

// sinkPoll is how often the sinks bench reads the daemon's /metrics.
const sinkPoll = 100 * time.Millisecond

// sinkSample is one reading of the daemon's /metrics.
type sinkSample struct {
	at        time.Duration // since the daemon started
	events    float64       // cdcaudit_events_total, all series: row events durable in the store
	delivered map[string]float64
	lagSec    map[string]float64
}

// crossing is when a counter reached target: between the two samples
// around it, at the pace it went before (a counter that stops at target
// would look slower, interpolated to the next sample), else interpolated;
// ok false when it never did.
func crossing(s []sinkSample, value func(sinkSample) float64, target float64) (time.Duration, bool) {
	for i, x := range s {
		if value(x) < target {
			continue
		}
		if i == 0 {
			return x.at, true
		}
		p := s[i-1]
		if i >= 2 {
			if pace := (value(p) - value(s[i-2])) / (p.at - s[i-2].at).Seconds(); pace > 0 {
				return min(x.at, p.at+time.Duration((target-value(p))/pace*float64(time.Second))), true
			}
		}
		f := (target - value(p)) / (value(x) - value(p))
		return p.at + time.Duration(f*float64(x.at-p.at)), true
	}
	return 0, false
}

// valueAt is a counter at time t, interpolated between the samples around
// it (the last value after the last sample).
func valueAt(s []sinkSample, value func(sinkSample) float64, t time.Duration) float64 {
	for i, x := range s {
		if x.at < t {
			continue
		}
		if i == 0 {
			return value(x)
		}
		p := s[i-1]
		f := float64(t-p.at) / float64(x.at-p.at)
		return value(p) + f*(value(x)-value(p))
	}
	if len(s) == 0 {
		return 0
	}
	return value(s[len(s)-1])
}

// sinkFlow is one sink's delivery in a run with ingest.
type sinkFlow struct {
	// Events per second over the ingest window (see ingestFlow), and from
	// its start until the sink had delivered every change.
	WindowRate  float64 `json:"window_events_per_second"`
	CaughtRate  float64 `json:"caught_up_events_per_second"`
	CatchUpSecs float64 `json:"catch_up_seconds"` // after ingest ended
}

// ingestFlow is the store's ingest and each sink's delivery, from the
// samples of a daemon that drained changes with its sinks on. The window
// starts at the first sample that saw an event stored (what went before is
// the daemon's start) and ends when the store held every change; rates
// are counted over it from that sample's values, so the start's
// granularity costs nothing.
func ingestFlow(s []sinkSample, changes int) (rate float64, flows map[string]sinkFlow, err error) {
	events := func(x sinkSample) float64 { return x.events }
	i := slices.IndexFunc(s, func(x sinkSample) bool { return x.events > 0 })
	if i < 0 {
		return 0, nil, errors.New("no event was stored")
	}
	start := s[i]
	end, ok := crossing(s, events, float64(changes))
	if !ok || end <= start.at {
		return 0, nil, fmt.Errorf("the store did not reach %d events", changes)
	}
	window := (end - start.at).Seconds()
	rate = (float64(changes) - start.events) / window
	flows = map[string]sinkFlow{}
	for _, name := range sinkNames {
		d := func(x sinkSample) float64 { return x.delivered[name] }
		caught, ok := crossing(s, d, float64(changes))
		if !ok {
			return 0, nil, fmt.Errorf("sink %s did not deliver %d records", name, changes)
		}
		flows[name] = sinkFlow{
			WindowRate:  (valueAt(s, d, end) - d(start)) / window,
			CaughtRate:  (float64(changes) - d(start)) / (caught - start.at).Seconds(),
			CatchUpSecs: max(caught-end, 0).Seconds(),
		}
	}
	return rate, flows, nil
}

// backlogRates is each sink's rate delivering a store that already held
// every change: from the first sample where it had delivered some until
// it had delivered them all.
func backlogRates(s []sinkSample, changes int) (map[string]float64, error) {
	out := map[string]float64{}
	for _, name := range sinkNames {
		d := func(x sinkSample) float64 { return x.delivered[name] }
		i := slices.IndexFunc(s, func(x sinkSample) bool { return d(x) > 0 })
		done, ok := crossing(s, d, float64(changes))
		if i < 0 || !ok || done <= s[i].at {
			return nil, fmt.Errorf("sink %s did not deliver the backlog of %d records", name, changes)
		}
		out[name] = (float64(changes) - d(s[i])) / (done - s[i].at).Seconds()
	}
	return out, nil
}

// daemonRun is what one cdcaudit with both sinks measured.
type daemonRun struct {
	samples []sinkSample
	wall    time.Duration // until every sink had caught up
	// CPU (user+system) of cdcaudit, of its walsender, of the kfake
	// process and of the audit database's backends, until then.
	cpu, walsenderCPU, kafkaCPU, auditCPU time.Duration
	rssKB, anonKB                         int64
}

// kfakeProc is a running kfakeserver.
type kfakeProc struct {
	cmd         *exec.Cmd
	addr, stats string
}

func startKfake(bin string, partitions int) (*kfakeProc, error) {
	cmd := exec.Command(bin, "--partitions", fmt.Sprint(partitions))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kfakeserver: %v (build it: go build -o bin/kfakeserver ./internal/bench/kfakeserver)", err)
	}
	k := &kfakeProc{cmd: cmd}
	sc := bufio.NewScanner(out)
	for (k.addr == "" || k.stats == "") && sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "kafka "); ok {
			k.addr = a
		} else if a, ok := strings.CutPrefix(sc.Text(), "stats "); ok {
			k.stats = a
		}
	}
	if k.addr == "" || k.stats == "" {
		k.stop()
		return nil, errors.New("kfakeserver did not say where it listens")
	}
	return k, nil
}

func (k *kfakeProc) stop() {
	k.cmd.Process.Signal(syscall.SIGTERM)
	k.cmd.Wait()
}

// topicStats is kfakeserver's /stats (see TopicStats there).
type topicStats map[string]struct {
	Partitions  int   `json:"partitions"`
	Records     int64 `json:"records"`
	StoredBytes int64 `json:"stored_bytes"`
}

func (k *kfakeProc) topics() (topicStats, error) {
	resp, err := http.Get("http://" + k.stats + "/stats")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ts topicStats
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kfakeserver /stats: %s", resp.Status)
	}
	return ts, json.NewDecoder(resp.Body).Decode(&ts)
}

// sinkArgs are the daemon's flags for both sinks: the audit database and
// the Kafka broker, topics named after prefix.
func sinkArgs(auditDSN, broker, prefix string) []string {
	return []string{"--sink-postgres-dsn", auditDSN, "--sink-kafka-brokers", broker,
		"--sink-kafka-topic", prefix + ".{schema}.{table}"}
}

// sinkDaemon is one cdcaudit with both sinks on.
type sinkDaemon struct {
	db, slot string
	dataDir  string // its store: "" for a fresh one
	auditDB  string
	audit    *pgx.Conn // to auditDB, to find the sink's backend
	prefix   string    // of its Kafka topics
	// It is done once it stored ingest new events (0: a store that
	// already holds the backlog) and each sink delivered changes records
	// and found nothing more.
	ingest, changes int
	// write, when not nil, runs once the daemon streams: the workload
	// written while it runs.
	write func() error
}

// runWithSinks starts d's cdcaudit, reads its /metrics every sinkPoll,
// and stops it once it is done.
func runWithSinks(ctx context.Context, o options, c, audit *pgtest.Cluster, conn *pgx.Conn, k *kfakeProc, d sinkDaemon) (daemonRun, error) {
	dataDir := d.dataDir
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "cdcaudit-bench-"+d.slot+"-")
		if err != nil {
			return daemonRun{}, err
		}
		defer os.RemoveAll(dir)
		dataDir = dir
	}
	addr, err := freeAddr()
	if err != nil {
		return daemonRun{}, err
	}
	args := append([]string{"run", "--dsn", c.DSN(d.db), "--data-dir", dataDir, "--slot", d.slot,
		"--publication", "bench", "--http-addr", addr, "--log-level", "warn", "--profile", "none", "--snapshot", "never"},
		sinkArgs(audit.DSN(d.auditDB), k.addr, d.prefix)...)
	args, stopProfile, err := profiled(args, o.cpuProfile, d.prefix)
	if err != nil {
		return daemonRun{}, err
	}
	defer stopProfile()
	addr = args[slices.Index(args, "--http-addr")+1]
	cmd := exec.Command(o.bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	kafka0, err := processCPU(k.cmd.Process.Pid)
	if err != nil {
		return daemonRun{}, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return daemonRun{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	}()
	written := make(chan error, 1)
	writing := false
	client := &http.Client{Timeout: 5 * time.Second}
	var r daemonRun
	ws, backends := serverProcs{}, serverProcs{}
	for n := 0; ; n++ {
		select {
		case err := <-exited:
			return daemonRun{}, fmt.Errorf("cdcaudit exited early: %v", err)
		case err := <-written:
			if err != nil {
				return daemonRun{}, fmt.Errorf("the workload: %w", err)
			}
		case <-time.After(sinkPoll):
		}
		r.anonKB = max(r.anonKB, anonRSS(cmd.Process.Pid))
		pid, err := activeWalsender(ctx, conn, d.slot)
		if err != nil {
			return daemonRun{}, err
		}
		ws.sample(pid)
		if pid != 0 && d.write != nil && !writing {
			writing = true
			go func() { written <- d.write() }()
		}
		if n%5 == 0 { // the sink's connection lasts: found again now and then
			if err := sampleBackends(ctx, d.audit, d.auditDB, backends); err != nil {
				return daemonRun{}, err
			}
		} else {
			backends.sampleAll()
		}
		m, err := scrape(client, "http://"+addr+"/metrics")
		if err != nil {
			if time.Since(t0) > time.Minute {
				return daemonRun{}, fmt.Errorf("no /metrics after a minute: %v", err)
			}
			continue
		}
		x := sinkSample{at: time.Since(t0), events: m.sum("cdcaudit_events_total"), delivered: map[string]float64{}, lagSec: map[string]float64{}}
		done := x.events >= float64(d.ingest)
		for _, name := range sinkNames {
			x.delivered[name] = m.get("cdcaudit_sink_delivered_records_total", "sink", name)
			x.lagSec[name] = m.get("cdcaudit_sink_lag_seconds", "sink", name)
			done = done && x.delivered[name] >= float64(d.changes) && x.lagSec[name] == 0
			if e := m.get("cdcaudit_sink_errors_total", "sink", name); e > 0 && n%50 == 0 {
				log.Printf("%s: sink %s failed %v time(s) so far", d.slot, name, e)
			}
		}
		r.samples = append(r.samples, x)
		if done {
			r.wall = x.at
			break
		}
		if time.Since(t0) > 15*time.Minute {
			return daemonRun{}, fmt.Errorf("not caught up after 15 minutes: %d events stored, delivered %v", int(x.events), x.delivered)
		}
	}
	stopProfile()
	if r.cpu, err = processCPU(cmd.Process.Pid); err != nil {
		return daemonRun{}, err
	}
	kafka1, err := processCPU(k.cmd.Process.Pid)
	if err != nil {
		return daemonRun{}, err
	}
	backends.sampleAll()
	ws.sampleAll()
	r.walsenderCPU, r.auditCPU, r.kafkaCPU = ws.total(), backends.total(), kafka1-kafka0
	r.rssKB = peakRSS(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		return daemonRun{}, fmt.Errorf("cdcaudit did not exit cleanly: %v", err)
	}
	return r, nil
}

// sinksRun is one run of --sinks.
type sinksRun struct {
	Plain drain     `json:"-"` // the drain without sinks
	Sinks daemonRun `json:"-"` // the same backlog with both sinks on
	// The store of Plain, delivered by both sinks afterwards (nothing left
	// to ingest): what the sinks can do when not waiting for the store.
	Backlog daemonRun `json:"-"`

	PlainRate   float64             `json:"plain_changes_per_second"`
	IngestRate  float64             `json:"ingest_changes_per_second"` // with the sinks on
	Flows       map[string]sinkFlow `json:"sinks"`
	BacklogRate map[string]float64  `json:"backlog_events_per_second"`

	PlainCPU        float64     `json:"plain_cpu_seconds"`
	SinksCPU        float64     `json:"sinks_cpu_seconds"` // until every sink caught up
	PlainWalsender  float64     `json:"plain_walsender_cpu_seconds"`
	SinksWalsender  float64     `json:"sinks_walsender_cpu_seconds"`
	KafkaCPU        float64     `json:"kfake_cpu_seconds"`
	AuditCPU        float64     `json:"audit_db_cpu_seconds"`
	PlainRSSKiB     int64       `json:"plain_peak_rss_kib"`
	PlainAnonKiB    int64       `json:"plain_peak_anon_rss_kib"`
	SinksRSSKiB     int64       `json:"sinks_peak_rss_kib"`
	SinksAnonKiB    int64       `json:"sinks_peak_anon_rss_kib"`
	BacklogRSSKiB   int64       `json:"backlog_peak_rss_kib"`
	BacklogAnonKiB  int64       `json:"backlog_peak_anon_rss_kib"`
	BacklogCPU      float64     `json:"backlog_cpu_seconds"`
	BacklogKafkaCPU float64     `json:"backlog_kfake_cpu_seconds"`
	BacklogAuditCPU float64     `json:"backlog_audit_db_cpu_seconds"`
	Audit           auditSize   `json:"audit_table"`
	CopyCeiling     copyCeiling `json:"audit_copy_ceiling"`
	Kafka           kafkaSize   `json:"kafka"`
	KafkaPartitions int         `json:"kafka_partitions"`
	StoreBytes      int64       `json:"plain_store_bytes"`
}

// auditSize is the audit table after a run.
type auditSize struct {
	Rows        int64 `json:"rows"`
	TotalBytes  int64 `json:"total_bytes"`  // its partitions: heap, TOAST and indexes
	IndexBytes  int64 `json:"index_bytes"`  // of it, the indexes
	RecordBytes int64 `json:"record_bytes"` // the record column's values (pg_column_size), of the total
}

// kafkaSize is what the broker holds after a run.
type kafkaSize struct {
	Records     int64 `json:"records"`
	StoredBytes int64 `json:"stored_bytes"` // record batches, compressed, as produced
	// Read back: key, value and headers (names and values) of every
	// record, and of the values alone, uncompressed.
	RecordBytes int64 `json:"record_bytes"`
	ValueBytes  int64 `json:"value_bytes"`
}

// measureAudit sizes the audit table (cdcaudit_events, the default) of db.
func measureAudit(ctx context.Context, conn *pgx.Conn) (auditSize, error) {
	var a auditSize
	err := conn.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM cdcaudit_events),
		(SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('cdcaudit_events') WHERE isleaf),
		(SELECT coalesce(sum(pg_indexes_size(relid)), 0) FROM pg_partition_tree('cdcaudit_events') WHERE isleaf),
		(SELECT coalesce(sum(pg_column_size(record)), 0) FROM cdcaudit_events)`).Scan(&a.Rows, &a.TotalBytes, &a.IndexBytes, &a.RecordBytes)
	return a, err
}

// measureKafka reads what the broker holds of the topics named after
// prefix: its /stats, and every record read back.
func measureKafka(ctx context.Context, k *kfakeProc, prefix string) (kafkaSize, error) {
	ts, err := k.topics()
	if err != nil {
		return kafkaSize{}, err
	}
	var s kafkaSize
	want := map[string]map[int32]kgo.Offset{}
	for name, t := range ts {
		if !strings.HasPrefix(name, prefix+".") {
			continue
		}
		s.Records += t.Records
		s.StoredBytes += t.StoredBytes
		want[name] = map[int32]kgo.Offset{}
		for p := range t.Partitions {
			want[name][int32(p)] = kgo.NewOffset().AtStart()
		}
	}
	if s.Records == 0 {
		return s, fmt.Errorf("the broker holds no record of topics %s.*", prefix)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.ConsumePartitions(want))
	if err != nil {
		return s, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for n := int64(0); n < s.Records; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return s, fmt.Errorf("reading the topics back: %d of %d records: %v", n, s.Records, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			s.ValueBytes += int64(len(r.Value))
			s.RecordBytes += int64(len(r.Key) + len(r.Value))
			for _, h := range r.Headers {
				s.RecordBytes += int64(len(h.Key) + len(h.Value))
			}
		})
	}
	return s, nil
}

// benchSinks is one run of --sinks: the bench workload (REPLICA IDENTITY
// FULL) written once and drained twice, from two slots: by cdcaudit
// without sinks, and by cdcaudit with both sinks on (a fresh audit
// database and fresh topics); the order alternates between runs. Then the
// first drain's store is delivered by both sinks (into another audit
// database and other topics) with nothing left to ingest.
func benchSinks(ctx context.Context, c, audit *pgtest.Cluster, o options, run int) (sinksRun, error) {
	var r sinksRun
	changes := 2 * o.rows
	db := fmt.Sprintf("sinks%d", run)
	if err := c.CreateDatabase(ctx, db); err != nil {
		return r, err
	}
	defer dropDatabase(ctx, c, db)
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return r, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, table+identityDDL("sale_order_line", "full")+publications); err != nil {
		return r, err
	}
	slots := []string{"plain", "sinks"}
	for _, s := range slots {
		if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s); err != nil {
			return r, err
		}
	}
	auditDBs := []string{fmt.Sprintf("audit%d", run), fmt.Sprintf("audit%d_backlog", run)}
	auditConns := map[string]*pgx.Conn{}
	for _, a := range auditDBs {
		if err := audit.CreateDatabase(ctx, a); err != nil {
			return r, err
		}
		defer audit.Exec(ctx, "postgres", "DROP DATABASE "+pgx.Identifier{a}.Sanitize()+" WITH (FORCE)")
		ac, err := pgx.Connect(ctx, audit.DSN(a))
		if err != nil {
			return r, err
		}
		defer ac.Close(ctx)
		auditConns[a] = ac
	}
	k, err := startKfake(o.kfake, o.kafkaPartitions)
	if err != nil {
		return r, err
	}
	defer k.stop()
	r.KafkaPartitions = o.kafkaPartitions
	sinks := sinkDaemon{db: db, slot: "sinks", auditDB: auditDBs[0], audit: auditConns[auditDBs[0]], prefix: "bench", ingest: changes, changes: changes}
	var end uint64
	if o.sinksRate > 0 {
		// The workload is written at --sinks-rate while the daemon with
		// the sinks streams it; then the other drains it.
		wconn, err := pgx.Connect(ctx, c.DSN(db))
		if err != nil {
			return r, err
		}
		defer wconn.Close(ctx)
		every := time.Duration(float64(time.Second) * float64(o.txRows) / float64(o.sinksRate))
		sinks.write = func() (err error) {
			end, _, err = pacedWorkload(ctx, c, wconn, o.rows, o.txRows, every)
			return err
		}
		slots = []string{"sinks", "plain"}
	} else {
		if end, _, err = workload(ctx, c, conn, o.rows, o.txRows); err != nil {
			return r, err
		}
		if run%2 == 0 {
			slices.Reverse(slots)
		}
	}
	plainDir := ""
	defer func() {
		if plainDir != "" && !o.keep {
			os.RemoveAll(plainDir)
		}
	}()
	for _, s := range slots {
		if s == "plain" {
			keep := o
			keep.keep = true // its store is delivered afterwards
			if r.Plain, err = runCdcaudit(ctx, conn, keep, c, db, s, "none", end, true, nil); err != nil {
				return r, fmt.Errorf("without sinks: %w", err)
			}
			plainDir = r.Plain.dataDir
			log.Printf("run %d/%d: cdcaudit without sinks %s", run, o.runs, r.Plain.summary(changes))
			continue
		}
		if r.Sinks, err = runWithSinks(ctx, o, c, audit, conn, k, sinks); err != nil {
			return r, fmt.Errorf("with both sinks: %w", err)
		}
		if r.IngestRate, r.Flows, err = ingestFlow(r.Sinks.samples, changes); err != nil {
			return r, fmt.Errorf("with both sinks: %w", err)
		}
		log.Printf("run %d/%d: cdcaudit with both sinks: ingest %.0f changes/s; postgres %.0f/s (caught up %.1fs after), kafka %.0f/s (%.1fs after); peak RSS %.1f MiB (anon %.1f)",
			run, o.runs, r.IngestRate, r.Flows["postgres"].CaughtRate, r.Flows["postgres"].CatchUpSecs,
			r.Flows["kafka"].CaughtRate, r.Flows["kafka"].CatchUpSecs, float64(r.Sinks.rssKB)/1024, float64(r.Sinks.anonKB)/1024)
	}
	backlog := sinkDaemon{db: db, slot: "plain", dataDir: plainDir, auditDB: auditDBs[1], audit: auditConns[auditDBs[1]], prefix: "backlog", changes: changes}
	if r.Backlog, err = runWithSinks(ctx, o, c, audit, conn, k, backlog); err != nil {
		return r, fmt.Errorf("delivering the backlog: %w", err)
	}
	if r.BacklogRate, err = backlogRates(r.Backlog.samples, changes); err != nil {
		return r, err
	}
	log.Printf("run %d/%d: the store of %d changes delivered by both sinks: postgres %.0f/s, kafka %.0f/s; peak RSS %.1f MiB (anon %.1f)",
		run, o.runs, changes, r.BacklogRate["postgres"], r.BacklogRate["kafka"], float64(r.Backlog.rssKB)/1024, float64(r.Backlog.anonKB)/1024)
	if r.Audit, err = measureAudit(ctx, auditConns[auditDBs[0]]); err != nil {
		return r, fmt.Errorf("the audit table: %w", err)
	}
	if r.CopyCeiling, err = measureCopyCeiling(ctx, auditConns[auditDBs[0]], sinkBatch); err != nil {
		return r, fmt.Errorf("the audit database's own COPY: %w", err)
	}
	if r.Kafka, err = measureKafka(ctx, k, "bench"); err != nil {
		return r, err
	}
	r.PlainRate = float64(changes) / r.Plain.wall.Seconds()
	r.PlainCPU, r.SinksCPU = r.Plain.cpu.Seconds(), r.Sinks.cpu.Seconds()
	r.PlainWalsender, r.SinksWalsender = r.Plain.walsenderCPU.Seconds(), r.Sinks.walsenderCPU.Seconds()
	r.KafkaCPU, r.AuditCPU = r.Sinks.kafkaCPU.Seconds(), r.Sinks.auditCPU.Seconds()
	r.PlainRSSKiB, r.PlainAnonKiB = r.Plain.rssKB, r.Plain.anonKB
	r.SinksRSSKiB, r.SinksAnonKiB = r.Sinks.rssKB, r.Sinks.anonKB
	r.BacklogRSSKiB, r.BacklogAnonKiB = r.Backlog.rssKB, r.Backlog.anonKB
	r.BacklogCPU, r.BacklogKafkaCPU, r.BacklogAuditCPU = r.Backlog.cpu.Seconds(), r.Backlog.kafkaCPU.Seconds(), r.Backlog.auditCPU.Seconds()
	r.StoreBytes = r.Plain.storeBytes
	return r, nil
}

// runSinksMode is --sinks: every run compares the drain without sinks and
// with both, on a second local PostgreSQL (the audit database) and a
// kfakeserver.
func runSinksMode(ctx context.Context, c *pgtest.Cluster, o options, rep report) error {
	// Durable (fsync and full-page writes on), as an audit database is.
	// A server that has run for a while recycles its WAL segments; this
	// new one would create and zero-fill every one (a fifth of the sink's
	// server time), so it does not zero them.
	audit, err := pgtest.Start(pgtest.Options{Logf: log.Printf, Durable: true,
		Settings: map[string]string{"wal_init_zero": "off"}})
	if err != nil {
		return fmt.Errorf("the audit database's server: %w", err)
	}
	defer audit.Stop()
	rep.LoadAverageStart = loadAverage()
	fmt.Printf("workload: %d inserts + %d updates (REPLICA IDENTITY FULL), %d rows per transaction; %d run(s), each drained by cdcaudit without sinks and with both sinks on\n",
		o.rows, o.rows, o.txRows, o.runs)
	return measureRuns(o, rep, "--sinks", func(run int) (sinksRun, error) { return benchSinks(ctx, c, audit, o, run) },
		func(runs []sinksRun) { printSinks(o, runs) }, func(rep *report, runs []sinksRun) { rep.Sinks = runs })
}

func printSinks(o options, runs []sinksRun) {
	changes := 2 * o.rows
	over := func(f func(r sinksRun) float64) spread {
		var s spread
		for _, r := range runs {
			s = append(s, f(r))
		}
		return s
	}
	perM := func(sec float64) float64 { return sec * 1e6 / float64(changes) }
	mib := func(kib int64) float64 { return float64(kib) / 1024 }
	line := func(name string, s spread, verb string) { fmt.Printf("%-62s%s\n", name, s.format(verb)) }
	fmt.Printf("sinks: median (min to max) of %d run(s), %d changes each; audit database: a second local PostgreSQL (fsync on); Kafka: kfake (franz-go's in-memory fake broker, not Apache Kafka), %d partition(s) per topic, zstd\n",
		len(runs), changes, o.kafkaPartitions)
	if o.sinksRate > 0 {
		fmt.Printf("the workload written at %d changes/s while cdcaudit with both sinks streamed it; then drained without sinks\n", o.sinksRate)
	} else {
		fmt.Println("the workload written, then drained by cdcaudit without sinks and with both sinks (which first alternates)")
	}
	line("ingest without sinks (a drain), changes/s", over(func(r sinksRun) float64 { return r.PlainRate }), "%.0f")
	line("ingest with both sinks on, changes/s", over(func(r sinksRun) float64 { return r.IngestRate }), "%.0f")
	if o.sinksRate == 0 {
		line("  with / without sinks (same run)", over(func(r sinksRun) float64 { return r.IngestRate / r.PlainRate }), "%.2f")
	}
	for _, name := range sinkNames {
		f := func(g func(sinkFlow) float64) spread {
			return over(func(r sinksRun) float64 { return g(r.Flows[name]) })
		}
		line("  "+name+": events/s over the ingest window", f(func(s sinkFlow) float64 { return s.WindowRate }), "%.0f")
		line("  "+name+": events/s until caught up", f(func(s sinkFlow) float64 { return s.CaughtRate }), "%.0f")
		line("  "+name+" / ingest (goal ≥ 0.9×)", over(func(r sinksRun) float64 { return r.Flows[name].CaughtRate / r.IngestRate }), "%.3f")
		line("  "+name+": caught up after ingest ended, s", f(func(s sinkFlow) float64 { return s.CatchUpSecs }), "%.2f")
	}
	for _, name := range sinkNames {
		line("a full store delivered by both sinks: "+name+", events/s", over(func(r sinksRun) float64 { return r.BacklogRate[name] }), "%.0f")
	}
	line("the audit DB's own COPY of those rows (ceiling), rows/s", over(func(r sinksRun) float64 { return r.CopyCeiling.RowsPerSec }), "%.0f")
	line("  postgres sink, full store / ceiling", over(func(r sinksRun) float64 { return r.BacklogRate["postgres"] / r.CopyCeiling.RowsPerSec }), "%.2f")
	line("  ceiling / ingest without sinks", over(func(r sinksRun) float64 { return r.CopyCeiling.RowsPerSec / r.PlainRate }), "%.2f")
	line("  its backend CPU s per 1M rows", over(func(r sinksRun) float64 { return r.CopyCeiling.BackendCPU * 1e6 / float64(r.CopyCeiling.Rows) }), "%.2f")
	line("  kafka, events/s per partition", over(func(r sinksRun) float64 { return r.BacklogRate["kafka"] / float64(r.KafkaPartitions) }), "%.0f")
	line("peak RSS without sinks, MiB", over(func(r sinksRun) float64 { return mib(r.PlainRSSKiB) }), "%.1f")
	line("peak RSS with both sinks (goal < 250 MiB)", over(func(r sinksRun) float64 { return mib(r.SinksRSSKiB) }), "%.1f")
	line("peak RSS delivering a full store", over(func(r sinksRun) float64 { return mib(r.BacklogRSSKiB) }), "%.1f")
	line("peak anonymous RSS: without / with sinks / full store, MiB", over(func(r sinksRun) float64 { return mib(r.PlainAnonKiB) }), "%.1f")
	line("", over(func(r sinksRun) float64 { return mib(r.SinksAnonKiB) }), "%.1f")
	line("", over(func(r sinksRun) float64 { return mib(r.BacklogAnonKiB) }), "%.1f")
	line("cdcaudit CPU s per 1M changes, without sinks", over(func(r sinksRun) float64 { return perM(r.PlainCPU) }), "%.2f")
	line("  with both sinks (until caught up)", over(func(r sinksRun) float64 { return perM(r.SinksCPU) }), "%.2f")
	line("  with / without (same run)", over(func(r sinksRun) float64 { return r.SinksCPU / r.PlainCPU }), "%.2f")
	line("  delivering a full store (sinks alone)", over(func(r sinksRun) float64 { return perM(r.BacklogCPU) }), "%.2f")
	line("walsender CPU s per 1M changes, without / with sinks", over(func(r sinksRun) float64 { return perM(r.PlainWalsender) }), "%.2f")
	line("", over(func(r sinksRun) float64 { return perM(r.SinksWalsender) }), "%.2f")
	line("kfake process CPU s per 1M events", over(func(r sinksRun) float64 { return perM(r.KafkaCPU) }), "%.2f")
	line("audit database backend CPU s per 1M events", over(func(r sinksRun) float64 { return perM(r.AuditCPU) }), "%.2f")
	per := func(n, d int64) float64 { return float64(n) / float64(d) }
	line("audit table bytes/row (partitions, TOAST and indexes)", over(func(r sinksRun) float64 { return per(r.Audit.TotalBytes, r.Audit.Rows) }), "%.0f")
	line("  of it indexes", over(func(r sinksRun) float64 { return per(r.Audit.IndexBytes, r.Audit.Rows) }), "%.0f")
	line("  the record column (pg_column_size)", over(func(r sinksRun) float64 { return per(r.Audit.RecordBytes, r.Audit.Rows) }), "%.0f")
	line("Kafka bytes/record: key + value + headers", over(func(r sinksRun) float64 { return per(r.Kafka.RecordBytes, r.Kafka.Records) }), "%.0f")
	line("  the value (the event's JSON)", over(func(r sinksRun) float64 { return per(r.Kafka.ValueBytes, r.Kafka.Records) }), "%.0f")
	line("  stored record batches (zstd)", over(func(r sinksRun) float64 { return per(r.Kafka.StoredBytes, r.Kafka.Records) }), "%.0f")
	line("cdcaudit store bytes/event (without sinks)", over(func(r sinksRun) float64 { return float64(r.StoreBytes) / float64(changes) }), "%.0f")
	fmt.Println()
}
