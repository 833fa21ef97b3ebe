package replication

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Finding is one result of Check: what is wrong (or fine) and the exact fix.
type Finding struct {
	Level   string // ok, warn or fail
	Check   string // which check: wal_level, replication_privilege, slot, replica_identity, …
	Message string
	Fix     string // empty when there is nothing to do
}

type findings []Finding

func (f *findings) add(level, check, msg, fix string) {
	*f = append(*f, Finding{Level: level, Check: check, Message: msg, Fix: fix})
}

// Check inspects the server for what `cdcaudit run` needs, changing
// nothing. A server it cannot reach is a failed finding, not an error; the
// error is for an invalid configuration or a query that failed.
func Check(ctx context.Context, cfg Config) ([]Finding, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	var f findings
	conn, err := connectSQL(ctx, cfg.DSN)
	if err != nil {
		f.add("fail", "connection", fmt.Sprintf("cannot connect to %s: %v", RedactDSN(cfg.DSN), err),
			"check host, port, database, user and password in the DSN, and that pg_hba.conf admits this client")
		return f, nil
	}
	defer closeQuietly(conn)

	var version, walLevel, user string
	var privileged, super bool
	var maxSlots, usedSlots, maxSenders, usedSenders int
	err = conn.QueryRow(ctx, `
		SELECT current_setting('server_version'), current_setting('wal_level'), current_user,
		       `+privilegedSQL+`, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
		       current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots)::int,
		       current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)::int`).
		Scan(&version, &walLevel, &user, &privileged, &super, &maxSlots, &usedSlots, &maxSenders, &usedSenders)
	if err != nil {
		return f, fmt.Errorf("replication: check: %w", err)
	}
	f.add("ok", "connection", fmt.Sprintf("connected to %s as %s (PostgreSQL %s)", RedactDSN(cfg.DSN), user, version), "")

	switch major := serverMajor(conn); {
	case major < 12:
		f.add("fail", "server_version", fmt.Sprintf("PostgreSQL %s is too old: cdcaudit needs 12 or later", version), "upgrade PostgreSQL")
	case major < 13:
		f.add("warn", "server_version", fmt.Sprintf("PostgreSQL %s does not report slot health (wal_status, max_slot_wal_keep_size): a slot that falls behind cannot be watched", version), "upgrade to PostgreSQL 13 or later")
	}

	if walLevel == "logical" {
		f.add("ok", "wal_level", "wal_level is logical", "")
	} else {
		f.add("fail", "wal_level", fmt.Sprintf("wal_level is %s: logical decoding needs logical", walLevel),
			"ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL")
	}

	if privileged {
		f.add("ok", "replication_privilege", fmt.Sprintf("role %s may stream changes", quoteIdent(user)), "")
		f.checkReplicationConnection(ctx, &cfg)
	} else {
		f.add("fail", "replication_privilege", fmt.Sprintf("role %s has no REPLICATION attribute: it cannot open a replication connection", quoteIdent(user)),
			fmt.Sprintf("as a superuser: ALTER ROLE %s WITH REPLICATION;", quoteIdent(user)))
	}

	slot, err := readSlot(ctx, conn, cfg.Slot)
	if err != nil {
		return f, fmt.Errorf("replication: check: %w", err)
	}
	switch free := maxSlots - usedSlots; {
	case slot.Exists:
		f.add("ok", "max_replication_slots", fmt.Sprintf("%d of %d replication slots in use, ours among them", usedSlots, maxSlots), "")
	case free < 1:
		f.add("fail", "max_replication_slots", fmt.Sprintf("all %d replication slots are in use: the slot %q cannot be created", maxSlots, cfg.Slot),
			fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d; then restart PostgreSQL (or drop an unused slot)", usedSlots+4))
	default:
		f.add("ok", "max_replication_slots", fmt.Sprintf("%d of %d replication slots in use: room for ours", usedSlots, maxSlots), "")
	}
	if usedSenders >= maxSenders {
		f.add("fail", "max_wal_senders", fmt.Sprintf("all %d WAL senders are in use: no replication connection can be opened", maxSenders),
			fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d; then restart PostgreSQL", usedSenders+4))
	} else {
		f.add("ok", "max_wal_senders", fmt.Sprintf("%d of %d WAL senders in use", usedSenders, maxSenders), "")
	}

	if err := f.checkSlot(ctx, conn, &cfg, slot); err != nil {
		return f, err
	}
	rels, err := listTables(ctx, conn)
	if err != nil {
		return f, fmt.Errorf("replication: check: %w", err)
	}
	if err := f.checkPublication(ctx, conn, &cfg, super, rels); err != nil {
		return f, err
	}
	f.checkFilters(&cfg, rels)
	f.checkTables(&cfg, rels)
	if err := f.checkGenerated(ctx, conn, &cfg); err != nil {
		return f, err
	}
	return f, nil
}

// checkReplicationConnection opens a replication connection, which
// pg_hba.conf or connection limits may refuse even when SQL works.
func (f *findings) checkReplicationConnection(ctx context.Context, cfg *Config) {
	rconn, err := connectReplication(ctx, cfg.DSN)
	if err == nil {
		_, err = pglogrepl.IdentifySystem(ctx, rconn)
		closeQuietly(rconn)
	}
	if err != nil {
		f.add("fail", "replication_connection", fmt.Sprintf("the replication connection to %s was refused: %v", RedactDSN(cfg.DSN), err),
			"allow this client in pg_hba.conf for this database (logical replication connections match the database name, not the replication keyword), then SELECT pg_reload_conf();")
		return
	}
	f.add("ok", "replication_connection", "a replication connection can be opened", "")
}

func (f *findings) checkSlot(ctx context.Context, conn *pgx.Conn, cfg *Config, slot slotInfo) error {
	if !slot.Exists {
		f.add("ok", "slot", fmt.Sprintf("replication slot %q does not exist yet: `cdcaudit run` creates it", cfg.Slot), "")
		return nil
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return fmt.Errorf("replication: check: %w", err)
	}
	if err := slot.usable(cfg, db); err != nil {
		f.add("fail", "slot", err.Error(), "set another slot name, or drop this slot if nothing uses it: SELECT pg_drop_replication_slot('"+cfg.Slot+"');")
		return nil
	}
	if slot.Active {
		h, err := holderOf(ctx, conn, cfg.Slot)
		if err != nil {
			return fmt.Errorf("replication: check: %w", err)
		}
		if h.pid != 0 {
			level := "fail"
			msg := fmt.Sprintf("replication slot %q is in use by another process (%s): `cdcaudit run` would wait, then give up", cfg.Slot, h)
			if h.app == "cdcaudit" {
				level = "warn"
				msg = fmt.Sprintf("replication slot %q is in use by a running cdcaudit (%s)", cfg.Slot, h)
			}
			f.add(level, "slot_in_use", msg, fmt.Sprintf("stop that process, or end it: SELECT pg_terminate_backend(%d);", h.pid))
		}
	}
	switch slot.WALStatus {
	case "unreserved":
		f.add("fail", "slot", fmt.Sprintf("replication slot %q is about to be invalidated (wal_status unreserved, %s retained): WAL it needs is past max_slot_wal_keep_size", cfg.Slot, bytesString(slot.RetainedBytes)),
			"start `cdcaudit run` now so it catches up, or raise max_slot_wal_keep_size: ALTER SYSTEM SET max_slot_wal_keep_size = '<size>'; SELECT pg_reload_conf();")
	case "extended":
		f.add("warn", "slot", fmt.Sprintf("replication slot %q retains %s of WAL, more than max_wal_size (wal_status extended)", cfg.Slot, bytesString(slot.RetainedBytes)),
			"make sure `cdcaudit run` is running and keeping up; watch disk space in pg_wal")
	default:
		f.add("ok", "slot", fmt.Sprintf("replication slot %q is a pgoutput slot of this database, confirmed up to %s, retaining %s of WAL", cfg.Slot, lsnString(slot.ConfirmedFlush), bytesString(slot.RetainedBytes)), "")
	}
	return nil
}

func (f *findings) checkPublication(ctx context.Context, conn *pgx.Conn, cfg *Config, super bool, rels []relation) error {
	pub, err := readPublication(ctx, conn, cfg.Publication)
	if err != nil {
		return fmt.Errorf("replication: check: %w", err)
	}
	var broken []string // in scope, no usable replica identity
	for _, r := range rels {
		if r.kind == 'r' && r.publishable(true) && r.inScope(cfg) && r.identityProblem() != "" {
			broken = append(broken, qualified(r.schema, r.name))
		}
	}
	create := fmt.Sprintf("CREATE PUBLICATION %s FOR ALL TABLES WITH (publish = '%s');", cfg.pubIdent(), publishInserts)
	switch {
	case !pub.exists && !super:
		f.add("fail", "publication", fmt.Sprintf("publication %q does not exist, and only a superuser can create one FOR ALL TABLES", cfg.Publication),
			"as a superuser: "+create)
	case !pub.exists:
		f.add("ok", "publication", fmt.Sprintf("publication %q does not exist yet: `cdcaudit run` creates it FOR ALL TABLES, publishing inserts and truncates", cfg.Publication), "")
	case !pub.allTables && !super:
		f.add("fail", "publication", fmt.Sprintf("publication %q is not FOR ALL TABLES (made by an older cdcaudit for --tables, or by hand): `cdcaudit run` must replace it, and only a superuser can", cfg.Publication),
			fmt.Sprintf("as a superuser: BEGIN; DROP PUBLICATION %s; %s COMMIT;", cfg.pubIdent(), create))
	case !pub.allTables:
		f.add("warn", "publication", fmt.Sprintf("publication %q is not FOR ALL TABLES (made by an older cdcaudit for --tables, or by hand): `cdcaudit run` replaces it by one FOR ALL TABLES publishing inserts and truncates; --tables/--exclude then filter the stream", cfg.Publication), "")
	case pub.publishes() != publishInserts:
		level, msg := "warn", fmt.Sprintf("publication %q publishes %s: `cdcaudit run` changes it to %s (updates and deletes come from %s)", cfg.Publication, pub.publishes(), publishInserts, cfg.changesPub())
		if (pub.update || pub.delete) && len(broken) > 0 {
			level = "fail"
			msg = fmt.Sprintf("publication %q publishes %s FOR ALL TABLES: UPDATE and DELETE fail in the application on %s (no usable replica identity) until it publishes only %s", cfg.Publication, pub.publishes(), strings.Join(broken, ", "), publishInserts)
		}
		f.add(level, "publication", msg, fmt.Sprintf("start `cdcaudit run` (it migrates the publication), or: ALTER PUBLICATION %s SET (publish = '%s');", cfg.pubIdent(), publishInserts))
	default:
		f.add("ok", "publication", fmt.Sprintf("publication %q exists FOR ALL TABLES, publishing inserts and truncates", cfg.Publication), "")
	}

	changes, err := readPublication(ctx, conn, cfg.changesPub())
	if err != nil {
		return fmt.Errorf("replication: check: %w", err)
	}
	switch {
	case !changes.exists:
		f.add("ok", "changes_publication", fmt.Sprintf("publication %q does not exist yet: `cdcaudit run` creates it for updates and deletes of the tables with a usable replica identity", cfg.changesPub()), "")
	case changes.allTables || changes.publishes() != publishChanges:
		f.add("warn", "changes_publication", fmt.Sprintf("publication %q is not as cdcaudit makes it (FOR TABLE, publishing %s): `cdcaudit run` replaces it", cfg.changesPub(), publishChanges), "")
	default:
		listed, err := publicationTables(ctx, conn, cfg.changesPub())
		if err != nil {
			return fmt.Errorf("replication: check: %w", err)
		}
		var wrong, missing []string // listed but updates on them would fail; usable but not listed
		for _, r := range rels {
			switch {
			case listed[r.oid] && r.identityProblem() != "":
				wrong = append(wrong, qualified(r.schema, r.name)+" ("+r.identityProblem()+")")
			case !listed[r.oid] && r.kind == 'r' && r.publishable(true) && r.inScope(cfg) && r.identityProblem() == "":
				missing = append(missing, qualified(r.schema, r.name))
			}
		}
		if len(missing) > 0 && !super {
			// `run` adds them, if this role owns them; a superuser can.
			f.add("warn", "changes_publication", fmt.Sprintf("publication %q does not list %s yet: `cdcaudit run` adds them, but adding a table takes its owner or a superuser; until then their updates and deletes are not captured", cfg.changesPub(), strings.Join(missing, ", ")),
				fmt.Sprintf("as a superuser or the tables' owner: ALTER PUBLICATION %s ADD TABLE ONLY %s;", cfg.changesIdent(), strings.Join(missing, ", ONLY ")))
		}
		if len(wrong) > 0 {
			f.add("fail", "changes_publication", fmt.Sprintf("publication %q lists tables that lost their replica identity: UPDATE and DELETE on them fail in the application: %s", cfg.changesPub(), strings.Join(wrong, ", ")),
				fmt.Sprintf("start `cdcaudit run` (it drops them from the list at once), or: ALTER PUBLICATION %s DROP TABLE <table>;", cfg.changesIdent()))
		} else {
			f.add("ok", "changes_publication", fmt.Sprintf("publication %q lists %d tables whose updates and deletes are captured", cfg.changesPub(), len(listed)), "")
		}
		return f.checkGuard(ctx, conn, cfg)
	}
	return nil
}

// checkGuard says whether an event trigger drops a table from the changes
// publication in the same transaction as the DDL that breaks its replica
// identity. Without one, UPDATE and DELETE on such a table fail until
// cdcaudit's next catalog poll — and, while cdcaudit is stopped, until it
// starts again.
func (f *findings) checkGuard(ctx context.Context, conn *pgx.Conn, cfg *Config) error {
	var guarded bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid
		WHERE e.evtenabled <> 'D' AND e.evtevent = 'ddl_command_end'
		  AND strpos(p.prosrc, $1) > 0 AND strpos(p.prosrc, 'DROP TABLE') > 0)`, cfg.changesPub()).Scan(&guarded)
	if err != nil {
		return fmt.Errorf("replication: check: event triggers: %w", err)
	}
	if guarded {
		f.add("ok", "changes_guard", fmt.Sprintf("an event trigger drops a table from %q in the same transaction as the DDL that makes its replica identity unusable", cfg.changesPub()), "")
		return nil
	}
	f.add("warn", "changes_guard", fmt.Sprintf("no event trigger guards %q: if a DBA drops a listed table's primary key (or sets REPLICA IDENTITY NOTHING), UPDATE and DELETE on it fail until cdcaudit's next catalog poll, and while cdcaudit is stopped until it starts again", cfg.changesPub()),
		guardFix(cfg))
	return nil
}

// checkFilters warns about globs that match no table: usually a typo.
func (f *findings) checkFilters(cfg *Config, rels []relation) {
	for _, p := range append(append([]string(nil), cfg.Tables...), cfg.Exclude...) {
		hit := false
		for _, r := range rels {
			if ok, _ := path.Match(p, r.schema+"."+r.name); ok {
				hit = true
				break
			}
		}
		if !hit {
			f.add("warn", "table_filters", fmt.Sprintf("table pattern %q matches no table", p), "correct the pattern (globs are schema-qualified: public.sale_*, *.res_users)")
		}
	}
}

// checkTables reports, for every table in scope, what its REPLICA
// IDENTITY means for the audit trail. Partitions are checked themselves:
// changes are published per partition, under the partition's name.
//
// FULL and DEFAULT (or USING INDEX) are both complete: FULL has the server
// send whole before-images (more WAL on every UPDATE and DELETE); with
// DEFAULT cdcaudit fills them from the last image it keeps of each record
// (no extra WAL), and says before_source unknown for a record it has not
// seen since capture began. Only tables without a usable identity warn.
func (f *findings) checkTables(cfg *Config, rels []relation) {
	var full, keyOnly []string
	for _, r := range rels {
		if r.kind != 'r' || !r.inScope(cfg) {
			continue
		}
		name := qualified(r.schema, r.name)
		switch {
		case r.persistence == 'u':
			f.add("warn", "unlogged_table", fmt.Sprintf("%s is UNLOGGED: its changes never reach the WAL and are not audited", name),
				fmt.Sprintf("ALTER TABLE %s SET LOGGED;", name))
		case r.replident == 'f':
			full = append(full, name)
		case r.identityProblem() != "":
			f.add("warn", "replica_identity", fmt.Sprintf("%s: %s: its UPDATEs and DELETEs are NOT captured, only its inserts and truncates (cdcaudit keeps it out of publication %s, so the application's writes never fail)", name, r.identityProblem(), cfg.changesPub()),
				fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL;", name))
		default: // DEFAULT with a primary key, USING INDEX
			keyOnly = append(keyOnly, name)
		}
	}
	if len(keyOnly) > 0 {
		f.add("ok", "replica_identity", fmt.Sprintf("%s REPLICA IDENTITY DEFAULT or USING INDEX: cdcaudit fills their before-images from the last image it keeps of each record (no extra WAL); an update or delete of a record not seen since capture began has before_source unknown. REPLICA IDENTITY FULL would have the server send them instead, at the cost of more WAL on every UPDATE and DELETE",
			someTables(keyOnly)), "")
	}
	if len(full) > 0 {
		f.add("ok", "replica_identity", fmt.Sprintf("%s REPLICA IDENTITY FULL: the server sends whole before-images (more WAL on every UPDATE and DELETE; DEFAULT would do, cdcaudit fills them)",
			someTables(full)), "")
	}
}

// someTables says how many tables, naming the first few: an ERP has
// hundreds, and a page of names hides the findings that matter.
func someTables(names []string) string {
	const each = 10
	if len(names) == 1 {
		return fmt.Sprintf("1 table has (%s)", names[0])
	}
	if len(names) <= each {
		return fmt.Sprintf("%d tables have (%s)", len(names), strings.Join(names, ", "))
	}
	return fmt.Sprintf("%d tables have (%s and %d more)", len(names), strings.Join(names[:each], ", "), len(names)-each)
}

// checkGenerated lists stored generated columns of tables in scope:
// pgoutput does not send them (before PostgreSQL 18), so their values are
// never in the audit trail.
func (f *findings) checkGenerated(ctx context.Context, conn *pgx.Conn, cfg *Config) error {
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, c.relname, string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE a.attgenerated <> '' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind = 'r'
		  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
		GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return fmt.Errorf("replication: check: %w", err)
	}
	var schema, table, cols string
	_, err = pgx.ForEachRow(rows, []any{&schema, &table, &cols}, func() error {
		if cfg.matches(schema + "." + table) {
			f.add("warn", "generated_columns", fmt.Sprintf("%s has generated columns (%s): PostgreSQL does not publish them, so their values are not in the audit trail (they can be recomputed from the stored columns)", qualified(schema, table), cols), "")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replication: check: %w", err)
	}
	return nil
}

func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func guardFix(cfg *Config) string {
	fix := "as a superuser, install the function and event trigger cdcaudit_keep_changes_publication of deploy/postgres/init/10-cdcaudit.sql"
	if cfg.changesPub() != "cdcaudit_changes" {
		fix += fmt.Sprintf(" with %s in place of cdcaudit_changes", cfg.changesIdent())
	}
	return fix
}
