package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cdcaudit/cdcaudit/api"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/internal/httpserver"
	"github.com/cdcaudit/cdcaudit/internal/logging"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/internal/readpace"
	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

const runAbout = `
Capture every INSERT, UPDATE, DELETE and TRUNCATE of the published tables into
the audit store in --data-dir, until SIGTERM or SIGINT (then the last changes
received are stored, the slot is confirmed up to them, and cdcaudit exits 0).

On start cdcaudit creates the publication (all tables, or --tables minus
--exclude) and the pgoutput replication slot when they are missing, and
streams from the store's checkpoint (or from the slot's position on the first
start). It never drops the slot. /metrics (Prometheus), /healthz and the API
(/api/v1, docs/api.md) are served on --http-addr, 127.0.0.1 only unless told
otherwise; beyond loopback with TLS (--tls-cert-file, --tls-key-file) or,
asked for with --allow-plain-http, in plain HTTP.

Every change is attributed to the application user and login session that
made it, from the application's own tables (--profile: Odoo is recognised by
itself, also when its tables appear after cdcaudit started; any other
application is described in a --profile-file).

When it creates the slot, cdcaudit copies the published tables (--snapshot
initial, the default; --snapshot-tables to choose) as they were at exactly
the slot's start, beside the stream, as op "snapshot" records: the trail
then knows every record, not only those changed since. The application's
users, models and sessions tables are loaded once in any case. Progress is
logged, in the metrics and in 'cdcaudit status'; an interrupted copy
resumes where it stopped. 'cdcaudit snapshot --table GLOB' copies tables
again while run is running. Secret columns (Odoo's, with
any profile, the profile's and --redact's) are never stored: their values
become "[redacted]", or an HMAC under the key in --redact-key-file.

The chain head is signed with the instance key (data-dir/instance.key,
created on first start) and published — logged, appended to --anchor-file,
sent to --anchor-syslog — at the first commit, every 10 minutes and at stop:
'cdcaudit verify --anchor' checks a store against these anchors. While run
holds the store, 'cdcaudit backup' gets its copies from it, and export,
events, sessions and verify their reads (over data-dir/cdcaudit.sock).

Several databases of one server in one daemon: a databases list in the
--config file instead of --dsn, each database with its own slot, store
(data-dir/<source>) and chain, one HTTP server for all; a fatal error of
one stops the daemon, naming its source (docs/configuration.md, "Many
databases").

Every flag can also be set in the YAML file given by --config (key: the flag
name with underscores, e.g. data_dir) or in a CDCAUDIT_* environment variable
(e.g. CDCAUDIT_DATA_DIR). Flags win over variables, variables over the file.
A bad value is an error naming its key; nothing falls back to a default.

Exit status: 0 after a clean stop, 1 on a fatal error (e.g. the slot was
dropped, wal_level is not logical, missing privileges), 2 on bad usage.`

const runExamples = `  cdcaudit run --dsn postgres://cdcaudit:secret@db:5432/erp --data-dir /var/lib/cdcaudit
  cdcaudit run --config /etc/cdcaudit.yml --tables 'public.sale_*,public.res_partner'
  CDCAUDIT_DSN=postgres://cdcaudit@db/erp CDCAUDIT_DATA_DIR=/data cdcaudit run --http-addr 0.0.0.0:9187 \
    --tls-cert-file /etc/cdcaudit/tls.crt --tls-key-file /etc/cdcaudit/tls.key`

// runFlagOrder is the order of run's flags in --help.
var runFlagOrder = []string{"dsn", "data-dir", "config", "http-addr", "tls-cert-file", "tls-key-file", "allow-plain-http", "pprof", "slot", "publication", "source", "tables", "exclude",
	"profile", "profile-file", "redact", "redact-key-file", "idle-after", "session-lifetime", "geoip-db",
	"snapshot", "snapshot-tables", "retention", "accept-gap", "anchor-file", "anchor-syslog", "status-interval", "log-format", "log-level", "print-config"}

