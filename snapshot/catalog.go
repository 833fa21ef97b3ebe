package snapshot

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/sink"
)

// Column is one column of a snapshotted table.
type Column struct {
	Name string
	Type uint32 // type OID, as pgoutput's Relation gives it
	// typeName casts a key literal in the chunk query (format_type).
	typeName string
}

// table is what reading one table needs from the catalog.
type table struct {
	Schema, Name string
	Columns      []Column
	// Key lists the positions in Columns of the key the stream gives the
	// table's events (the replica identity index for REPLICA IDENTITY
	// USING INDEX, else the primary key): chunks are read in its order.
	// Empty: no key, chunks go by ctid and rows carry no key.
	Key      []int
	Estimate int64 // pg_class.reltuples (0 when never analyzed)
}

func (t *table) qualified() string { return t.Schema + "." + t.Name }

// publishedTables lists the tables of the publication pair (name and
// name_changes) as "schema.table", in name order.
func publishedTables(ctx context.Context, conn *pgx.Conn, publication string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT schemaname || '.' || tablename FROM pg_publication_tables
		WHERE pubname::text IN ($1::text, $1::text || '_changes') ORDER BY 1`, publication)
	if err != nil {
		return nil, fmt.Errorf("snapshot: listing the published tables: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// matchAny reports whether "schema.table" matches one of the globs
// (sink.MatchTable).
func matchAny(globs []string, qualified string) bool {
	schema, name, _ := strings.Cut(qualified, ".")
	return slices.ContainsFunc(globs, func(g string) bool { return sink.MatchTable(g, schema, name) })
}

// describe reads a table's columns, key and size estimate. ok is false when
// the table does not exist (any more).
func describe(ctx context.Context, conn *pgx.Conn, qualified string) (t table, ok bool, err error) {
	var oid uint32
	var ident string
	schema, name, _ := strings.Cut(qualified, ".")
	err = conn.QueryRow(ctx, `SELECT c.oid, c.relreplident::text, greatest(c.reltuples, 0)::int8
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schema, name).
		Scan(&oid, &ident, &t.Estimate)
	if err == pgx.ErrNoRows {
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("snapshot: describing %s: %w", qualified, err)
	}
	t.Schema, t.Name = schema, name
	// The columns pgoutput sends: not dropped, not generated.
	rows, err := conn.Query(ctx, `SELECT attname::text, atttypid, format_type(atttypid, NULL) FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, oid)
	if err != nil {
		return t, false, fmt.Errorf("snapshot: columns of %s: %w", qualified, err)
	}
	var c Column
	if _, err := pgx.ForEachRow(rows, []any{&c.Name, &c.Type, &c.typeName}, func() error {
		t.Columns = append(t.Columns, c)
		return nil
	}); err != nil {
		return t, false, fmt.Errorf("snapshot: columns of %s: %w", qualified, err)
	}
	which := "indisprimary"
	if ident == "i" {
		which = "indisreplident"
	}
	rows, err = conn.Query(ctx, `SELECT a.attname::text FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.`+which+` ORDER BY k.ord`, oid)
	if err != nil {
		return t, false, fmt.Errorf("snapshot: key of %s: %w", qualified, err)
	}
	keyNames, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return t, false, fmt.Errorf("snapshot: key of %s: %w", qualified, err)
	}
	for _, k := range keyNames {
		i := slices.IndexFunc(t.Columns, func(c Column) bool { return c.Name == k })
		if i < 0 { // an expression index cannot be a key; be safe
			t.Key = nil
			break
		}
		t.Key = append(t.Key, i)
	}
	return t, true, nil
}

// chunkQuery is the COPY that reads the next chunk of t after the key
// (text values) or ctid last (nil: from the start).
func chunkQuery(t *table, last []string, limit int) string {
	var b strings.Builder
	b.WriteString("COPY (SELECT ")
	if len(t.Key) == 0 {
		b.WriteString("ctid, ")
	}
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{c.Name}.Sanitize())
	}
	b.WriteString(" FROM ONLY ")
	b.WriteString(pgx.Identifier{t.Schema, t.Name}.Sanitize())
	order := "ctid"
	if len(t.Key) > 0 {
		var cols, vals []string
		for j, k := range t.Key {
			cols = append(cols, pgx.Identifier{t.Columns[k].Name}.Sanitize())
			if last != nil {
				vals = append(vals, literal(last[j])+"::"+t.Columns[k].typeName)
			}
		}
		order = strings.Join(cols, ", ")
		if last != nil {
			fmt.Fprintf(&b, " WHERE (%s) > (%s)", order, strings.Join(vals, ", "))
		}
	} else if last != nil {
		fmt.Fprintf(&b, " WHERE ctid > %s::tid", literal(last[0]))
	}
	fmt.Fprintf(&b, " ORDER BY %s LIMIT %d) TO STDOUT", order, limit)
	return b.String()
}

// literal quotes s as an SQL string literal (standard_conforming_strings
// is on for the snapshot's connections: backslashes are plain).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
