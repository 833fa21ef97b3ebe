package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// demoSchema is a small ERP in the shape of Odoo's tables: serial ids, the
// four audit columns (create_uid/create_date/write_uid/write_date, UTC
// timestamps without time zone), REPLICA IDENTITY FULL so updates and
// deletes carry their whole before-image.
const demoSchema = `
CREATE TABLE res_users (
    id          serial PRIMARY KEY,
    login       varchar NOT NULL UNIQUE,
    name        varchar NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    password    varchar,
    create_uid  integer REFERENCES res_users(id) ON DELETE SET NULL,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid   integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_date  timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE TABLE res_users_log (
    id          serial PRIMARY KEY,
    create_uid  integer REFERENCES res_users(id) ON DELETE SET NULL,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid   integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_date  timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE TABLE res_partner (
    id           serial PRIMARY KEY,
    name         varchar NOT NULL,
    email        varchar,
    phone        varchar,
    city         varchar,
    country_code char(2),
    is_company   boolean NOT NULL DEFAULT false,
    credit_limit numeric(12,2) NOT NULL DEFAULT 0,
    create_uid   integer REFERENCES res_users(id) ON DELETE SET NULL,
    create_date  timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid    integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_date   timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE TABLE sale_order (
    id           serial PRIMARY KEY,
    name         varchar NOT NULL UNIQUE,
    partner_id   integer NOT NULL REFERENCES res_partner(id) ON DELETE RESTRICT,
    user_id      integer REFERENCES res_users(id) ON DELETE SET NULL,
    state        varchar NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'sent', 'sale', 'cancel')),
    date_order   timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    amount_total numeric(12,2) NOT NULL DEFAULT 0,
    note         text,
    create_uid   integer REFERENCES res_users(id) ON DELETE SET NULL,
    create_date  timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid    integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_date   timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE TABLE sale_order_line (
    id             serial PRIMARY KEY,
    order_id       integer NOT NULL REFERENCES sale_order(id) ON DELETE CASCADE,
    product        varchar NOT NULL,
    quantity       numeric(10,2) NOT NULL DEFAULT 1,
    price_unit     numeric(12,2) NOT NULL DEFAULT 0,
    discount       numeric(5,2) NOT NULL DEFAULT 0,
    price_subtotal numeric(12,2) NOT NULL DEFAULT 0,
    create_uid     integer REFERENCES res_users(id) ON DELETE SET NULL,
    create_date    timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid      integer REFERENCES res_users(id) ON DELETE SET NULL,
    write_date     timestamp DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE SEQUENCE sale_order_seq;
-- A scratch table that a "nightly job" empties with TRUNCATE.
CREATE TABLE demo_scratch (
    id      serial PRIMARY KEY,
    payload text,
    created timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE res_users       REPLICA IDENTITY FULL;
ALTER TABLE res_users_log   REPLICA IDENTITY FULL;
ALTER TABLE res_partner     REPLICA IDENTITY FULL;
ALTER TABLE sale_order      REPLICA IDENTITY FULL;
ALTER TABLE sale_order_line REPLICA IDENTITY FULL;
ALTER TABLE demo_scratch    REPLICA IDENTITY FULL;

INSERT INTO res_users (id, login, name, active) VALUES
    (1, '__system__', 'OdooBot', false),
    (2, 'admin', 'Mitchell Admin', true),
    (3, 'alice@example.com', 'Alice Martin', true),
    (4, 'bob@example.com', 'Bob Dupont', true),
    (5, 'carol@example.com', 'Carol Nguyen', true);
SELECT setval('res_users_id_seq', 5);
UPDATE res_users SET create_uid = 1, write_uid = 1;
`

