package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/manifest"
	"github.com/cdcaudit/cdcaudit/pgsink"
)

const verifyAbout = `
Recompute the SHA-256 hash chain of every record in the store in --data-dir
and compare it with what is stored. Any edit of an event, and any event
removed or inserted (anywhere, including at the start or the end), breaks
the chain: verify names the first bad event and exits 1.

The chain begins with a genesis record, and records what the trail is
missing: a gap accepted with --accept-gap, a replication slot lost while
running. verify lists them and exits 3: the chain is intact, the trail is
not complete.

Retention (the retention key of 'cdcaudit run') removes expired events in
batches; each batch leaves a cut record in the chain that says which records
it removed, which it kept between them and which chain value the trail goes
on from. verify checks every cut against the records around and inside its
range, and says it verified the events "from cut …": a removal that no cut
describes exactly still breaks the chain.

A store rewritten as a whole (every hash recomputed), cut short with its
meta fixed, or wiped, is consistent in itself: only something kept outside
the store can contradict it. 'cdcaudit run' signs its chain head with the
instance key (data-dir/instance.key) at its first commit, every 10 minutes
and when it stops, and logs it (and appends it to --anchor-file). With
--anchor, verify checks the store against every anchor of its chain in a
file of anchors or a log file holding anchor lines: each anchored record
must be in the chain with the anchored hash, and the checkpoint must not be
behind an anchored one.

While 'cdcaudit run' holds the store, the daemon verifies it (over
data-dir/cdcaudit.sock, which only the store's owner may use) and this
command reports as it does on a stopped store. The daemon reads its whole
chain in one read transaction: it never blocks the daemon's writes, but
the store file grows by about what is written meanwhile.

With --export FILE --manifest M, verify checks an export file instead,
offline (no store needed): the manifest's Ed25519 signature, the key that
made it against a trusted one — the instance key of --data-dir, or
--public-key as you got it from the instance — the file's size and SHA-256,
and, reading the file once, its events: the count, the first and last id,
the chain values of the first and last event, their commit order, and each
event's hash recomputed from its content (JSONL: the line; CSV and XLSX:
the record rebuilt from the row's values; an XLSX row holding a value cut
to fit a cell cannot be recomputed, and is counted as such: the file's
SHA-256 still covers it). Without a trusted key the manifest is only
consistent with itself: anyone can sign with a key of their own.

With --postgres DSN, verify checks the audit table a PostgreSQL audit
database sink wrote (sink_postgres_dsn; --table, default cdcaudit_events):
every row's hash is recomputed from its record column (the record exactly
as exported), its id, hash and prev_hash columns must agree with it, and
each row must link to the row before it in id order. Each source's chain
(instances sharing the table, each with its own source) is checked on its
own and reported on a line of its own; --source NAME checks one. It lists
the gaps and lost slots the chains record.

Exit status: 0 intact, 1 broken chain, an anchor contradicted, or an
unreadable store (with --export: the file is not what its manifest says),
2 bad usage, 3 intact but events are missing (gaps) (with --export: the
file matches its manifest, but no trusted key was given).`

const verifyExamples = `  cdcaudit verify --data-dir /var/lib/cdcaudit
  cdcaudit verify --postgres postgres://auditor@audit-db/audit --table cdcaudit_events
  cdcaudit verify --postgres postgres://auditor@audit-db/audit --source erp_a
  cdcaudit verify --data-dir /var/lib/cdcaudit --anchor /mnt/worm/cdcaudit-anchors
  cdcaudit verify --data-dir /restore/cdcaudit --anchor /var/log/cdcaudit.log
  cdcaudit verify --export november.csv --manifest november.manifest.json --data-dir /var/lib/cdcaudit
  cdcaudit verify --export november.csv --manifest november.manifest.json --public-key ed25519:q8k…`

// exitIncomplete: the chain is intact but records gaps.
const exitIncomplete = 3

