package replication

import (
	"context"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Catalog answers the decoder's catalog questions over its own ordinary
// connection, opened on first use and reopened when it breaks. It is safe
// for concurrent use (questions are serialised).
type Catalog struct {
	dsn    string
	server Identity // when set, every connection is checked against it
	mu     sync.Mutex
	conn   *pgx.Conn
}

// NewCatalog returns a Catalog for dsn; it does not connect yet.
func NewCatalog(dsn string) *Catalog { return &Catalog{dsn: dsn} }

// Expect makes every connection check that it reached server (the stream's
// system and database); on another one the catalog answers nothing.
func (c *Catalog) Expect(server Identity) *Catalog {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.server = server
	return c
}

// PrimaryKey returns the primary-key column names of relation relOID in key
// order, or nil when it has none (or no longer exists). It reads the
// current catalog, not the one as of the change being decoded.
func (c *Catalog) PrimaryKey(ctx context.Context, relOID uint32) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cols []string
	err := c.query(ctx, func(conn *pgx.Conn) error {
		cols = nil
		rows, err := conn.Query(ctx, `
			SELECT a.attname FROM pg_index i
			CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			WHERE i.indrelid = $1 AND i.indisprimary
			ORDER BY k.ord`, relOID)
		if err != nil {
			return err
		}
		var name string
		_, err = pgx.ForEachRow(rows, []any{&name}, func() error {
			cols = append(cols, name)
			return nil
		})
		return err
	})
	return cols, err
}

// PartitionRoot returns "schema.name" of the partitioned root of relation
// relOID, or "" when it is not a partition (or no longer exists).
func (c *Catalog) PartitionRoot(ctx context.Context, relOID uint32) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var root string
	err := c.query(ctx, func(conn *pgx.Conn) error {
		var schema, name string
		err := conn.QueryRow(ctx, `
			SELECT n.nspname, r.relname FROM pg_class c
			JOIN pg_class r ON r.oid = pg_partition_root(c.oid) JOIN pg_namespace n ON n.oid = r.relnamespace
			WHERE c.oid = $1 AND c.relispartition`, relOID).Scan(&schema, &name)
		if errors.Is(err, pgx.ErrNoRows) {
			root = ""
			return nil
		}
		root = schema + "." + name
		return err
	})
	return root, err
}

// query runs fn, reconnecting and retrying once when the connection turns
// out to be broken (server restart, idle timeout, terminated backend).
func (c *Catalog) query(ctx context.Context, fn func(*pgx.Conn) error) error {
	for attempt := 0; ; attempt++ {
		if c.conn == nil || c.conn.IsClosed() {
			conn, err := connectSQL(ctx, c.dsn)
			if err != nil {
				return err
			}
			if err := verifyServer(ctx, conn, &Config{DSN: c.dsn, Server: c.server}); err != nil {
				closeQuietly(conn)
				return err
			}
			c.conn = conn
		}
		err := fn(c.conn)
		if err == nil || attempt == 1 || ctx.Err() != nil || !brokenConn(c.conn, err) {
			return err
		}
		closeQuietly(c.conn)
		c.conn = nil
	}
}

// brokenConn: the error came from the connection, not from the query.
func brokenConn(conn *pgx.Conn, err error) bool {
	if conn.IsClosed() {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 57 (operator intervention: terminated, shutting down) and
		// 08 (connection exception) end the session.
		return pe.Code[:2] == "57" || pe.Code[:2] == "08"
	}
	return true
}

// Close closes the connection.
func (c *Catalog) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		closeQuietly(c.conn)
		c.conn = nil
	}
}
