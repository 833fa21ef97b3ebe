package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/auth"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// The API load of --api-load: readers of the trail while the daemon
// ingests (issue 9: ingest keeps >= 0.8x its rate while four exports and a
// stream of API queries run against it).
const apiExporters = 4

// apiLoad reads the daemon's API while it drains: apiExporters clients
// export every event as JSON Lines over and over (each export starts again
// once done, so it reads a store that keeps growing), and one client asks
// the queries of the console one after another.
type apiLoad struct {
	token string
	spec  string // the api_tokens entry of token

	stopping chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	exports, queries atomic.Int64
	exportBytes      atomic.Int64
	mu               sync.Mutex
	err              error // the first answer that was not 200
}

// apiLoadResult is what the readers did during one drain.
type apiLoadResult struct {
	Exports     int64 `json:"exports"`      // finished
	ExportBytes int64 `json:"export_bytes"` // read, finished or not
	Queries     int64 `json:"queries"`
}

func newAPILoad() (*apiLoad, error) {
	token, spec, err := auth.NewToken(access.Principal{Role: access.Viewer}, "bench", time.Time{})
	if err != nil {
		return nil, err
	}
	return &apiLoad{token: token, spec: spec.String()}, nil
}

// env configures the daemon with the load's token.
func (l *apiLoad) env() string { return "CDCAUDIT_API_TOKENS=" + l.spec }

// start begins reading the API on addr (retrying until it answers);
// maxID bounds the record ids asked for.
func (l *apiLoad) start(addr string, maxID int) {
	l.stopping = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-l.stopping; cancel() }()
	base := "http://" + addr
	for range apiExporters {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for l.running() {
				n, ok := l.get(ctx, base+"/api/v1/export?format=jsonl")
				l.exportBytes.Add(n)
				if ok {
					l.exports.Add(1)
				}
			}
		}()
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		rng := rand.New(rand.NewPCG(7, 9))
		for i := 0; l.running(); i++ {
			var path string
			switch i % 5 {
			case 0:
				path = "/api/v1/events?order=desc&limit=100"
			case 1:
				path = "/api/v1/events/count?op=update"
			case 2:
				path = fmt.Sprintf("/api/v1/records/history?record=public.sale_order_line:%d", 1+rng.IntN(maxID))
			case 3:
				path = "/api/v1/events?table=sale_order_line&op=update&limit=100"
			default:
				path = "/api/v1/summaries/changes"
			}
			if _, ok := l.get(ctx, base+path); ok {
				l.queries.Add(1)
			}
		}
	}()
}

func (l *apiLoad) running() bool {
	select {
	case <-l.stopping:
		return false
	default:
		return true
	}
}

// get reads one answer to its end; ok when it was a whole 200. A daemon
// not listening yet is waited for; any other failure is kept (the bench
// reports it) and ends that client.
func (l *apiLoad) get(ctx context.Context, url string) (n int64, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		l.fail(err)
		return 0, false
	}
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond) // not listening yet
		}
		return 0, false
	}
	defer resp.Body.Close()
	n, err = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		l.fail(fmt.Errorf("GET %s: %s", url, resp.Status))
		<-l.stopping // no retry storm: this client is done
		return n, false
	}
	return n, err == nil
}

func (l *apiLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
}

// stop ends the readers and says what they did.
func (l *apiLoad) stop() (apiLoadResult, error) {
	l.stopOnce.Do(func() { close(l.stopping) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return apiLoadResult{Exports: l.exports.Load(), ExportBytes: l.exportBytes.Load(), Queries: l.queries.Load()}, l.err
}

// apiLoadRun is one run of --api-load: the same backlog drained by
// cdcaudit alone and with the API load.
type apiLoadRun struct {
	Alone, Loaded drain `json:"-"`
	// Changes per second of each drain.
	AloneRate  float64       `json:"alone_changes_per_second"`
	LoadedRate float64       `json:"loaded_changes_per_second"`
	Load       apiLoadResult `json:"load"`
}

// benchAPILoad writes the bench workload (REPLICA IDENTITY FULL) once and
// drains it twice through cdcaudit, from two slots: alone, and with the
// API load; the order alternates between runs.
func benchAPILoad(ctx context.Context, c *pgtest.Cluster, o options, run int) (apiLoadRun, error) {
	db := fmt.Sprintf("apiload%d", run)
	if err := c.CreateDatabase(ctx, db); err != nil {
		return apiLoadRun{}, err
	}
	defer dropDatabase(ctx, c, db)
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return apiLoadRun{}, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, table+identityDDL("sale_order_line", "full")+publications); err != nil {
		return apiLoadRun{}, err
	}
	slots := []string{"alone", "loaded"}
	for _, s := range slots {
		if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s); err != nil {
			return apiLoadRun{}, err
		}
	}
	end, _, err := workload(ctx, c, conn, o.rows, o.txRows)
	if err != nil {
		return apiLoadRun{}, err
	}
	if run%2 == 0 {
		slots[0], slots[1] = slots[1], slots[0]
	}
	var r apiLoadRun
	for _, s := range slots {
		var load *apiLoad
		if s == "loaded" {
			if load, err = newAPILoad(); err != nil {
				return r, err
			}
		}
		d, err := runCdcaudit(ctx, conn, o, c, db, s, "none", end, true, load)
		if err != nil {
			return r, fmt.Errorf("%s: %w", s, err)
		}
		if load != nil {
			r.Loaded, r.Load = d, d.load
			log.Printf("run %d/%d: cdcaudit with the API read (%d exports finished, %.0f MB exported, %d queries) %s",
				run, o.runs, d.load.Exports, float64(d.load.ExportBytes)/1e6, d.load.Queries, d.summary(2*o.rows))
		} else {
			r.Alone = d
			log.Printf("run %d/%d: cdcaudit alone %s", run, o.runs, d.summary(2*o.rows))
		}
	}
	r.AloneRate = float64(2*o.rows) / r.Alone.wall.Seconds()
	r.LoadedRate = float64(2*o.rows) / r.Loaded.wall.Seconds()
	return r, nil
}

