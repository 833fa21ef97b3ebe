package main

import (
	"log/slog"
	"strings"

	"github.com/cdcaudit/cdcaudit/applog"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/rules"
	"github.com/cdcaudit/cdcaudit/sink"
)

// rulesConfig maps the rule settings (validated by config with the same
// parsers) onto the rules' configuration.
func rulesConfig(cfg *config.Config) rules.Config {
	var rc rules.Config
	rc.MassChange, _ = rules.ParseRate(cfg.RuleMassChange)
	rc.TravelKmh, _ = rules.ParseSpeed(cfg.RuleImpossibleTravel)
	rc.Hours, _ = rules.ParseHours(cfg.RuleWorkingHours)
	rc.Sensitive, _ = rules.ParseModels(strings.Join(cfg.RuleSensitiveModels, ","))
	rc.BulkExport, _ = rules.ParseRate(cfg.RuleBulkExport)
	return rc
}

// watchers are the sources beside the stream that this part of the
// configuration asks for: the app-log tailer, the bulk-export rule.
func watchers(cfg *config.Config, rc rules.Config, store *sink.Store, log *slog.Logger) []pipeline.Source {
	var out []pipeline.Source
	if cfg.AppLog != "" {
		burst, _ := applog.ParseBurst(cfg.FailedLoginBurst)
		t := applog.New(applog.Options{Path: cfg.AppLog, Burst: burst, Log: log}, store.LoadState)
		out = append(out, t.Run)
	}
	if rc.BulkExport.N > 0 {
		out = append(out, rules.NewExports(rc.BulkExport, store, store.LoadState, log).Run)
	}
	return out
}