func (c *cli) verify(args []string) int {
	fs := c.flagSet("verify", "--data-dir DIR [--anchor FILE] | --export FILE --manifest M [--data-dir DIR | --public-key KEY]", verifyAbout, verifyExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store; with --export, of the instance whose key is trusted [CDCAUDIT_DATA_DIR]"
	var anchorFiles listFlag
	fs.Var(&anchorFiles, "anchor", "check the store against the chain anchors in `file` (an --anchor-file, or a log of 'cdcaudit run'); repeat for several")
	exportFile := fs.String("export", "", "check the export `file` against its manifest (--manifest) instead of a store")
	manifestFile := fs.String("manifest", "", "the export's manifest `file` ('cdcaudit export --manifest')")
	publicKey := fs.String("public-key", "", "with --export: the instance's public `key` (ed25519:…, or a file holding it), trusted instead of --data-dir's")
	postgres := fs.String("postgres", "", "check the audit table of the PostgreSQL audit database at `DSN` (sink_postgres_dsn) instead of a store")
	table := fs.String("table", pgsink.DefaultTable, "with --postgres: the audit `table` (sink_postgres_table)")
	source := fs.String("source", "", "with --postgres: verify only the chain of this source `name` (default: every source in the table)")
	fs.order = []string{"data-dir", "anchor", "export", "manifest", "public-key", "postgres", "table", "source", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	if *postgres != "" {
		return c.verifyPostgres(*postgres, *table, *source)
	}
	if *source != "" {
		return c.usageErr("verify", errors.New("--source goes with --postgres"))
	}
	if *exportFile != "" || *manifestFile != "" || *publicKey != "" {
		return c.verifyExport(set, *exportFile, *manifestFile, *publicKey, len(anchorFiles) > 0)
	}
	cfg, err := set.Require(config.KeyDataDir).Load(c.env)
	if err != nil {
		return c.usageErr("verify", err)
	}
	var anchors []anchor.Anchor
	for _, name := range anchorFiles {
		found, err := readAnchors(name)
		if err != nil {
			return c.fail("verify", err)
		}
		anchors = append(anchors, found...)
	}
	ctx, stop := signalContext()
	defer stop()

	store, err := openTrail(cfg.DataDir)
	if err != nil {
		return c.fail("verify", err)
	}
	defer store.Close()

	var heads []string // the records the anchors name: looked at in passing
	for _, a := range anchors {
		heads = append(heads, a.HeadID)
	}
	slices.Sort(heads)
	var done, total atomic.Uint64
	stopProgress := c.progress(func() string {
		d, t := done.Load(), total.Load()
		if t > 0 {
			return fmt.Sprintf("verifying… %s of %s events (%d%%)", thousands(d), thousands(t), d*100/t)
		}
		return "verifying… " + thousands(d) + " events"
	})
	rep, err := store.CheckChain(ctx, slices.Compact(heads), func(d, t uint64) { done.Store(d); total.Store(t) })
	stopProgress()
	res, genesis := rep.Result, rep.Genesis

	color := c.useColor(c.stdout)
	failed := func(msg string) int {
		fmt.Fprintf(c.stdout, "%s %s\n", paint(color, ansiRed+ansiBold, "FAIL:"), msg)
		return exitFail
	}
	switch ve := rep.Broken; {
	case err != nil:
		return c.fail("verify", err)
	case ve != nil && rep.BrokenIn == "chain":
		code := failed(ve.Error())
		if ve.ID != "" {
			fmt.Fprintf(c.stdout, "first bad event: %s\nreason:          %s\n", ve.ID, ve.Reason)
		}
		return code
	case ve != nil:
		return failed(ve.Error())
	}
	accessEntries := rep.Access
	var newest anchor.Anchor
	if len(anchorFiles) > 0 {
		own := ""
		if k, err := instancekey.Load(cfg.DataDir); err == nil {
			own = k.Public()
		} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) {
			return c.fail("verify", err)
		} else {
			// A copy of the store without its key (an auditor's): say what is
			// then left unchecked rather than skip it silently.
			fmt.Fprintf(c.stderr, "note: %v: the anchors' signatures are checked, but not that this data directory's instance signed them\n", err)
		}
		newest, err = anchor.Check(anchors, anchor.Chain{
			Genesis: genesis.String(), Key: own, Checkpoint: res.Checkpoint,
			Lookup: func(id string) (string, bool) {
				if p := rep.Points[id]; p.Found {
					return p.Hash.String(), true
				}
				return "", false
			},
			Pruned: func(id string) (string, bool) { p := rep.Points[id]; return p.Cut, p.Cut != "" },
		})
		if err != nil {
			return failed("the store contradicts its anchors: " + err.Error())
		}
	}

	fromCut := ""
	if n := len(res.Cuts); n > 0 {
		// The trail is whole after the last range retention cut.
		last := res.Cuts[n-1]
		fromCut = " from cut " + last.ID + " made " + last.MadeAt.UTC().Format("2006-01-02 15:04:05 MST")
	}
	switch {
	case len(res.Marks) > 0:
		fmt.Fprintf(c.stdout, "%s %s events verified%s; the hash chain is intact, but it records %d place(s) where events are missing from the trail (below).\n",
			paint(color, ansiRed+ansiBold, "INCOMPLETE:"), thousands(res.Events), fromCut, len(res.Marks))
	case res.Events == 0 && res.Snapshots == 0:
		fmt.Fprintf(c.stdout, "%s the store in %s holds no events yet; its chain is intact.\n", paint(color, ansiGreen, "OK:"), cfg.DataDir)
	default:
		fmt.Fprintf(c.stdout, "%s %s events verified%s; the hash chain is intact.\n", paint(color, ansiGreen+ansiBold, "OK:"), thousands(res.Events), fromCut)
	}
	if len(res.Cuts) > 0 {
		last := res.Cuts[len(res.Cuts)-1]
		fmt.Fprintf(c.stdout, "retention:   %s records removed under %d cut(s), each verified; the last: %s … %s (%s)\n",
			thousands(res.Pruned), len(res.Cuts), last.From, last.To, last.Reason)
	}
	if res.Snapshots > 0 {
		fmt.Fprintf(c.stdout, "snapshots:   %s records verified too (rows as table snapshots read them, not counted as events)\n", thousands(res.Snapshots))
	}
	fmt.Fprintf(c.stdout, "genesis:     %s\n", res.Genesis)
	fmt.Fprintf(c.stdout, "head record: %s\n", res.HeadID)
	fmt.Fprintf(c.stdout, "head hash:   %s\n", res.HeadHash)
	fmt.Fprintf(c.stdout, "checkpoint:  %s\n", audit.FormatLSN(res.Checkpoint))
	if accessEntries > 0 {
		fmt.Fprintf(c.stdout, "access log:  %s entries (sign-ins, exports, admin actions) verified; its chain is intact\n", thousands(accessEntries))
	}
	if len(anchorFiles) > 0 {
		fmt.Fprintf(c.stdout, "anchors:     %d of this chain agree with the store; the newest, of %s, anchors %s events up to %s\n",
			len(anchor.Mine(anchors, genesis.String())), newest.Time.UTC().Format("2006-01-02 15:04:05 MST"), thousands(newest.Events), newest.HeadID)
	}
	if len(res.Marks) == 0 {
		return exitOK
	}
	fmt.Fprintf(c.stdout, "missing events:\n")
	for _, m := range res.Marks {
		fmt.Fprintf(c.stdout, "  %-9s %s\n", m.Op, m.Record)
	}
	return exitIncomplete
}

// readAnchors reads the anchors of a file of anchors or a log.
func readAnchors(name string) ([]anchor.Anchor, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("--anchor: %w", err)
	}
	defer f.Close()
	a, err := anchor.Find(f)
	if err != nil {
		return nil, fmt.Errorf("--anchor %s: %w", name, err)
	}
	if len(a) == 0 {
		return nil, fmt.Errorf("--anchor %s: the file holds no cdcaudit anchor", name)
	}
	return a, nil
}

