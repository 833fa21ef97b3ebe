package main

import (
	"log/slog"
	"strings"

	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/kafkasink"
	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/outbox"
	"github.com/cdcaudit/cdcaudit/pgsink"
	"github.com/cdcaudit/cdcaudit/sink"
)

// sinkSetup adds the configured external sinks (outbox runners) to the
// pipeline's sources, and their hold to retention: retention never prunes
// a record a configured sink has not acknowledged. Their records carry
// cfg.Source, the store's (the pipeline refuses a store of another). close
// closes their connections once the pipeline stopped.
func sinkSetup(cfg *config.Config, store *sink.Store, pc *pipeline.Config, m *metrics.Metrics, log *slog.Logger) (close func(), err error) {
	var names []string
	var closers []func()
	close = func() {
		for _, c := range closers {
			c()
		}
	}
	if cfg.SinkPostgresDSN != "" {
		pg, err := pgsink.New(cfg.SinkPostgresDSN, cfg.SinkPostgresTable, cfg.Source)
		if err != nil {
			return close, err
		}
		closers = append(closers, pg.Close)
		o := outbox.Options{Batch: cfg.SinkPostgresBatch, Logger: log.With("audit_db", config.DescribeDSN(cfg.SinkPostgresDSN), "table", cfg.SinkPostgresTable)}
		if m != nil {
			o.Metrics = m
		}
		r, err := outbox.New(store, pg, o)
		if err != nil {
			return close, err
		}
		pc.Sources = append(pc.Sources, r.Run)
		names = append(names, pg.Name())
	}
	if kc, ok, err := cfg.KafkaSink(); err != nil {
		return close, err
	} else if ok {
		ks, err := kafkasink.New(kc)
		if err != nil {
			return close, err
		}
		closers = append(closers, ks.Close)
		o := outbox.Options{Logger: log.With("kafka", strings.Join(kc.Brokers, ","), "topic", cfg.SinkKafkaTopic)}
		if m != nil {
			o.Metrics = m
		}
		r, err := outbox.New(store, ks, o)
		if err != nil {
			return close, err
		}
		pc.Sources = append(pc.Sources, r.Run)
		names = append(names, ks.Name())
	}
	if len(names) > 0 {
		if m != nil {
			m.Sinks(names...)
		}
		pc.Retention.Hold = outbox.Hold(store, names)
	}
	return close, nil
}