func (c *cli) run(args []string) int {
	fs := c.flagSet("run", "--dsn URL --data-dir DIR [flags]", runAbout, runExamples)
	set := config.Bind(fs.FlagSet, config.Keys()...).Require(config.KeyDSN, config.KeyDataDir)
	printConfig := fs.Bool("print-config", false, "print the resolved configuration, with where each value came from (default, file, variable or flag), and exit")
	fs.order = runFlagOrder
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("run", err)
	}
	if *printConfig {
		for _, l := range cfg.Describe() {
			fmt.Fprintln(c.stdout, l)
		}
		return exitOK
	}
	// The files the configuration names are read now: a bad one is a
	// configuration error, not a failure after start-up.
	if err := cfg.CheckFiles(); err != nil {
		return c.usageErr("run", err)
	}
	redactKey, err := cfg.ReadRedactKey()
	if err != nil {
		return c.usageErr("run", err)
	}

	log := newLogger(c.stderr, cfg.LogFormat, cfg.LogLevel)
	slog.SetDefault(log)

	// A second signal kills at once: the store is crash-safe.
	ctx, stop := signalContext()
	defer stop()

	reg := metrics.NewRegistry()
	dbs := cfg.Databases()
	several := len(dbs) > 1
	if err := checkStoreLayout(cfg); err != nil {
		return c.fail("run", err)
	}
	// Each database's store is opened here, not by its pipeline, so that
	// the API reads the same handle while the pipeline writes it.
	var srcs []*daemonSource
	defer func() {
		for _, s := range srcs {
			s.close()
		}
	}()
	for _, d := range dbs {
		s, err := openSource(cfg.For(d), reg, log, several)
		if err != nil {
			s.close()
			return c.fail("run", s.named(err))
		}
		srcs = append(srcs, s)
	}
	// Readers of the trails (API, sockets) give way to recording while
	// any of it is behind: one budget for all of them.
	pace := readpace.New(reg.Behind, readpace.Share)
	first := srcs[0]
	first.m.ReadPacing(pace.Waited)
	sources := make([]api.Source, len(srcs))
	for i, s := range srcs {
		if sources[i], err = apiSource(s.cfg, s.store, s.ends.ctl); err != nil {
			return c.fail("run", s.named(err))
		}
	}
	served, err := apiRoutes(first.cfg, sources, first.m, pace, log, ctx.Done())
	if err != nil {
		return c.fail("run", err)
	}
	defer served.close()
	hs, err := startHTTP(httpSettings{addr: cfg.HTTPAddr, certFile: cfg.TLSCertFile, keyFile: cfg.TLSKeyFile,
		allowPlain: cfg.AllowPlainHTTP, pprof: cfg.Pprof, routes: served.routes}, reg, log)
	if err != nil {
		return c.fail("run", fmt.Errorf("http_addr %s: %w", cfg.HTTPAddr, err))
	}
	defer hs.shutdown()

	log.Info("cdcaudit starting", "version", versionString(), "databases", len(dbs),
		"metrics", hs.url+"/metrics", "healthz", hs.url+"/healthz", "api", hs.url+"/api/v1/", "console", hs.url+"/")
	for _, s := range srcs {
		s.log.Info("database", "source", s.cfg.Source, "server", config.DescribeDSN(s.cfg.DSN),
			"data_dir", s.cfg.DataDir, "slot", s.cfg.Slot, "publication", s.cfg.Publication)
	}
	if cfg.File != "" {
		log.Debug("configuration", "file", cfg.File)
	}
	for _, l := range cfg.Describe() {
		log.Debug("config " + l)
	}

	for _, s := range srcs {
		if usage, err := s.wire(redactKey, pace); usage {
			return c.usageErr("run", s.named(err))
		} else if err != nil {
			return c.fail("run", s.named(err))
		}
	}
	if err := runPipelines(ctx, srcs); err != nil {
		if cfg.LogFormat == "json" {
			log.Error("cdcaudit stopped", "err", err, "fatal", replication.IsFatal(err))
		}
		return c.fail("run", err)
	}
	log.Info("cdcaudit stopped cleanly")
	return exitOK
}

