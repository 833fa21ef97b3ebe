package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/backup"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sink"
)

const backupAbout = `
Write a consistent copy of the store in --data-dir to --out: the store as of
one commit, however busy it is. (A cp of the file while 'cdcaudit run'
writes it is not a usable copy.)

While 'cdcaudit run' holds the store, the daemon makes the copy: backup asks
it over the socket data-dir/cdcaudit.sock, which only the store's owner (and
root) may use. Otherwise backup opens the store itself.

The copy is written to a temporary file next to --out, synced, opened and
verified (its whole hash chain), and only then renamed into place, readable
by its owner only. backup prints its size, events, chain head and
checkpoint.

The instance key (data-dir/instance.key) is not part of the copy: it never
changes, so save it once, as a secret. To restore, see docs/operations.md.

Exit status: 0 success, 1 failure (--out is left as it was), 2 bad usage.`

const backupExamples = `  cdcaudit backup --data-dir /var/lib/cdcaudit --out /backup/cdcaudit-$(date +%F).db`

func (c *cli) backup(args []string) int {
	fs := c.flagSet("backup", "--data-dir DIR --out FILE", backupAbout, backupExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store [CDCAUDIT_DATA_DIR]"
	out := fs.String("out", "", "write the copy to `file` (replaced atomically)")
	fs.order = []string{"data-dir", "out", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("backup", err)
	}
	if *out == "" {
		return c.usageErr("backup", errors.New("--out is required: the file to write the copy to"))
	}
	if fi, err := os.Stat(*out); err == nil && fi.IsDir() {
		return c.usageErr("backup", fmt.Errorf("--out: %s is a directory", *out))
	}
	if abs, err := filepath.Abs(*out); err == nil {
		if live, err := filepath.Abs(filepath.Join(cfg.DataDir, sink.FileName)); err == nil && abs == live {
			return c.usageErr("backup", fmt.Errorf("--out: %s is the store itself", *out))
		}
	}

	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	res, size, via, err := writeBackup(ctx, cfg.DataDir, *out)
	if err != nil {
		return c.fail("backup", err)
	}
	fmt.Fprintf(c.stdout, "backup of %s written to %s (%s, made by %s in %s)\n", cfg.DataDir, *out, humanBytes(size), via,
		time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(c.stdout, "events:      %s (the copy verified)\n", thousands(res.Events))
	fmt.Fprintf(c.stdout, "head record: %s\n", res.HeadID)
	fmt.Fprintf(c.stdout, "head hash:   %s\n", res.HeadHash)
	fmt.Fprintf(c.stdout, "checkpoint:  %s\n", audit.FormatLSN(res.Checkpoint))
	return exitOK
}

// writeBackup copies the store to a temporary file beside out, syncs and
// verifies it, and renames it to out.
func writeBackup(ctx context.Context, dataDir, out string) (res sink.VerifyResult, size int64, via string, err error) {
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*") // 0600
	if err != nil {
		return res, 0, "", err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	via = "the running daemon"
	size, err = backup.Fetch(dataDir, tmp)
	if errors.Is(err, backup.ErrNoDaemon) {
		via = "this process"
		size, err = copyStore(dataDir, tmp)
	}
	if err != nil {
		return res, 0, "", err
	}
	if err = tmp.Sync(); err != nil {
		return res, 0, "", err
	}
	if err = tmp.Close(); err != nil {
		return res, 0, "", err
	}
	copied, err := sink.OpenFile(tmp.Name())
	if err != nil {
		return res, 0, "", fmt.Errorf("the copy does not open: %w", err)
	}
	res, err = copied.Verify(ctx, nil)
	copied.Close()
	if err != nil {
		return res, 0, "", fmt.Errorf("the copy does not verify: %w", err)
	}
	if err = os.Rename(tmp.Name(), out); err != nil {
		return res, 0, "", err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return res, size, via, nil
}

// copyStore copies a store no daemon holds.
func copyStore(dataDir string, w io.Writer) (int64, error) {
	s, err := sink.OpenReadOnly(dataDir)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	return s.WriteCopy(w, func(int64) error { return nil })
}
