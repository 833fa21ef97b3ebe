package odootrace

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

const (
	dumpPath  = "../../testdata/odoo18/erp.sql.gz"
	tracesDir = "../../testdata/odoo18/traces"
)

func TestShiftTimestamps(t *testing.T) {
	base := time.Date(2026, 12, 3, 6, 30, 0, 0, time.UTC)
	stmt := `INSERT INTO t (a, b, c, d, e) VALUES ('2026-12-03T06:30:00.123456'::timestamp, '2026-12-03 06:29:59', '2026-12-03', '2031-01-01 00:00:00')`
	got := ShiftTimestamps(stmt, base, 90*time.Minute+500*time.Microsecond)
	want := `INSERT INTO t (a, b, c, d, e) VALUES ('2026-12-03T08:00:00.123956'::timestamp, '2026-12-03 07:59:59.000500', '2026-12-03', '2031-01-01 00:00:00')`
	if got != want {
		t.Fatalf("shifted:\n got %s\nwant %s", got, want)
	}
}

// replayed restores the fresh Odoo database and replays every trace onto it,
// with a trigger that records, for each row an INSERT or UPDATE gave a new
// write_date, that write_date next to the replaying transaction's now().
func replayed(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	dsn, _ := pgtest.NewDB(t)
	if err := Restore(ctx, pgtest.Shared(t).BinDir, dsn, dumpPath); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, `
		CREATE TABLE stamp_seen (tbl text, id int, write_date timestamp, tx_now timestamp);
		CREATE FUNCTION stamp_seen() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'INSERT' OR NEW.write_date IS DISTINCT FROM OLD.write_date THEN
				INSERT INTO stamp_seen VALUES (TG_TABLE_NAME, NEW.id, NEW.write_date, now() AT TIME ZONE 'UTC');
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER stamp_seen AFTER INSERT OR UPDATE ON res_partner FOR EACH ROW EXECUTE FUNCTION stamp_seen();
		CREATE TRIGGER stamp_seen AFTER INSERT OR UPDATE ON sale_order FOR EACH ROW EXECUTE FUNCTION stamp_seen();
		CREATE TRIGGER stamp_seen AFTER INSERT OR UPDATE ON sale_order_line FOR EACH ROW EXECUTE FUNCTION stamp_seen();
		CREATE TRIGGER stamp_seen AFTER INSERT OR UPDATE ON res_users FOR EACH ROW EXECUTE FUNCTION stamp_seen();`)
	if err != nil {
		t.Fatal(err)
	}
	traces, err := LoadDir(tracesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var last uint32
	for _, tr := range traces {
		names = append(names, tr.Header.Scenario)
		xids, err := Replay(ctx, conn, tr)
		if err != nil {
			t.Fatal(err)
		}
		if len(xids) != len(tr.Txs) {
			t.Fatalf("%s: %d xids for %d transactions", tr.Header.Scenario, len(xids), len(tr.Txs))
		}
		for _, x := range xids {
			if x <= last {
				t.Fatalf("%s: replay xids %v do not follow %d", tr.Header.Scenario, xids, last)
			}
			last = x
		}
	}
	if got := strings.Join(names, ","); got != "logins,edits,passwords,sessions,module,rawsql" {
		t.Fatalf("traces in replay order: %s", got)
	}
	return conn
}