func runAPILoadMode(ctx context.Context, c *pgtest.Cluster, o options, rep report) error {
	rep.LoadAverageStart = loadAverage()
	fmt.Printf("workload: %d inserts + %d updates (REPLICA IDENTITY FULL), %d rows per transaction; %d run(s), each drained by cdcaudit alone and with %d API exports and a stream of API queries\n",
		o.rows, o.rows, o.txRows, o.runs, apiExporters)
	return measureRuns(o, rep, "--api-load", func(run int) (apiLoadRun, error) { return benchAPILoad(ctx, c, o, run) },
		func(runs []apiLoadRun) { printAPILoad(o, runs) }, func(rep *report, runs []apiLoadRun) { rep.APILoad = runs })
}

// measureRuns makes the --runs runs of one mode between two readings of
// the load average, prints their table (print), keeps them in the report
// (keep) and writes --json.
func measureRuns[R any](o options, rep report, mode string, one func(run int) (R, error), print func([]R), keep func(*report, []R)) error {
	fmt.Printf("load average at start: %s\n", rep.LoadAverageStart)
	var runs []R
	for r := 1; r <= o.runs; r++ {
		x, err := one(r)
		if err != nil {
			return fmt.Errorf("run %d, %s: %w", r, mode, err)
		}
		runs = append(runs, x)
	}
	rep.LoadAverageEnd = loadAverage()
	fmt.Printf("load average at end:   %s\n\n", rep.LoadAverageEnd)
	print(runs)
	keep(&rep, runs)
	if o.jsonOut != "" {
		return writeJSON(o.jsonOut, rep)
	}
	return nil
}

func printAPILoad(o options, runs []apiLoadRun) {
	changes := float64(2 * o.rows)
	var alone, loaded, exports, mb, queries, sizeAlone, sizeLoaded, cpuAlone, cpuLoaded spread
	for _, r := range runs {
		alone = append(alone, changes/r.Alone.wall.Seconds())
		loaded = append(loaded, changes/r.Loaded.wall.Seconds())
		exports = append(exports, float64(r.Load.Exports))
		mb = append(mb, float64(r.Load.ExportBytes)/1e6)
		queries = append(queries, float64(r.Load.Queries))
		sizeAlone = append(sizeAlone, float64(r.Alone.storeBytes)/(1<<20))
		sizeLoaded = append(sizeLoaded, float64(r.Loaded.storeBytes)/(1<<20))
		cpuAlone = append(cpuAlone, perChange(r.Alone.cpu, int(changes)))
		cpuLoaded = append(cpuLoaded, perChange(r.Loaded.cpu, int(changes)))
	}
	fmt.Printf("API load: median (min to max) of %d run(s), %d changes each\n", len(runs), int(changes))
	fmt.Printf("  ingest alone, changes/s                  %s\n", alone.format("%.0f"))
	fmt.Printf("  ingest with the API read, changes/s      %s\n", loaded.format("%.0f"))
	fmt.Printf("  ratio (goal >= 0.8)                      %s\n", loaded.pairedWith(alone).format("%.2f"))
	fmt.Printf("  exports finished / MB exported / queries %s / %s / %s\n", exports.format("%.0f"), mb.format("%.0f"), queries.format("%.0f"))
	fmt.Printf("  store file MiB, alone / with the reads   %s / %s\n", sizeAlone.format("%.1f"), sizeLoaded.format("%.1f"))
	fmt.Printf("  daemon CPU µs/change, alone / with reads %s / %s (the reads' CPU included)\n", cpuAlone.format("%.2f"), cpuLoaded.format("%.2f"))
}