// checkStoreLayout refuses databases over a data_dir that holds a store
// of its own (made with dsn): each database's store is in
// <data_dir>/<source>, so that one would be left behind with its slot
// retaining WAL on the server.
func checkStoreLayout(cfg *config.Config) error {
	if cfg.DatabaseList == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, sink.FileName)); err == nil {
		return fmt.Errorf("data_dir %s holds the store of a single dsn, and with databases each database's store is in %s: "+
			"move that store into the directory of its source (and give that database its slot), or use another data_dir",
			cfg.DataDir, filepath.Join(cfg.DataDir, "<source>"))
	}
	return nil
}

// daemonSource is one database's pipeline in the daemon: its
// configuration (the top-level one with the database's dsn, source, slot,
// publication and data_dir: config.For), its store, metrics, session
// control and the pipeline's configuration.
type daemonSource struct {
	cfg     *config.Config
	several bool // the daemon watches several databases: errors name the source
	log     *slog.Logger
	store   *sink.Store
	m       *metrics.Metrics
	ends    *daemonSessions
	pc      pipeline.Config
	closers []func() // in reverse order
}

// openSource opens one database's store and makes its metrics and session
// control.
func openSource(cfg *config.Config, reg *metrics.Registry, log *slog.Logger, several bool) (*daemonSource, error) {
	s := &daemonSource{cfg: cfg, several: several, log: log}
	if several {
		s.log = log.With("source", cfg.Source)
	}
	s.m = reg.Source(cfg.Source)
	store, err := sink.Open(cfg.DataDir)
	if err != nil {
		return s, err
	}
	s.store = store
	s.closers = append(s.closers, func() { store.Close() })
	if s.ends, err = newDaemonSessions(cfg, store, s.m, s.log); err != nil {
		return s, err
	}
	return s, nil
}

// wire makes the source's pipeline configuration: alerts, watchers,
// database sessions, session control and sinks. usage says the error is
// the configuration's (exit 2).
func (s *daemonSource) wire(redactKey []byte, pace *readpace.Pacer) (usage bool, err error) {
	cfg, log := s.cfg, s.log
	pc := pipelineConfig(cfg, s.m, log)
	pc.RedactKey = redactKey
	pc.Store = s.store
	alerts, sources, closeAlerts, err := alertSetup(cfg, s.store, s.m, log)
	if err != nil {
		return true, err
	}
	s.closers = append(s.closers, closeAlerts)
	pc.Alerts, pc.Sources = alerts, sources
	pc.ReadPace = pace
	pc.Sources = append(pc.Sources, watchers(cfg, pc.Rules, s.store, log)...)
	if err := watchDBSessions(cfg, s.store, &pc, log); err != nil {
		return false, err
	}
	s.ends.wire(&pc)
	closeSinks, err := sinkSetup(cfg, s.store, &pc, s.m, log)
	s.closers = append(s.closers, closeSinks)
	if err != nil {
		return true, err
	}
	s.pc = pc
	return false, nil
}

// named prefixes err with the source when the daemon watches several.
func (s *daemonSource) named(err error) error {
	if s == nil || !s.several {
		return err
	}
	return fmt.Errorf("source %s: %w", s.cfg.Source, err)
}

func (s *daemonSource) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// runPipelines runs every source's pipeline until ctx is cancelled (each
// stops cleanly) or one fails: then the others are stopped cleanly too,
// and its error, naming its source, is returned. The daemon stops at once
// rather than go on with a database unwatched: a dropped slot needs the
// DBA, and the other stores are crash-safe.
func runPipelines(ctx context.Context, srcs []*daemonSource) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, s := range srcs {
		wg.Go(func() {
			if err := pipeline.Run(ctx, s.pc); err != nil {
				if len(srcs) > 1 {
					s.log.Error("a database's pipeline stopped: stopping the others", "err", err)
				}
				once.Do(func() { first = s.named(err) })
				cancel()
			}
		})
	}
	wg.Wait()
	return first
}

