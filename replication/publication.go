package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Two publications, so that cdcaudit never makes an application statement
// fail. PostgreSQL refuses an UPDATE or DELETE on a table without a usable
// replica identity as soon as any publication that includes the table
// publishes updates or deletes; it never refuses an INSERT or a TRUNCATE.
//
//   - <publication> is FOR ALL TABLES and publishes only inserts and
//     truncates: every table, also one created later (while cdcaudit runs or
//     after it stopped), is captured from its first row, and no table's
//     writes can fail because of it.
//   - <publication>_changes publishes updates and deletes, FOR exactly the
//     tables in scope (--tables/--exclude) whose replica identity is usable
//     now: a primary key with REPLICA IDENTITY DEFAULT, USING INDEX, or FULL.
//     cdcaudit keeps that list current: at start, when the stream first
//     describes a table it has not looked at, and by a catalog poll every
//     CatalogInterval (tables created, replica identities changed). A table
//     whose identity becomes unusable leaves the list at the next poll; one
//     that becomes usable while cdcaudit runs joins it at its first change
//     the stream describes, or once syncs a poll interval apart found it so
//     without a break (a table created, then at once set to REPLICA
//     IDENTITY NOTHING, is never listed in between).
//
// Table filters are applied to the stream (see inScope), not to the
// insert publication, so a table created later whose name matches is
// captured from its first insert.

// publishInserts and publishChanges are the operations of the two publications.
const (
	publishInserts = "insert, truncate"
	publishChanges = "update, delete"
)

// PublishChanges is Coverage.Ops of the coverage of updates and deletes.
const PublishChanges = publishChanges

// QualifiedName is the name Coverage.Table gives a table.
func QualifiedName(schema, table string) string { return qualified(schema, table) }

// changesSuffix names the second publication: <publication>_changes.
const changesSuffix = "_changes"

// publication is pg_publication's row for one publication.
type publication struct {
	exists, allTables                bool
	insert, update, delete, truncate bool
}

func readPublication(ctx context.Context, conn *pgx.Conn, name string) (publication, error) {
	p := publication{exists: true}
	err := conn.QueryRow(ctx, `SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1`, name).
		Scan(&p.allTables, &p.insert, &p.update, &p.delete, &p.truncate)
	if errors.Is(err, pgx.ErrNoRows) {
		return publication{}, nil
	}
	if err != nil {
		return p, fmt.Errorf("read publication %q: %w", name, err)
	}
	return p, nil
}

// publishes is the publication's publish option, as it would be written.
func (p publication) publishes() string {
	var ops []string
	for _, op := range []struct {
		on   bool
		name string
	}{{p.insert, "insert"}, {p.update, "update"}, {p.delete, "delete"}, {p.truncate, "truncate"}} {
		if op.on {
			ops = append(ops, op.name)
		}
	}
	return strings.Join(ops, ", ")
}

// Coverage says from when on an operation of a table is captured, or from
// when on it no longer is. Table "*" stands for every table in scope.
type Coverage struct {
	Table    string    // schema.table, or "*"
	Ops      string    // "insert, truncate" or "update, delete"
	Captured bool      // false: no longer captured from LSN on
	LSN      uint64    // changes committed after this LSN are (not) captured
	Time     time.Time // the server's clock at LSN
	Reason   string    // why not, for Captured false
}

