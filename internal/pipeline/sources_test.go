package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Sources run beside the stream: what one stores through its StateSink is
// durable when the call returns, also its last write after the pipeline
// was told to stop; a source that fails is logged and stops nothing.
func TestSources(t *testing.T) {
	dsn, _ := newDB(t)
	dir := t.TempDir()
	store, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stored := make(chan error, 1)
	var mu sync.Mutex
	var durable bool
	writer := func(ctx context.Context, state StateSink) error {
		err := state(ctx, []sink.StateRecord{{Bucket: "test", Key: "first", Value: []byte("1")}})
		if err == nil {
			// Durable now: readable from the store.
			store.LoadState("test", func(k, v []byte) error {
				mu.Lock()
				durable = durable || string(k) == "first"
				mu.Unlock()
				return nil
			})
		}
		stored <- err
		<-ctx.Done()
		return state(context.Background(), []sink.StateRecord{{Bucket: "test", Key: "last", Value: []byte("2")}})
	}
	failing := func(context.Context, StateSink) error { return errors.New("the watcher cannot read its directory") }
	var log lockedLog
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Replication: replication.Config{DSN: dsn, Slot: "sources", Publication: "sources"},
			Store: store, Logger: slog.New(slog.NewTextHandler(&log, nil)), Profile: "none", Snapshot: "never",
			Sources: []Source{writer, failing}})
	}()
	select {
	case err := <-stored:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-done:
		t.Fatalf("the pipeline stopped: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the source's write did not return")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	mu.Lock()
	if !durable {
		t.Error("the record was not in the store when the StateSink returned")
	}
	mu.Unlock()
	var keys []string
	store.LoadState("test", func(k, v []byte) error { keys = append(keys, string(k)); return nil })
	if strings.Join(keys, ",") != "first,last" {
		t.Errorf("stored %v, want first and last (written while stopping)", keys)
	}
	if !log.has("the watcher cannot read its directory") {
		t.Error("the failing source is not logged")
	}
}

// The users' addresses are read at start through their contacts, unless
// the address column is redacted: then they are not kept at all.
func TestAddressesSeededUnlessRedacted(t *testing.T) {
	for _, redacted := range []bool{false, true} {
		dsn, conn := newDB(t)
		exec(t, conn, `CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar, email varchar)`)
		exec(t, conn, `CREATE TABLE res_users (id serial PRIMARY KEY, login varchar NOT NULL, password varchar, partner_id int,
			create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
		exec(t, conn, `CREATE TABLE res_users_log (id serial PRIMARY KEY, create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
		exec(t, conn, `INSERT INTO res_partner (id, name, email) VALUES (7, 'Alice', 'alice.martin@mail.example'), (8, 'Bob', NULL)`)
		exec(t, conn, `INSERT INTO res_users (id, login, partner_id) VALUES (6, 'alice', 7), (7, 'bob', 8)`)
		slot := fmt.Sprintf("addresses_%v", redacted)
		cfg := Config{Replication: replication.Config{DSN: dsn, Slot: slot, Publication: slot},
			DataDir: t.TempDir(), Profile: "odoo", Snapshot: "never"}
		if redacted {
			rule, err := profile.ParseColumnRule("public.res_partner.email")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Redact = []profile.ColumnRule{rule}
		}
		runImages(t, cfg, conn, currentLSN(t, conn))
		st, err := sink.OpenReadOnly(cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := alerts.Addresses(st.LoadState)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := map[int64]string{6: "alice.martin@mail.example"}
		if redacted {
			want = map[int64]string{}
		}
		if !maps.Equal(addrs, want) {
			t.Errorf("redacted %v: addresses %v, want %v", redacted, addrs, want)
		}
	}
}
