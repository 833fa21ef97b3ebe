package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/api"
	"github.com/cdcaudit/cdcaudit/auth"
	"github.com/cdcaudit/cdcaudit/console"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/sink"
)

// apiServer is the HTTP API on the daemon's store behind sign-in, and the
// console that reads it.
type apiServer struct {
	// routes adds /api/v1/, the sign-in routes and the console (/ and
	// /assets/) to the daemon's server.
	routes func(*http.ServeMux)
	// auth makes one-time sign-in codes (the demo's link).
	auth *auth.Auth
	// close is called at the end.
	close func()
}

// apiSource is one database's store as the API serves it: cfg is the
// database's configuration (config.For), ends its session control (nil:
// none).
func apiSource(cfg *config.Config, store *sink.Store, ends api.SessionEnder) (api.Source, error) {
	name, database := oneSource(cfg, store)
	return api.StoreSource(name, database, cfg.DataDir, store, ends)
}

// apiRoutes makes the HTTP API on the daemon's stores, behind sign-in, and
// the console. cfg is the first database's configuration: password
// sign-ins are checked against its users and recorded in its store (the
// first source's). Closing done ends the API's event streams (the daemon
// stops).
func apiRoutes(cfg *config.Config, sources []api.Source, m *metrics.Metrics, pace api.Pacer, log *slog.Logger, done <-chan struct{}) (*apiServer, error) {
	store, ok := sources[0].Store.(*sink.Store)
	if !ok {
		return nil, errors.New("the API's first source has no store to record sign-ins in")
	}
	h, err := api.New(api.Options{Sources: sources, Log: log.With("component", "api"), Pace: pace, Done: done})
	if err != nil {
		return nil, err
	}
	opts := auth.Options{
		Tokens:          cfg.APITokens,
		SessionIdle:     cfg.APISessionIdle,
		SessionLifetime: cfg.APISessionLifetime,
		SecureCookie:    cfg.TLSCertFile != "",
		Access:          storeAccessLog{store},
		Log:             log.With("component", "auth"),
	}
	if m != nil {
		opts.Metrics = m
	}
	if opts.LoginLimit, err = auth.ParseLimit(cfg.APISigninLimitLogin); err != nil {
		return nil, err
	}
	if opts.AddressLimit, err = auth.ParseLimit(cfg.APISigninLimitAddress); err != nil {
		return nil, err
	}
	closeUsers := func() {}
	// Password sign-in is Odoo's: with the Odoo profile, or auto (Odoo may
	// appear after start; until then sign-in answers 503).
	if cfg.Profile == profile.ChoiceOdoo || cfg.Profile == profile.ChoiceAuto {
		pool, err := usersPool(cfg.DSN)
		if err != nil {
			return nil, err
		}
		users, err := auth.NewOdooUsers(pool, cfg.APIViewerGroup)
		if err != nil {
			pool.Close()
			return nil, err
		}
		opts.Users, closeUsers = users, pool.Close
	}
	a, err := auth.New(opts)
	if err != nil {
		closeUsers()
		return nil, err
	}
	routes := func(mux *http.ServeMux) {
		mux.Handle(api.Prefix, a.Middleware(h))
		a.Routes(mux)
		mux.Handle("/", console.Handler())
	}
	return &apiServer{routes: routes, auth: a, close: closeUsers}, nil
}

// oneSource names the one database the daemon records: its source as
// configured or, for the demo, which configures none, as the store records
// it; its database as the store records it, or the DSN names it.
func oneSource(cfg *config.Config, store *sink.Store) (name, database string) {
	id, _, _ := store.Identity()
	name, database = cfg.Source, id.Database
	if name == "" {
		name = cmp.Or(id.Source, id.Database)
	}
	if database == "" && cfg.DSN != "" {
		if pc, err := pgconn.ParseConfig(cfg.DSN); err == nil {
			database = pc.Database
		}
	}
	return name, database
}

// usersPool connects to the ERP's database as an ordinary client (the DSN
// without its replication parameter), two connections at most: sign-ins
// read one user each.
func usersPool(dsn string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("the API's sign-in: the DSN does not parse") // the error may quote the password
	}
	delete(pc.ConnConfig.RuntimeParams, "replication")
	pc.MaxConns = 2
	pc.ConnConfig.RuntimeParams["application_name"] = "cdcaudit-signin"
	return pgxpool.NewWithConfig(context.Background(), pc)
}

// storeAccessLog records sign-ins in the store's access log.
type storeAccessLog struct{ s *sink.Store }

func (l storeAccessLog) Record(_ context.Context, e auth.AccessEvent) error {
	entry := sink.AccessEntry{Time: e.Time, Action: e.Action, Result: e.Result, Login: e.Login, Via: e.Via, Address: e.Address}
	if p, err := access.ParseRole(e.Principal); err == nil {
		entry.Role = string(p.Role)
	}
	_, err := l.s.AppendAccess(entry)
	return err
}