var (
	demoCompanies = []string{"Azure Interior", "Deco Addict", "Gemini Furniture", "Lumber Inc", "Ready Mat",
		"Wood Corner", "The Jackson Group", "Acme Corp", "Brandon Freeman", "Colleen Diaz", "Nordic Fittings",
		"Atelier Lefèvre", "Müller & Söhne", "Café Olé", "Sakura Trading 桜"}
	demoCities   = []string{"Lyon", "Brussels", "Antwerp", "Berlin", "Porto", "Madrid", "Milano", "Ghent", "Namur", "Kraków"}
	demoCountry  = []string{"FR", "BE", "BE", "DE", "PT", "ES", "IT", "BE", "BE", "PL"}
	demoProducts = []struct {
		name  string
		price float64
	}{
		{"Office Chair", 70}, {"Desk Combination", 450}, {"Large Cabinet", 320}, {"Customizable Desk", 750},
		{"Acoustic Bloc Screens", 287.5}, {"Conference Chair", 33}, {"Drawer Black", 25}, {"Storage Box", 15.8},
		{"Corner Desk Left Sit", 85}, {"Four Person Desk", 2350}, {"Pedal Bin", 47}, {"Cable Management Box", 100},
	}
	demoNotes = []string{"Deliver before noon", "Customer asked for a discount", "Invoice to HQ, \"Attn: Accounts\"",
		"Line 1: gift wrap\nLine 2: no invoice in the box", "Rush order", "Paid by wire; ref 2026/0042"}
)

// workload writes ERP-like transactions at a steady rate.
type workload struct {
	dsn  string
	rate float64
	rng  *rand.Rand

	conn    *pgx.Conn
	txs     atomic.Uint64
	lastXID atomic.Uint32 // XID of the last committed transaction that changed rows
	hasXID  atomic.Bool
	ticks   uint64
}

// run writes until ctx is done. Errors from single transactions (e.g. a
// constraint someone's manual change broke) are reported through warn and
// skipped; losing the connection ends run with the error.
func (w *workload) run(ctx context.Context, warn func(error)) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, w.dsn)
	cancel()
	if err != nil {
		return err
	}
	w.conn = conn
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET application_name = 'erp-demo-workload'"); err != nil {
		return err
	}

	// A few customers to start with.
	for i := 0; i < 4 && ctx.Err() == nil; i++ {
		if err := w.tx(ctx, w.newPartner); err != nil && ctx.Err() == nil {
			warn(err)
		}
	}
	if w.rate <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / w.rate))
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := w.step(ctx)
		switch {
		case err == nil:
			failures = 0
		case ctx.Err() != nil:
			return nil
		case conn.IsClosed():
			return err
		default:
			warn(err)
			if failures++; failures >= 20 {
				return fmt.Errorf("20 transactions in a row failed, stopping the workload: %w", err)
			}
		}
	}
}

// step runs one transaction, chosen at random with ERP-like weights.
func (w *workload) step(ctx context.Context) error {
	w.ticks++
	if w.ticks%75 == 0 {
		return w.tx(ctx, w.truncateScratch) // the "nightly" clean-up
	}
	ops := []struct {
		weight int
		fn     func(context.Context, pgx.Tx, int) (bool, error)
	}{
		{3, w.newPartner}, {3, w.editPartner}, {5, w.newOrder}, {2, w.confirmOrder}, {3, w.editLine},
		{1, w.deleteLine}, {1, w.cancelOrder}, {1, w.deleteCancelledOrder}, {1, w.deletePartner},
		{1, w.login}, {1, w.rawFix}, {2, w.scratch},
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	n := w.rng.IntN(total)
	for _, o := range ops {
		if n < o.weight {
			return w.tx(ctx, o.fn)
		}
		n -= o.weight
	}
	return nil
}

// tx runs fn in a transaction as a random user and remembers its XID when
// it changed something.
func (w *workload) tx(ctx context.Context, fn func(context.Context, pgx.Tx, int) (bool, error)) error {
	uid := 2 + w.rng.IntN(4)
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		return err
	}
	changed, err := fn(ctx, tx, uid)
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	w.txs.Add(1)
	if changed {
		w.lastXID.Store(uint32(xid))
		w.hasXID.Store(true)
	}
	return nil
}

func (w *workload) pick(items []string) string { return items[w.rng.IntN(len(items))] }

// randomID returns a random id from query, or 0 when it returns no row.
func randomID(ctx context.Context, tx pgx.Tx, query string) (int, error) {
	var id int
	err := tx.QueryRow(ctx, query).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return id, err
}

const nowUTC = "(now() AT TIME ZONE 'UTC')"

