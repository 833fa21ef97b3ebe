package main

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sink"
)

const verifyAbout = `
Recompute the SHA-256 hash chain of every event in the store in --data-dir
and compare it with what is stored. Any edit of an event, and any event
removed or inserted (anywhere, including at the start or the end), breaks
the chain: verify names the first bad event and exits 1.

On success it prints the number of events and the head hash. Publish the head
hash somewhere cdcaudit cannot write (a ticket, a signed e-mail, a WORM
bucket): a later verify whose chain still passes through that hash proves
nothing before it was rewritten.

The store must not be held by a running 'cdcaudit run' on the same
--data-dir (one process at a time may open it).

Exit status: 0 intact, 1 broken chain or unreadable store, 2 bad usage.`

const verifyExamples = `  cdcaudit verify --data-dir /var/lib/cdcaudit`

func (c *cli) verify(args []string) int {
	fs := c.flagSet("verify", "--data-dir DIR", verifyAbout, verifyExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store (of a stopped 'cdcaudit run') [CDCAUDIT_DATA_DIR]"
	fs.order = []string{"data-dir", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("verify", err)
	}
	ctx, stop := signalContext()
	defer stop()

	store, err := sink.OpenReadOnly(cfg.DataDir)
	if err != nil {
		return c.fail("verify", err)
	}
	defer store.Close()

	_, _, total := store.Head()
	var done atomic.Uint64
	stopProgress := c.progress(func() string {
		d := done.Load()
		if total > 0 {
			return fmt.Sprintf("verifying… %s of %s events (%d%%)", thousands(d), thousands(total), d*100/total)
		}
		return "verifying… " + thousands(d) + " events"
	})
	res, err := store.Verify(ctx, func(n uint64) { done.Store(n) })
	stopProgress()

	color := c.useColor(c.stdout)
	var ve *sink.VerifyError
	switch {
	case errors.As(err, &ve):
		fmt.Fprintf(c.stdout, "%s %s\n", paint(color, ansiRed+ansiBold, "FAIL:"), ve.Error())
		if ve.ID != "" {
			fmt.Fprintf(c.stdout, "first bad event: %s\nreason:          %s\n", ve.ID, ve.Reason)
		}
		return exitFail
	case err != nil:
		return c.fail("verify", err)
	}
	if res.Events == 0 {
		fmt.Fprintf(c.stdout, "%s the store in %s holds no events yet.\n", paint(color, ansiGreen, "OK:"), cfg.DataDir)
		return exitOK
	}
	fmt.Fprintf(c.stdout, "%s %s events verified; the hash chain is intact.\n", paint(color, ansiGreen+ansiBold, "OK:"), thousands(res.Events))
	fmt.Fprintf(c.stdout, "head event:  %s\n", res.HeadID)
	fmt.Fprintf(c.stdout, "head hash:   %s\n", res.HeadHash)
	fmt.Fprintf(c.stdout, "checkpoint:  %s\n", audit.FormatLSN(res.Checkpoint))
	return exitOK
}