// pipelineConfig maps the configuration onto the pipeline's.
func pipelineConfig(cfg *config.Config, m *metrics.Metrics, log *slog.Logger) pipeline.Config {
	pc := pipeline.Config{
		Replication: replication.Config{
			DSN:            cfg.DSN,
			Slot:           cfg.Slot,
			Publication:    cfg.Publication,
			Tables:         cfg.Tables,
			Exclude:        cfg.Exclude,
			StatusInterval: cfg.StatusInterval,
			AcceptGap:      cfg.AcceptGap,
			Logger:         log,
		},
		DataDir: cfg.DataDir,
		Source:  cfg.Source,
		Logger:  log,

		Profile:         cfg.Profile,
		ProfileFile:     cfg.ProfileFile,
		Redact:          cfg.Redact,
		IdleAfter:       cfg.IdleAfter,
		SessionLifetime: cfg.SessionLifetime,
		GeoIPPath:       cfg.GeoIPDB,
		AnchorFile:      cfg.AnchorFile,
		AnchorSyslog:    cfg.AnchorSyslog,
		Snapshot:        cfg.Snapshot,
		SnapshotTables:  cfg.SnapshotTables,
		Retention:       cfg.Retention,
		Rules:           rulesConfig(cfg),
		// RedactKey is read from cfg.RedactKeyFile by the caller
		// (Config.ReadRedactKey): the key is never configuration.
	}
	if m != nil { // a nil *Metrics in an interface would not be nil
		pc.Replication.Observer, pc.Metrics = m, m
	}
	return pc
}

// newLogger returns a slog logger writing text or JSON at the given level
// (both already validated by config: logging's rules).
func newLogger(w io.Writer, format, level string) *slog.Logger {
	log, err := logging.New(w, format, level)
	if err != nil {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return log
}

// httpServer is the daemon's HTTP server and its routes.
type httpServer struct {
	*httpserver.Server
	addr    string // the actual address (port 0 resolved)
	url     string // http:// or https:// and addr
	handler http.Handler
}

// httpSettings say how and what the daemon's HTTP server serves.
type httpSettings struct {
	addr              string
	certFile, keyFile string // TLS when set
	allowPlain        bool   // plain HTTP beyond loopback
	pprof             bool   // /debug/pprof, to loopback clients
	// routes, when set, adds routes (the API and the console, at /) to
	// the server's.
	routes func(mux *http.ServeMux)
}

// startHTTP serves /metrics, /healthz, /debug/pprof with pprof, and the
// routes given; without routes, / lists what it serves.
func startHTTP(hs httpSettings, m *metrics.Registry, log *slog.Logger) (*httpServer, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("GET /healthz", m.HealthHandler())
	index := "/metrics  Prometheus metrics\n/healthz  health (200 ok, 503 with the reason)\n"
	if hs.routes != nil {
		hs.routes(mux)
	}
	if hs.pprof {
		mux.Handle("/debug/pprof/", httpserver.LoopbackOnly(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", httpserver.LoopbackOnly(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("/debug/pprof/profile", httpserver.LoopbackOnly(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", httpserver.LoopbackOnly(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", httpserver.LoopbackOnly(http.HandlerFunc(pprof.Trace)))
		index += "/debug/pprof/  Go profiler (loopback clients only)\n"
	}
	if hs.routes == nil {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "cdcaudit %s\n\n%s", versionString(), index)
		})
	}
	srv, err := httpserver.Start(httpserver.Options{Addr: hs.addr, CertFile: hs.certFile, KeyFile: hs.keyFile,
		AllowPlain: hs.allowPlain, Handler: mux, Log: log})
	if err != nil {
		return nil, err
	}
	log.Info("serving metrics", "addr", srv.Addr(), "url", srv.URL()+"/metrics")
	return &httpServer{Server: srv, addr: srv.Addr(), url: srv.URL(), handler: mux}, nil
}

func (hs *httpServer) shutdown() { hs.Shutdown() }

// signalContext is cancelled by SIGINT or SIGTERM; after the first signal
// the default action is restored, so a second one kills the process.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}
