package anchor

import (
	"fmt"
	"log/slog"
	"os"
)

// Publisher signs anchors and publishes them: always as a log line (logs
// shipped off the host keep them), and appended to File when set (put it
// on storage the store's host cannot rewrite: another volume, a mount of
// a WORM bucket).
type Publisher struct {
	Log  *slog.Logger
	Key  Signer
	File string
}

// Publish signs a and publishes it with the log message msg.
func (p *Publisher) Publish(msg string, a Anchor) error {
	tok := Sign(a, p.Key)
	p.Log.Info(msg, "events", a.Events, "head_event", a.HeadID, "head_hash", a.HeadHash,
		"checkpoint", a.Checkpoint, "anchor", tok)
	if p.File == "" {
		return nil
	}
	f, err := os.OpenFile(p.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("anchor file: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("anchor file %s: %w", p.File, err)
	}
	return nil
}
