package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/backup"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// chainServices starts what guards the store from outside: the publisher of
// signed chain anchors (with the instance key, created on first start) and
// the socket that serves consistent copies to `cdcaudit backup` and the
// store's reads to export, events, sessions and verify.
// The socket's server is returned too: it answers the daemon's other
// requests (nil when it could not be started).
func chainServices(cfg Config, store *sink.Store, log *slog.Logger) (*anchor.Publisher, *backup.Server, func(), error) {
	if err := anchor.ValidateFile(cfg.AnchorFile, cfg.DataDir); err != nil {
		return nil, nil, nil, fmt.Errorf("anchor file: %w", err)
	}
	key, err := instancekey.LoadOrCreate(cfg.DataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	anchors := &anchor.Publisher{Log: log, Key: key, File: cfg.AnchorFile}
	if cfg.AnchorSyslog != "" {
		if anchors.Syslog, err = anchor.DialSyslog(cfg.AnchorSyslog); err != nil {
			return nil, nil, nil, err
		}
	}
	copies, err := backup.Serve(cfg.DataDir, store, log)
	if err != nil {
		log.Warn("cdcaudit backup, export, events, sessions and verify cannot reach this daemon: stop it to use them", "err", err)
	} else {
		copies.ServeReads(store, cfg.ReadPace) // export, events, sessions, verify
	}
	return anchors, copies, func() {
		if copies != nil {
			copies.Close()
		}
		if anchors.Syslog != nil {
			anchors.Syslog.Close()
		}
	}, nil
}

// recordGap adds a gap record to the chain, in the same store transaction
// as the new checkpoint, when streaming starts past the store's checkpoint:
// Prepare allows that only with --accept-gap.
func recordGap(ctx context.Context, store *sink.Store, w submitter, checkpoint, start uint64, log *slog.Logger) error {
	if checkpoint == 0 || start <= checkpoint {
		return nil
	}
	gap := store.ChainRecord(sink.MarkGap, start, time.Now(),
		sink.LSNField("from", checkpoint), sink.LSNField("to", start), sink.StringField("accepted_by", "--accept-gap"))
	if err := w.Submit(ctx, sink.Batch{Events: []sink.Encoded{gap}, Checkpoint: start}); err != nil {
		return err
	}
	log.Error("GAP RECORDED IN THE CHAIN: changes committed between the checkpoint and the slot's position are lost",
		"from", audit.FormatLSN(checkpoint), "to", audit.FormatLSN(start))
	return nil
}

// recordSlotLoss adds a slot_lost record to the chain when the stream ended
// because the slot is gone (dropped, or invalidated: wal_status lost):
// whatever happens next, the trail says that events after the checkpoint
// were never received.
func recordSlotLoss(cfg Config, store *sink.Store, w submitter, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	slot, err := replication.InspectSlot(ctx, cfg.Replication)
	if err != nil || (slot.Exists && slot.WALStatus != "lost") {
		return
	}
	if err := w.Flush(ctx); err != nil {
		return
	}
	status := "dropped"
	if slot.Exists {
		status = "invalidated"
	}
	cp := store.Checkpoint()
	rec := store.ChainRecord(sink.MarkSlotLost, cp, time.Now(), sink.LSNField("checkpoint", cp),
		sink.StringField("slot", cfg.Replication.Slot), sink.StringField("slot_status", status))
	if err := w.Submit(ctx, sink.Batch{Events: []sink.Encoded{rec}}); err == nil {
		err = w.Flush(ctx)
	}
	if err != nil {
		log.Error("cannot record the lost slot in the chain", "err", err)
		return
	}
	log.Error("SLOT LOSS RECORDED IN THE CHAIN: changes after the checkpoint were not captured", "checkpoint", audit.FormatLSN(cp), "slot_status", status)
}

// anchorEvery is how often the chain head is anchored while events flow.
const anchorEvery = 10 * time.Minute

// publishHead signs the store's chain head with the instance key and
// publishes it (log line, anchor file): a rewrite of the chain, which
// verify alone cannot see, contradicts anchors kept elsewhere.
func publishHead(p *anchor.Publisher, store *sink.Store, msg string) {
	key, hash, n := store.Head()
	id := ""
	if lsn, ord, ok := audit.SplitKey(key); ok {
		id = audit.FormatID(lsn, ord)
	}
	g, _ := store.GenesisHash()
	a := anchor.Anchor{Time: time.Now().UTC(), Genesis: g.String(), HeadID: id, HeadHash: hash.String(), Events: n,
		Checkpoint: audit.FormatLSN(store.Checkpoint())}
	if err := p.Publish(msg, a); err != nil {
		p.Log.Error("cannot publish the chain anchor", "err", err)
	}
}