// verifyExport is verify --export: an export file against its manifest.
func (c *cli) verifyExport(set *config.Set, file, manifestFile, publicKey string, anchors bool) int {
	switch {
	case file == "" || manifestFile == "":
		return c.usageErr("verify", errors.New("--export FILE and --manifest M go together"))
	case anchors:
		return c.usageErr("verify", errors.New("--anchor checks a store, --export a file: give one"))
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("verify", err)
	}
	trusted, from := "", ""
	switch {
	case publicKey != "":
		if trusted, err = readPublicKey(publicKey); err != nil {
			return c.usageErr("verify", err)
		}
		from = "the key given with --public-key"
	case cfg.DataDir != "":
		k, err := instancekey.Load(cfg.DataDir)
		if err != nil {
			return c.fail("verify", fmt.Errorf("the instance key of %s, to check the manifest's key against: %w", cfg.DataDir, err))
		}
		trusted, from = k.Public(), "the instance key of "+cfg.DataDir
	}
	b, err := readManifest(manifestFile)
	if err != nil {
		return c.fail("verify", err)
	}
	m, err := manifest.Parse(b)
	if err != nil {
		return c.fail("verify", fmt.Errorf("%s: %w", manifestFile, err))
	}
	res, err := manifest.Check(file, m, trusted)
	if err != nil {
		return c.fail("verify", err)
	}

	color := c.useColor(c.stdout)
	if !res.OK() {
		fmt.Fprintf(c.stdout, "%s %s is not the export its manifest %s describes:\n", paint(color, ansiRed+ansiBold, "FAIL:"), file, manifestFile)
		for _, p := range res.Problems {
			fmt.Fprintf(c.stdout, "  - %s\n", p)
		}
		return exitFail
	}
	code := exitOK
	if res.KeyTrusted {
		fmt.Fprintf(c.stdout, "%s %s is complete and unaltered, and from this instance: the %s events its manifest lists, signed by %s.\n",
			paint(color, ansiGreen+ansiBold, "OK:"), file, thousands(res.Events), from)
	} else {
		code = exitIncomplete
		fmt.Fprintf(c.stdout, "%s %s matches its manifest (%s events), but the manifest's key was checked only against itself: anyone can sign with a key of their own. Give --data-dir (the instance's) or --public-key (as you got it from the instance) to prove the file is from the instance.\n",
			paint(color, ansiYellow+ansiBold, "UNPROVEN:"), file, thousands(res.Events))
	}
	fmt.Fprintf(c.stdout, "key:         %s (%s)\n", m.Key, instancekey.Fingerprint(m.Key))
	fmt.Fprintf(c.stdout, "format:      %s, %s bytes, SHA-256 %s\n", m.Format, thousands(uint64(m.Bytes)), m.SHA256)
	fmt.Fprintf(c.stdout, "filter:      %s\n", m.Filter)
	fmt.Fprintf(c.stdout, "made:        %s\n", m.Made)
	if m.Events > 0 {
		fmt.Fprintf(c.stdout, "events:      %s … %s\n", m.FirstID, m.LastID)
		fmt.Fprintf(c.stdout, "chain:       the first event's prev_hash %s, the last one's hash %s\n", m.FirstPrevHash, m.LastHash)
	}
	switch {
	case res.Uncheckable > 0:
		fmt.Fprintf(c.stdout, "rechecked:   %s events' hashes recomputed from the file; %s rows hold a value cut to fit a cell: their hashes cannot be recomputed (the SHA-256 covers them; the JSONL or CSV export holds them whole)\n",
			thousands(res.Rechecked), thousands(res.Uncheckable))
	case res.Events > 0:
		fmt.Fprintf(c.stdout, "rechecked:   every event's hash recomputed from the file\n")
	}
	return code
}