func (w *workload) newPartner(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	i := w.rng.IntN(len(demoCities))
	name := w.pick(demoCompanies)
	email := fmt.Sprintf("contact%d@%s.example", w.rng.IntN(1000), slug(name))
	var id int
	err := tx.QueryRow(ctx, `INSERT INTO res_partner (name, email, phone, city, country_code, is_company, credit_limit, create_uid, write_uid)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id`,
		name, email, fmt.Sprintf("+32 %03d %02d %02d %02d", w.rng.IntN(1000), w.rng.IntN(100), w.rng.IntN(100), w.rng.IntN(100)),
		demoCities[i], demoCountry[i], w.rng.IntN(3) > 0, fmt.Sprintf("%d.00", 1000*w.rng.IntN(20)), uid).Scan(&id)
	return err == nil, err
}

func (w *workload) editPartner(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	id, err := randomID(ctx, tx, "SELECT id FROM res_partner ORDER BY random() LIMIT 1")
	if err != nil || id == 0 {
		return false, err
	}
	var sql string
	var arg any
	switch w.rng.IntN(3) {
	case 0:
		sql, arg = "phone = $1", fmt.Sprintf("+32 %03d %02d %02d %02d", w.rng.IntN(1000), w.rng.IntN(100), w.rng.IntN(100), w.rng.IntN(100))
	case 1:
		sql, arg = "city = $1", w.pick(demoCities)
	default:
		sql, arg = "credit_limit = $1", fmt.Sprintf("%d.00", 1000*w.rng.IntN(50))
	}
	tag, err := tx.Exec(ctx, "UPDATE res_partner SET "+sql+", write_uid = $2, write_date = "+nowUTC+" WHERE id = $3", arg, uid, id)
	return tag.RowsAffected() > 0, err
}

func (w *workload) newOrder(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	partner, err := randomID(ctx, tx, "SELECT id FROM res_partner ORDER BY random() LIMIT 1")
	if err != nil {
		return false, err
	}
	if partner == 0 {
		return w.newPartner(ctx, tx, uid)
	}
	var note any
	if w.rng.IntN(3) == 0 {
		note = w.pick(demoNotes)
	}
	var order int
	err = tx.QueryRow(ctx, `INSERT INTO sale_order (name, partner_id, user_id, note, create_uid, write_uid)
		VALUES ('S' || lpad(nextval('sale_order_seq')::text, 5, '0'), $1, $2, $3, $2, $2) RETURNING id`,
		partner, uid, note).Scan(&order)
	if err != nil {
		return false, err
	}
	for n := 1 + w.rng.IntN(3); n > 0; n-- {
		p := demoProducts[w.rng.IntN(len(demoProducts))]
		qty := 1 + w.rng.IntN(10)
		if _, err := tx.Exec(ctx, `INSERT INTO sale_order_line (order_id, product, quantity, price_unit, price_subtotal, create_uid, write_uid)
			VALUES ($1, $2, $3::numeric, $4::numeric, $3::numeric * $4::numeric, $5, $5)`, order, p.name, qty, p.price, uid); err != nil {
			return false, err
		}
	}
	return true, w.recompute(ctx, tx, order, uid)
}

// recompute stores an order's total, as the ORM's computed field would.
func (w *workload) recompute(ctx context.Context, tx pgx.Tx, order, uid int) error {
	_, err := tx.Exec(ctx, `UPDATE sale_order SET amount_total = COALESCE((SELECT sum(price_subtotal) FROM sale_order_line WHERE order_id = $1), 0),
		write_uid = $2, write_date = `+nowUTC+` WHERE id = $1`, order, uid)
	return err
}

func (w *workload) confirmOrder(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	id, err := randomID(ctx, tx, "SELECT id FROM sale_order WHERE state IN ('draft', 'sent') ORDER BY random() LIMIT 1")
	if err != nil || id == 0 {
		return false, err
	}
	next := "sale"
	if w.rng.IntN(3) == 0 {
		next = "sent"
	}
	tag, err := tx.Exec(ctx, "UPDATE sale_order SET state = $1, write_uid = $2, write_date = "+nowUTC+" WHERE id = $3", next, uid, id)
	return tag.RowsAffected() > 0, err
}

