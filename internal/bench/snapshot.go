package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// snapshotResult is what the snapshot bench measured.
type snapshotResult struct {
	Rows int64 `json:"rows"` // rows in the table
	// COPY sale_order_line TO '/dev/null' (server-side), before and after
	// cdcaudit's snapshot; the faster counts.
	CopySeconds []float64 `json:"copy_seconds"`
	// The CPU of the server's backend running each COPY.
	CopyServerCPUSeconds []float64 `json:"copy_server_cpu_seconds"`
	// From starting cdcaudit run on a fresh data dir (slot creation
	// included) until its metrics say every table's snapshot is done.
	SnapshotSeconds float64 `json:"snapshot_seconds"`
	SnapshotRows    int64   `json:"snapshot_rows"` // cdcaudit_snapshot_rows_total then
	CPUSeconds      float64 `json:"cpu_seconds"`   // cdcaudit's user+system, all threads, then
	// The CPU of the server processes of cdcaudit's connections (backends
	// and walsender) until then, each read last while it ran.
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	PeakRSSKiB       int64   `json:"peak_rss_kib"` // cdcaudit's VmHWM then
	StoreBytes       int64   `json:"store_bytes"`  // its data dir after a clean stop
}

func (s *snapshotResult) copyRate() float64 {
	return float64(s.Rows) / slices.Min(s.CopySeconds)
}

func (s *snapshotResult) snapshotRate() float64 {
	return float64(s.SnapshotRows) / s.SnapshotSeconds
}

// snapshotFillRows is how many rows one transaction of the fill inserts.
const snapshotFillRows = 1000000

// benchSnapshot fills a table of --snapshot-rows rows, times COPY of it to
// /dev/null, then cdcaudit's initial snapshot of it, then COPY again.
func benchSnapshot(ctx context.Context, c *pgtest.Cluster, o options) (*snapshotResult, error) {
	const db = "snapshot"
	conn, done, err := benchDB(ctx, c, db, table)
	if err != nil {
		return nil, err
	}
	defer done()
	t0 := time.Now()
	for lo := 1; lo <= o.snapshotRows; lo += snapshotFillRows {
		if _, err := conn.Exec(ctx, insertRows, lo, min(lo+snapshotFillRows-1, o.snapshotRows)); err != nil {
			return nil, err
		}
	}
	// Frozen and hinted, with statistics: neither reader pays for the
	// first visit of the fill's rows, and reltuples is known.
	for _, q := range []string{"VACUUM (FREEZE, ANALYZE) sale_order_line", "CHECKPOINT"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return nil, err
		}
	}
	log.Printf("snapshot: %d rows written in %.1fs", o.snapshotRows, time.Since(t0).Seconds())
	res := &snapshotResult{Rows: int64(o.snapshotRows)}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return nil, err
	}
	copyOnce := func() error {
		cpu0, err := processCPU(backend)
		if err != nil {
			return fmt.Errorf("the server's CPU is read from /proc (run as root): %v", err)
		}
		t0 := time.Now()
		tag, err := conn.Exec(ctx, "COPY sale_order_line TO '/dev/null'")
		if err != nil {
			return err
		}
		elapsed := time.Since(t0)
		cpu1, err := processCPU(backend)
		if err != nil {
			return err
		}
		res.CopyServerCPUSeconds = append(res.CopyServerCPUSeconds, (cpu1 - cpu0).Seconds())
		if tag.RowsAffected() != res.Rows {
			return fmt.Errorf("COPY copied %d rows, want %d", tag.RowsAffected(), res.Rows)
		}
		res.CopySeconds = append(res.CopySeconds, elapsed.Seconds())
		log.Printf("snapshot: COPY sale_order_line TO '/dev/null' in %.1fs", res.CopySeconds[len(res.CopySeconds)-1])
		return nil
	}
	// The reference runs before and after cdcaudit, as in the drains.
	if err := copyOnce(); err != nil {
		return nil, err
	}
	if err := runSnapshot(ctx, c, conn, o, db, res); err != nil {
		return nil, err
	}
	if err := copyOnce(); err != nil {
		return nil, err
	}
	return res, nil
}

