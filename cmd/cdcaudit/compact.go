package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sink"
)

const compactAbout = `
Rewrite the store in --data-dir into a fresh file: every record re-encoded
into full compressed blocks (records of a store written before blocks
too), every other bucket copied, and none of the free pages bbolt keeps
for reuse. The hash chain is checked on the way and the new file is
verified before it replaces the store; the old file is kept as
cdcaudit.db.old until then. The records, their ids and their JSON are
unchanged: an export before and after is the same. The indexes are built
again on the next start.

The store must be stopped ('cdcaudit run' holds it exclusively). It needs
free disk space for the new file beside the old one. With --out, the
compacted copy is written there and the store is left as it was.

Exit status: 0 success, 1 failure (the store is left as it was), 2 bad usage.`

const compactExamples = `  cdcaudit compact --data-dir /var/lib/cdcaudit
  cdcaudit compact --data-dir /var/lib/cdcaudit --out /tmp/cdcaudit-compact.db`

func (c *cli) compact(args []string) int {
	fs := c.flagSet("compact", "--data-dir DIR [--out FILE]", compactAbout, compactExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store (of a stopped 'cdcaudit run') [CDCAUDIT_DATA_DIR]"
	out := fs.String("out", "", "write the compacted copy to `file` instead of replacing the store")
	fs.order = []string{"data-dir", "out", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("compact", err)
	}
	if *out != "" {
		if fi, err := os.Stat(*out); err == nil && fi.IsDir() {
			return c.usageErr("compact", fmt.Errorf("--out: %s is a directory", *out))
		}
		abs, err1 := filepath.Abs(*out)
		live, err2 := filepath.Abs(filepath.Join(cfg.DataDir, sink.FileName))
		if err1 == nil && err2 == nil && abs == live {
			return c.usageErr("compact", errors.New("--out: that is the store itself (leave --out out to replace it)"))
		}
	}

	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	var cur atomic.Pointer[sink.CompactProgress]
	cur.Store(&sink.CompactProgress{Phase: "state"})
	stopProgress := c.progress(func() string {
		p := cur.Load()
		switch p.Phase {
		case "records":
			return fmt.Sprintf("compact: re-encoding records… %s", thousands(p.Records))
		case "verify":
			return "compact: verifying the new file…"
		}
		return "compact: copying state…"
	})
	phase := ""
	res, err := sink.Compact(ctx, cfg.DataDir, *out, func(p sink.CompactProgress) {
		cur.Store(&p)
		if p.Phase != phase && !isTerminal(c.stderr) {
			phase = p.Phase
			fmt.Fprintf(c.stderr, "compact: %s…\n", map[string]string{"state": "copying state", "records": "re-encoding records",
				"verify": "verifying the new file"}[p.Phase])
		}
	})
	stopProgress()
	if err != nil {
		return c.fail("compact", err)
	}
	fmt.Fprintf(c.stdout, "compacted %s into %s in %s: %s → %s\n", cfg.DataDir, res.Path, time.Since(start).Round(time.Millisecond),
		humanBytes(res.OldSize), humanBytes(res.NewSize))
	fmt.Fprintf(c.stdout, "blocks:      %s → %s (%s records of the old format re-encoded)\n", thousands(res.BlocksBefore),
		thousands(res.After), thousands(res.LegacyRecords))
	fmt.Fprintf(c.stdout, "events:      %s (the new file verified)\n", thousands(res.Verified.Events))
	fmt.Fprintf(c.stdout, "head hash:   %s\n", res.Verified.HeadHash)
	return exitOK
}
