package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m, Options{}) }

func queryString(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClusterIsLogicalAndSurvivesRestartAndCrash(t *testing.T) {
	dsn, name := NewDB(t)
	if got := queryString(t, dsn, "SHOW wal_level"); got != "logical" {
		t.Fatalf("wal_level = %s", got)
	}
	if got := queryString(t, dsn, "SELECT current_database()"); got != name {
		t.Fatalf("database = %s, want %s", got, name)
	}
	c := Shared(t)
	if err := c.Exec(context.Background(), name, "CREATE TABLE x(id int primary key); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, dsn, "SELECT count(*)::text FROM x"); got != "1" {
		t.Fatalf("after restart: %s rows", got)
	}
	c.Crash()
	if err := c.StartAgain(); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, dsn, "SELECT count(*)::text FROM x"); got != "1" {
		t.Fatalf("after crash: %s rows", got)
	}
}