// readPublicKey reads --public-key: a key (ed25519:…), or a file holding
// one.
func readPublicKey(s string) (string, error) {
	if !strings.HasPrefix(s, "ed25519:") {
		b, err := os.ReadFile(s)
		if err != nil {
			return "", fmt.Errorf("--public-key: %q is neither a public key (ed25519:…) nor a file holding one", s)
		}
		s = strings.TrimSpace(string(b))
	}
	if _, err := instancekey.ParsePublic(s); err != nil {
		return "", fmt.Errorf("--public-key: %v", err)
	}
	return s, nil
}

// readManifest reads a manifest file, at most manifest.MaxSize bytes of it
// (and one more, for Parse to refuse).
func readManifest(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("--manifest: %w", err)
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, manifest.MaxSize+1))
}

// verifyPostgres checks the audit table of a PostgreSQL audit database:
// each source's chain on its own, one line each.
func (c *cli) verifyPostgres(dsn, table, source string) int {
	ctx, stop := signalContext()
	defer stop()
	results, err := pgsink.Verify(ctx, dsn, table, source)
	if err != nil {
		return c.fail("verify", err)
	}
	color := c.useColor(c.stdout)
	if len(results) == 0 {
		fmt.Fprintf(c.stdout, "%s: table %s is empty\n", config.DescribeDSN(dsn), table)
		return exitOK
	}
	code := exitOK
	for _, res := range results {
		switch {
		case res.Err != nil:
			fmt.Fprintf(c.stdout, "%s source %s in %s: %v\n", paint(color, ansiRed+ansiBold, "FAIL:"), res.Source, config.DescribeDSN(dsn), res.Err)
			code = exitFail
			continue
		case res.Rows == 0:
			fmt.Fprintf(c.stdout, "%s: table %s holds no rows of source %s\n", config.DescribeDSN(dsn), table, res.Source)
			continue
		}
		fmt.Fprintf(c.stdout, "%s source %s: %s rows of %s verified (%s … %s)", paint(color, ansiGreen+ansiBold, "OK:"), res.Source, thousands(res.Rows), table, res.First, res.Last)
		if res.Breaks > 0 {
			fmt.Fprintf(c.stdout, ", across %d retention cuts", res.Breaks)
		}
		fmt.Fprintln(c.stdout)
		for _, m := range res.Marks {
			fmt.Fprintln(c.stdout, "  missing from the trail:", m)
		}
		if len(res.Marks) > 0 && code == exitOK {
			code = exitIncomplete
		}
	}
	return code
}