func (w *workload) editLine(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	var line, order int
	err := tx.QueryRow(ctx, `SELECT l.id, l.order_id FROM sale_order_line l JOIN sale_order o ON o.id = l.order_id
		WHERE o.state IN ('draft', 'sent') ORDER BY random() LIMIT 1`).Scan(&line, &order)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if w.rng.IntN(2) == 0 {
		_, err = tx.Exec(ctx, `UPDATE sale_order_line SET quantity = $1, price_subtotal = $1::numeric * price_unit * (1 - discount / 100),
			write_uid = $2, write_date = `+nowUTC+` WHERE id = $3`, 1+w.rng.IntN(12), uid, line)
	} else {
		_, err = tx.Exec(ctx, `UPDATE sale_order_line SET discount = $1::numeric, price_subtotal = quantity * price_unit * (1 - $1::numeric / 100),
			write_uid = $2, write_date = `+nowUTC+` WHERE id = $3`, []int{0, 5, 10, 15}[w.rng.IntN(4)], uid, line)
	}
	if err != nil {
		return false, err
	}
	return true, w.recompute(ctx, tx, order, uid)
}

func (w *workload) deleteLine(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	var line, order int
	err := tx.QueryRow(ctx, `SELECT l.id, l.order_id FROM sale_order_line l JOIN sale_order o ON o.id = l.order_id
		WHERE o.state = 'draft' AND (SELECT count(*) FROM sale_order_line x WHERE x.order_id = o.id) > 1
		ORDER BY random() LIMIT 1`).Scan(&line, &order)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM sale_order_line WHERE id = $1", line); err != nil {
		return false, err
	}
	return true, w.recompute(ctx, tx, order, uid)
}

func (w *workload) cancelOrder(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	id, err := randomID(ctx, tx, "SELECT id FROM sale_order WHERE state <> 'cancel' ORDER BY random() LIMIT 1")
	if err != nil || id == 0 {
		return false, err
	}
	tag, err := tx.Exec(ctx, "UPDATE sale_order SET state = 'cancel', write_uid = $1, write_date = "+nowUTC+" WHERE id = $2", uid, id)
	return tag.RowsAffected() > 0, err
}

// deleteCancelledOrder unlinks a cancelled order; its lines go with it
// (ON DELETE CASCADE), one delete event each.
func (w *workload) deleteCancelledOrder(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	id, err := randomID(ctx, tx, "SELECT id FROM sale_order WHERE state = 'cancel' ORDER BY random() LIMIT 1")
	if err != nil || id == 0 {
		return false, err
	}
	tag, err := tx.Exec(ctx, "DELETE FROM sale_order WHERE id = $1", id)
	return tag.RowsAffected() > 0, err
}

func (w *workload) deletePartner(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	id, err := randomID(ctx, tx, `SELECT id FROM res_partner p WHERE NOT EXISTS (SELECT 1 FROM sale_order o WHERE o.partner_id = p.id)
		ORDER BY random() LIMIT 1`)
	if err != nil || id == 0 {
		return false, err
	}
	tag, err := tx.Exec(ctx, "DELETE FROM res_partner WHERE id = $1", id)
	return tag.RowsAffected() > 0, err
}

// login records a login the way Odoo does: a res_users_log row whose
// create_uid is the user.
func (w *workload) login(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	tag, err := tx.Exec(ctx, "INSERT INTO res_users_log (create_uid, write_uid) VALUES ($1, $1)", uid)
	return tag.RowsAffected() > 0, err
}

// rawFix changes an order's total with raw SQL, leaving write_uid and
// write_date alone: what a DBA "fixing" data by hand looks like.
func (w *workload) rawFix(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	id, err := randomID(ctx, tx, "SELECT id FROM sale_order WHERE amount_total > 0 ORDER BY random() LIMIT 1")
	if err != nil || id == 0 {
		return false, err
	}
	tag, err := tx.Exec(ctx, "UPDATE sale_order SET amount_total = round(amount_total * 0.9, 2), note = 'adjusted by hand' WHERE id = $1", id)
	return tag.RowsAffected() > 0, err
}

func (w *workload) scratch(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	tag, err := tx.Exec(ctx, "INSERT INTO demo_scratch (payload) SELECT 'batch row ' || g FROM generate_series(1, $1) g", 1+w.rng.IntN(3))
	return tag.RowsAffected() > 0, err
}

func (w *workload) truncateScratch(ctx context.Context, tx pgx.Tx, uid int) (bool, error) {
	_, err := tx.Exec(ctx, "TRUNCATE demo_scratch")
	return err == nil, err
}

func slug(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b = append(b, byte(r))
		case r >= 'A' && r <= 'Z':
			b = append(b, byte(r-'A'+'a'))
		}
	}
	if len(b) == 0 {
		return "example"
	}
	return string(b)
}