// ensurePublications creates or migrates both publications and sets the
// changes publication's table list. It returns the names of the
// publications it created, so that a failure before the slot exists can
// drop them again.
func ensurePublications(ctx context.Context, conn *pgx.Conn, cfg *Config, k *keeper) (created []string, err error) {
	log := cfg.Logger.With(cfg.server(), "publication", cfg.Publication)
	main, err := readPublication(ctx, conn, cfg.Publication)
	if err != nil {
		return nil, fmt.Errorf("replication: %w", err)
	}
	create := "CREATE PUBLICATION " + cfg.pubIdent() + " FOR ALL TABLES WITH (publish = '" + publishInserts + "')"
	switch {
	case !main.exists:
		if _, err := conn.Exec(ctx, create); err != nil {
			return nil, publicationError(cfg, err, create)
		}
		created = append(created, cfg.Publication)
		log.Info("publication created FOR ALL TABLES, publishing inserts and truncates")
	case !main.allTables:
		// Made by an older cdcaudit for --tables/--exclude (FOR TABLE, every
		// operation), or by hand.
		if err := recreate(ctx, conn, cfg.pubIdent(), create); err != nil {
			return nil, publicationError(cfg, err, create)
		}
		log.Warn("publication was FOR TABLE; replaced by one FOR ALL TABLES publishing inserts and truncates (table filters now apply to the stream)", "was_publishing", main.publishes())
	case main.publishes() != publishInserts:
		sql := "ALTER PUBLICATION " + cfg.pubIdent() + " SET (publish = '" + publishInserts + "')"
		if _, err := conn.Exec(ctx, sql); err != nil {
			return nil, publicationError(cfg, err, sql)
		}
		log.Warn("publication migrated: it publishes inserts and truncates only; updates and deletes come from "+cfg.changesPub()+
			", which lists only tables with a usable replica identity, so that no application UPDATE or DELETE can fail", "was_publishing", main.publishes())
	}
	if !main.exists || !main.allTables || main.publishes() != publishInserts {
		lsn, at, err := walNow(ctx, conn)
		if err != nil {
			return created, err
		}
		k.cfg.reportCoverage(Coverage{Table: "*", Ops: publishInserts, Captured: true, LSN: lsn, Time: at})
	}

	changes, err := readPublication(ctx, conn, cfg.changesPub())
	if err != nil {
		return created, fmt.Errorf("replication: %w", err)
	}
	createChanges := "CREATE PUBLICATION " + cfg.changesIdent() + " WITH (publish = '" + publishChanges + "')"
	switch {
	case !changes.exists:
		if _, err := conn.Exec(ctx, createChanges); err != nil {
			return created, publicationError(cfg, err, createChanges)
		}
		created = append(created, cfg.changesPub())
	case changes.allTables:
		// FOR ALL TABLES publishing updates would break the writes this
		// publication exists to protect.
		if err := recreate(ctx, conn, cfg.changesIdent(), createChanges); err != nil {
			return created, publicationError(cfg, err, createChanges)
		}
		log.Warn("publication " + cfg.changesPub() + " was FOR ALL TABLES; replaced by one listing only tables with a usable replica identity")
	case changes.publishes() != publishChanges:
		sql := "ALTER PUBLICATION " + cfg.changesIdent() + " SET (publish = '" + publishChanges + "')"
		if _, err := conn.Exec(ctx, sql); err != nil {
			return created, publicationError(cfg, err, sql)
		}
	}
	return created, k.sync(ctx, conn)
}

// recreate drops a publication and creates it anew in one transaction, so
// that no WAL is written while it does not exist (pgoutput would fail on it).
func recreate(ctx context.Context, conn *pgx.Conn, ident, create string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DROP PUBLICATION "+ident); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, create)
		return err
	})
}

// dropPublications drops publications this run created, when it failed
// before a slot could use them.
func dropPublications(conn *pgx.Conn, names []string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	for _, name := range names {
		if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
			log.Warn("cannot drop the publication created by this failed start", "publication", name, "err", err)
		}
	}
}

func publicationError(cfg *Config, err error, sql string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fatalf(err, "cannot create or change publication %q with this role: run as a superuser, or have a superuser run: %s", cfg.Publication, sql)
	}
	return fmt.Errorf("replication: %s: %w", firstWords(sql, 4), err)
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

