package main

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sink"
)

const reindexAbout = `
Drop the indexes of the store in --data-dir (by record, user, session,
table and op, flag and time) and build them again from the events. Queries
(export's filters, events --record, the API) use them; the events and
their hash chain are not touched.

'cdcaudit run' builds missing indexes by itself (a store written by a
cdcaudit without them), in the background; reindex is for indexes that
must be rebuilt at once, or after a damaged index was reported. Progress
goes to stderr.

The store must not be held by a running 'cdcaudit run' (one process at a
time may open it).`

const reindexExamples = `  cdcaudit reindex --data-dir /var/lib/cdcaudit`

func (c *cli) reindex(args []string) int {
	fs := c.flagSet("reindex", "--data-dir DIR", reindexAbout, reindexExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store (of a stopped 'cdcaudit run') [CDCAUDIT_DATA_DIR]"
	fs.order = []string{"data-dir", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("reindex", err)
	}
	ctx, stop := signalContext()
	defer stop()

	start := time.Now()
	var done, total atomic.Uint64
	stopProgress := c.progress(func() string {
		d, n := done.Load(), total.Load()
		if n > 0 {
			return fmt.Sprintf("indexing… %s of %s records (%d%%)", thousands(d), thousands(n), d*100/n)
		}
		return "indexing… " + thousands(d) + " records"
	})
	err = sink.Reindex(ctx, cfg.DataDir, func(d, n uint64) { done.Store(d); total.Store(n) })
	stopProgress()
	if err != nil {
		return c.fail("reindex", err)
	}
	fmt.Fprintf(c.stderr, "indexed %s records in %s\n", thousands(done.Load()), time.Since(start).Round(time.Millisecond))
	return exitOK
}