// runSnapshot starts cdcaudit on a fresh data dir and slot with the initial
// snapshot and measures it until its /metrics say every table is done.
func runSnapshot(ctx context.Context, c *pgtest.Cluster, conn *pgx.Conn, o options, db string, res *snapshotResult) error {
	dataDir, err := os.MkdirTemp("", "cdcaudit-bench-snapshot-")
	if err != nil {
		return err
	}
	if o.keep {
		log.Printf("store of the snapshot kept in %s", dataDir)
	} else {
		defer os.RemoveAll(dataDir)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	cmd := exec.Command(o.bin, "run", "--dsn", c.DSN(db), "--data-dir", dataDir, "--slot", "snapshot",
		"--publication", "snapshot", "--http-addr", addr, "--log-level", "warn", "--profile", "none", "--snapshot", "initial")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}
	client := &http.Client{Timeout: 5 * time.Second}
	server := serverProcs{}
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("cdcaudit exited before its snapshot was done: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if err := sampleBackends(ctx, conn, db, server); err != nil {
			stop()
			return err
		}
		m, err := scrape(client, "http://"+addr+"/metrics")
		if err != nil {
			continue // not listening yet
		}
		done, known := snapshotDone(m)
		if !known && time.Since(t0) > time.Minute {
			stop()
			return errors.New(`cdcaudit's /metrics have no cdcaudit_snapshot_tables{state="done"} after a minute`)
		}
		if done {
			res.SnapshotSeconds = time.Since(t0).Seconds()
			res.SnapshotRows = int64(m.get("cdcaudit_snapshot_rows_total"))
			break
		}
	}
	cpu, err := processCPU(cmd.Process.Pid)
	if err != nil {
		stop()
		return err
	}
	res.CPUSeconds = cpu.Seconds()
	server.sampleAll()
	res.ServerCPUSeconds = server.total().Seconds()
	res.PeakRSSKiB = peakRSS(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		return fmt.Errorf("cdcaudit did not exit cleanly: %v", err)
	}
	res.StoreBytes = dirSize(dataDir)
	if res.SnapshotRows != res.Rows {
		log.Printf("snapshot: cdcaudit_snapshot_rows_total is %d, the table has %d rows", res.SnapshotRows, res.Rows)
	}
	log.Printf("snapshot: cdcaudit stored %d rows in %.1fs", res.SnapshotRows, res.SnapshotSeconds)
	return nil
}

// sampleBackends reads the CPU of every server process of database db but
// conn's own: cdcaudit's connections.
func sampleBackends(ctx context.Context, conn *pgx.Conn, db string, server serverProcs) error {
	rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", db)
	if err != nil {
		return err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	for _, pid := range pids {
		server.sample(int(pid))
	}
	return err
}

// snapshotDone tells from cdcaudit's metrics whether its snapshot is
// complete: some table done, none pending or copying. known says whether
// the metric is there at all.
func snapshotDone(m metricValues) (done, known bool) {
	d, known := m[series("cdcaudit_snapshot_tables", "state", "done")]
	return known && d >= 1 &&
		m.get("cdcaudit_snapshot_tables", "state", "pending") == 0 &&
		m.get("cdcaudit_snapshot_tables", "state", "copying") == 0, known
}

// freeAddr is a loopback address with a port free now, for cdcaudit's
// /metrics.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func scrape(client *http.Client, url string) (metricValues, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// metricValues are the samples of a Prometheus text exposition, by series
// (see series).
type metricValues map[string]float64

// get is the value of a series, 0 when absent (as a counter or gauge that
// has not been set yet).
func (m metricValues) get(name string, labels ...string) float64 {
	return m[series(name, labels...)]
}

// sum adds every series of a metric, whatever its labels.
func (m metricValues) sum(name string) float64 {
	var t float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}

// series names a sample: name{k1="v1",k2="v2"}, labels sorted by name, or
// the bare name without labels. labels are name, value pairs.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var pairs []string
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, labels[i]+"="+strconv.Quote(labels[i+1]))
	}
	slices.Sort(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// parseMetrics reads a Prometheus text exposition: the value of each
// counter, gauge or untyped sample, by series without its source label.
func parseMetrics(r io.Reader) (metricValues, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	m := metricValues{}
	for name, f := range families {
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				// Every series of a daemon carries its source; the bench
				// runs one source per daemon, so series are named without.
				if l.GetName() != "source" {
					labels = append(labels, l.GetName(), l.GetValue())
				}
			}
			v := s.GetGauge().GetValue() + s.GetCounter().GetValue() + s.GetUntyped().GetValue()
			m[series(name, labels...)] = v
		}
	}
	return m, nil
}