// walNow is the server's WAL position and clock, for coverage records.
func walNow(ctx context.Context, conn *pgx.Conn) (uint64, time.Time, error) {
	var s string
	var at time.Time
	if err := conn.QueryRow(ctx, "SELECT ("+currentLSN+")::text, clock_timestamp()").Scan(&s, &at); err != nil {
		return 0, at, fmt.Errorf("replication: read WAL position: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	return uint64(lsn), at, err
}

// keeper keeps the changes publication listing exactly the tables in scope
// with a usable replica identity. It remembers what it decided per table
// (by OID) so that it logs each change of coverage once.
type keeper struct {
	cfg    *Config
	log    *slog.Logger
	known  map[uint32]tableCoverage
	synced bool // a sync has completed: tables usable since are new
	// described reports whether the stream has described a relation (nil:
	// none has been): a new table in use is listed at once.
	described func(oid uint32) bool
	quiet     bool   // the first sync of a stream: Prepare has just logged it all
	denied    string // tables last reported as not addable for lack of privilege
}

type tableCoverage struct {
	name   string
	listed bool
	reason string // why not listed
	// usableSince: when a sync first found its replica identity usable
	// without a break since (zero: not usable now)
	usableSince time.Time
}

func newKeeper(cfg *Config) *keeper {
	return &keeper{cfg: cfg, log: cfg.Logger.With(cfg.server(), "publication", cfg.changesPub()), known: map[uint32]tableCoverage{}}
}

// reportCoverage hands a coverage change to the caller, if it listens.
func (c *Config) reportCoverage(cov Coverage) {
	if c.OnCoverage != nil {
		c.OnCoverage(cov)
	}
}

// covers: the keeper has decided about the relation (listed or not).
func (k *keeper) covers(oid uint32) bool {
	_, ok := k.known[oid]
	return ok
}

// sync reads the catalog and changes the publication's list when it
// differs from what it should be: one transaction that first drops the
// tables whose replica identity became unusable, then adds the new ones.
func (k *keeper) sync(ctx context.Context, conn *pgx.Conn) error {
	rels, err := listTables(ctx, conn)
	if err != nil {
		return fmt.Errorf("replication: list tables: %w", err)
	}
	have, err := publicationTables(ctx, conn, k.cfg.changesPub())
	if err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	known := make(map[uint32]tableCoverage, len(rels))
	now := time.Now()
	var add, drop []string
	var uncovered []string
	for _, r := range rels {
		if r.kind != 'r' || !r.publishable(true) || !r.inScope(k.cfg) {
			continue
		}
		name := qualified(r.schema, r.name)
		problem := r.identityProblem()
		c := tableCoverage{name: name, listed: problem == "", reason: problem}
		if problem == "" {
			c.usableSince = now
			if old, seen := k.known[r.oid]; seen && !old.usableSince.IsZero() {
				c.usableSince = old.usableSince
			} else if !k.synced {
				// There when the keeper started: not new (one that was
				// busy is listed at the next sync).
				c.usableSince = now.Add(-k.cfg.CatalogInterval)
			}
		}
		switch {
		case problem == "" && !have[r.oid]:
			inUse := k.described != nil && k.described(r.oid)
			if k.synced && now.Sub(c.usableSince) < k.cfg.CatalogInterval && !inUse {
				// Usable for less than a poll interval (created, or given
				// a key) and not yet written to: listed once a later sync,
				// a poll interval on, finds it still so, or once the
				// stream describes it (its first change: a table in use,
				// whose updates are wanted at once). A migration that
				// creates a table and then sets REPLICA IDENTITY NOTHING
				// must not find it listed in between: its next UPDATE
				// would fail.
				c.listed, c.reason = false, "new: listed at the next poll"
				break
			}
			add = append(add, name)
		case problem != "" && have[r.oid]:
			drop = append(drop, name)
		}
		known[r.oid] = c
		if problem != "" {
			if old, seen := k.known[r.oid]; !seen || old.listed || old.reason != problem {
				uncovered = append(uncovered, name+" ("+problem+")")
			}
		}
	}
	for oid := range have {
		if _, ok := known[oid]; !ok {
			// Out of scope now (filters changed), or not a plain table.
			if n, err := relName(ctx, conn, oid); err == nil && n != "" {
				drop = append(drop, n)
			}
		}
	}
	// Drops first and on their own: they need only the publication, and
	// they are what keeps the application's writes from failing.
	dropped, drop, err := k.alter(ctx, conn, "DROP", drop)
	if err != nil {
		return err
	}
	for _, name := range drop {
		reason := "out of scope"
		for _, c := range known {
			if c.name == name {
				reason = c.reason
			}
		}
		k.cfg.Logger.Warn("updates and deletes of this table are NO LONGER captured", "table", name, "reason", reason, "lsn", lsnString(dropped.lsn), "at", dropped.at)
		k.cfg.reportCoverage(Coverage{Table: name, Ops: publishChanges, Captured: false, LSN: dropped.lsn, Time: dropped.at, Reason: reason})
	}
	wanted := add
	added, add, err := k.alter(ctx, conn, "ADD", add)
	for _, name := range wanted {
		if !slices.Contains(add, name) && err == nil {
			// Busy: not listed yet; the next poll tries again.
			for oid, c := range known {
				if c.name == name {
					c.listed, c.reason = false, "busy: listed at the next poll"
					known[oid] = c
				}
			}
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		// Adding a table takes its ownership (or a superuser). A role
		// without it leaves them to whoever creates tables (see
		// deploy/postgres/init/10-cdcaudit.sql); say which are missing.
		for oid, c := range known {
			if c.listed && !have[oid] && !slices.Contains(add, c.name) {
				c.listed, c.reason = false, "this role may not add it to "+k.cfg.changesPub()+" (not its owner)"
				known[oid] = c
			}
		}
		var notAdded []string
		for _, name := range wanted {
			if !slices.Contains(add, name) {
				notAdded = append(notAdded, name)
			}
		}
		if denied := strings.Join(notAdded, ", "); denied != k.denied {
			k.denied = denied
			k.log.Error("cannot add tables to the changes publication: their updates and deletes are NOT captured", "tables", denied, "err", err,
				"fix", "run cdcaudit as a superuser or the tables' owner, or have them added: ALTER PUBLICATION "+k.cfg.changesIdent()+" ADD TABLE …")
		}
		err = nil // what was added before the refusal is reported below
	}
	if err != nil {
		return err
	}
	// One line per table, except for the many of a first start.
	level := slog.LevelInfo
	if len(add) > 10 {
		level = slog.LevelDebug
		k.cfg.Logger.Info("updates and deletes of these tables are captured from now on", "tables", len(add), "lsn", lsnString(added.lsn), "at", added.at)
	}
	for _, name := range add {
		k.cfg.Logger.Log(ctx, level, "updates and deletes of this table are captured from now on", "table", name, "lsn", lsnString(added.lsn), "at", added.at)
		k.cfg.reportCoverage(Coverage{Table: name, Ops: publishChanges, Captured: true, LSN: added.lsn, Time: added.at})
	}
	if len(uncovered) > 0 && !k.quiet {
		slices.Sort(uncovered)
		k.log.Warn("updates and deletes of these tables are NOT captured (only their inserts and truncates are), because they have no usable replica identity",
			"tables", strings.Join(uncovered, ", "), "fix", "ALTER TABLE <table> REPLICA IDENTITY FULL (or add a primary key)")
	}
	k.quiet = false
	k.known = known
	k.synced = true
	return nil
}

type walPoint struct {
	lsn uint64
	at  time.Time
}

// lockWait bounds how long the keeper waits for a table's lock. Far below
// deadlock_timeout (1 s by default): when the keeper and an application's
// DDL wait for each other's locks, the keeper gives up first, so the
// application's statement is never the one that fails; and short, so the
// application's sessions never queue behind the keeper for long.
const lockWait = "50ms"

// alter adds or drops tables of the changes publication and returns the
// tables it changed and the WAL position after it: changes committed after
// it see the new list. All in one transaction when it can; when a table's
// lock is not to be had at once, one table per transaction, and the tables
// still locked are left for the next poll.
func (k *keeper) alter(ctx context.Context, conn *pgx.Conn, verb string, tables []string) (walPoint, []string, error) {
	if len(tables) == 0 {
		return walPoint{}, nil, nil
	}
	err := k.alterTx(ctx, conn, verb, tables)
	switch {
	case err == nil:
		return k.altered(ctx, conn, tables, nil)
	case !lockBusy(err):
		return walPoint{}, nil, err
	}
	var done []string
	for _, t := range tables {
		switch err = k.alterTx(ctx, conn, verb, []string{t}); {
		case err == nil:
			done = append(done, t)
		case lockBusy(err):
			k.cfg.Logger.Debug("table busy: the changes publication is updated at the next poll", "table", t, "verb", verb, "err", err)
		default:
			return k.altered(ctx, conn, done, err)
		}
	}
	return k.altered(ctx, conn, done, nil)
}

// altered returns the tables changed, with the WAL position after them,
// and the error that stopped the rest.
func (k *keeper) altered(ctx context.Context, conn *pgx.Conn, done []string, err error) (walPoint, []string, error) {
	if len(done) == 0 {
		return walPoint{}, nil, err
	}
	lsn, at, werr := walNow(ctx, conn)
	if err == nil {
		err = werr
	}
	return walPoint{lsn, at}, done, err
}

func (k *keeper) alterTx(ctx context.Context, conn *pgx.Conn, verb string, tables []string) error {
	// ONLY: each table is judged and listed on its own; without it an
	// inheritance parent (Odoo's ir_actions) brings its children along,
	// and naming a child that is already listed is an error.
	sql := "ALTER PUBLICATION " + k.cfg.changesIdent() + " " + verb + " TABLE ONLY " + strings.Join(tables, ", ONLY ")
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+lockWait+"'"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
	if err != nil {
		return fmt.Errorf("replication: %s: %w", firstWords(sql, 5), err)
	}
	return nil
}

// lockBusy: a lock the keeper gave up waiting for (or a deadlock in which
// the server chose the keeper).
func lockBusy(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "40P01")
}

func relName(ctx context.Context, conn *pgx.Conn, oid uint32) (string, error) {
	var schema, name string
	err := conn.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).Scan(&schema, &name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return qualified(schema, name), nil
}

// publicationTables is the set of relations listed in the publication by
// OID (pg_publication_tables would expand partitioned tables).
func publicationTables(ctx context.Context, conn *pgx.Conn, pub string) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, `
		SELECT pr.prrelid FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
		WHERE p.pubname = $1`, pub)
	if err != nil {
		return nil, fmt.Errorf("read tables of publication %q: %w", pub, err)
	}
	out := map[uint32]bool{}
	var oid uint32
	_, err = pgx.ForEachRow(rows, []any{&oid}, func() error {
		out[oid] = true
		return nil
	})
	return out, err
}