func rows(t *testing.T, conn *pgx.Conn, sql string) []string {
	t.Helper()
	rs, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		vals, err := rs.Values()
		if err != nil {
			t.Fatal(err)
		}
		var f []string
		for _, v := range vals {
			f = append(f, fmt.Sprint(v))
		}
		out = append(out, strings.Join(f, " "))
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func expectRows(t *testing.T, conn *pgx.Conn, what, sql string, want ...string) {
	t.Helper()
	got := rows(t, conn, sql)
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// The recorded traces replay onto the dump and leave what real Odoo left:
// logins, devices with their IPs and browsers, the sales, the deletes, the
// password and API-key writes, the module's new column, psql's edits.
func TestReplayRecordedOdoo(t *testing.T) {
	conn := replayed(t)
	expectRows(t, conn, "logins (res_users_log by user)",
		`SELECT u.login, count(*) FROM res_users_log l JOIN res_users u ON u.id = l.create_uid GROUP BY 1`,
		"admin 1", "alice 2", "bob 2", "carol 2")
	expectRows(t, conn, "devices (res_device_log)",
		`SELECT u.login, d.ip_address, d.platform, d.browser, d.device_type, d.revoked, d.write_uid IS NULL
		 FROM res_device_log d JOIN res_users u ON u.id = d.user_id`,
		"admin 192.0.2.1 windows chrome computer false true", // Edge: Odoo records it as chrome
		"alice 203.0.113.10 windows chrome computer false true",
		"alice 203.0.113.10 windows chrome computer false true", // her login after her password change
		"bob 198.51.100.7 linux firefox computer false true",
		"bob 198.51.100.7 linux firefox computer false true",
		"carol 192.0.2.44 macos chrome computer false true",
		"carol 198.51.100.23 iphone safari mobile true false", // revoked by admin: an ORM write
	)
	expectRows(t, conn, "sale orders",
		`SELECT o.name, o.state, count(l.id), o.margin IS NOT NULL FROM sale_order o JOIN sale_order_line l ON l.order_id = o.id GROUP BY o.id`,
		"S00001 sale 2 true", "S00002 draft 1 true")
	expectRows(t, conn, "partners the scenarios touched",
		`SELECT name, mobile IS NOT NULL, phone IS NOT NULL FROM res_partner
		 WHERE name IN ('Azure Interior', 'Deco Addict', 'Deco Addict (renamed in psql)', 'Gemini Furniture', 'Lumber Inc')`,
		"Azure Interior true false", "Deco Addict (renamed in psql) false true")
	expectRows(t, conn, "bob in Sales / Administrator",
		`SELECT u.login FROM res_groups_users_rel r JOIN res_users u ON u.id = r.uid
		 JOIN ir_model_data d ON d.model = 'res.groups' AND d.res_id = r.gid AND d.module = 'sales_team' AND d.name = 'group_sale_manager'
		 WHERE u.login IN ('alice', 'bob', 'carol')`,
		"bob")
	expectRows(t, conn, "API keys", `SELECT u.login, k.name FROM res_users_apikeys k JOIN res_users u ON u.id = k.user_id`, "carol lab integration")
	expectRows(t, conn, "password hashes",
		`SELECT login, password LIKE '$pbkdf2-sha512$%' FROM res_users WHERE login IN ('alice', 'bob', 'carol')`,
		"alice true", "bob true", "carol true")
	expectRows(t, conn, "two-factor authentication",
		`SELECT login, totp_secret FROM res_users WHERE totp_secret IS NOT NULL`,
		"alice "+totpSecret(t))
	expectRows(t, conn, "wizards left no typed password behind",
		`SELECT 'own', count(*) FROM change_password_own WHERE new_password IS NOT NULL
		 UNION ALL SELECT 'user', count(*) FROM change_password_user WHERE new_passwd IS NOT NULL AND new_passwd <> ''
		 UNION ALL SELECT 'check', count(*) FROM res_users_identitycheck WHERE password IS NOT NULL AND password <> ''
		 UNION ALL SELECT 'totp', count(*) FROM auth_totp_wizard WHERE secret <> ''`,
		"own 0", "user 0", "check 0", "totp 0")

	// The timestamp shift: every write_date Odoo's ORM wrote is the replaying
	// transaction's own now(), as it was the recorded transaction's.
	var stamped, off int
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*), count(*) FILTER (WHERE write_date <> tx_now) FROM stamp_seen`).Scan(&stamped, &off); err != nil {
		t.Fatal(err)
	}
	t.Logf("write_date stamps on res_partner, res_users, sale_order, sale_order_line: %d, %d not the transaction's now()", stamped, off)
	if stamped < 20 || off != 0 {
		t.Errorf("write_date stamps: %d rows, %d not the transaction's now()", stamped, off)
	}
	// psql's edit left write_date alone: older than its transaction.
	var rawAge time.Duration
	if err := conn.QueryRow(context.Background(),
		`SELECT extract(epoch FROM (now() AT TIME ZONE 'UTC') - write_date) * 1e9 FROM res_partner WHERE name = 'Deco Addict (renamed in psql)'`).Scan(&rawAge); err != nil {
		t.Fatal(err)
	}
	if rawAge <= 0 {
		t.Errorf("psql's rename: write_date %v old, want older than the replay", rawAge)
	}
}

// totpSecret is the secret alice's TOTP wizard showed, as recorded.
func totpSecret(t *testing.T) string {
	t.Helper()
	traces, err := LoadDir(tracesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range traces[2].Txs { // passwords
		for _, s := range tx.Stmts {
			if _, rest, ok := strings.Cut(s, "UPDATE res_users SET totp_secret = '"); ok {
				return rest[:strings.IndexByte(rest, '\'')]
			}
		}
	}
	t.Fatal("no totp_secret UPDATE in the passwords trace")
	return ""
}