// relation is a user table as listTables sees it.
type relation struct {
	oid                  uint32
	schema, name         string
	kind                 byte // r = table, p = partitioned table
	persistence          byte // p = permanent, u = unlogged
	replident            byte // d = default, n = nothing, f = full, i = index
	partition            bool
	rootSchema, rootName string // the top of its partition tree (itself when none)
	hasPK                bool
	hasIdentityIndex     bool // an index marked as the replica identity exists
}

// publishable: may be named in a publication (unlogged tables never reach
// the WAL). Partitions may be, when leaves is set.
func (r relation) publishable(leaves bool) bool {
	return (leaves || !r.partition) && r.persistence == 'p'
}

// inScope: --tables/--exclude select the table, by its own name or (for a
// partition) by its partitioned root's.
func (r relation) inScope(cfg *Config) bool {
	return cfg.matches(r.schema+"."+r.name) || (r.partition && cfg.matches(r.rootSchema+"."+r.rootName))
}

// identityProblem says why updates and deletes of the table cannot be
// published without making them fail, or "" when they can.
func (r relation) identityProblem() string {
	switch r.replident {
	case 'f':
		return ""
	case 'n':
		return "REPLICA IDENTITY NOTHING"
	case 'i':
		if r.hasIdentityIndex {
			return ""
		}
		return "REPLICA IDENTITY USING INDEX, but the index is gone"
	}
	if r.hasPK {
		return ""
	}
	return "no primary key, REPLICA IDENTITY DEFAULT"
}

// listTables lists user tables and partitioned tables, sorted by their
// quoted qualified names.
func listTables(ctx context.Context, conn *pgx.Conn) ([]relation, error) {
	rows, err := conn.Query(ctx, `
		SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relreplident::text, c.relispartition,
		       rn.nspname, r.relname,
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisvalid)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)
		JOIN pg_namespace rn ON rn.oid = r.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
		  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'`)
	if err != nil {
		return nil, err
	}
	var out []relation
	var r relation
	var kind, persistence, replident string
	_, err = pgx.ForEachRow(rows, []any{&r.oid, &r.schema, &r.name, &kind, &persistence, &replident, &r.partition, &r.rootSchema, &r.rootName, &r.hasPK, &r.hasIdentityIndex}, func() error {
		r.kind, r.persistence, r.replident = kind[0], persistence[0], replident[0]
		out = append(out, r)
		return nil
	})
	slices.SortStableFunc(out, func(a, b relation) int {
		return strings.Compare(qualified(a.schema, a.name), qualified(b.schema, b.name))
	})
	return out, err
}
