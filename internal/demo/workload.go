package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
)

// The demo's workload: the Odoo 18 fixture (internal/odoosim) used by
// admin, alice, bob and carol from their browsers, with the SQL Odoo sends.
// They log in from laptops and phones, edit, create, confirm, cancel and
// delete quotations and contacts; admin changes a salesperson's groups and
// logs a session out; an hour passes now and then (so sessions leave fresh
// device rows) and people change networks; a webshop connector names the
// user it acts for in a logical decoding message; and every 40 requests
// someone "fixes" an order total at a psql prompt.

// demoDevices are the devices each user works from.
var demoDevices = map[int64][]odoosim.Device{
	odoosim.Admin: {
		{IP: "192.0.2.2", Platform: "linux", Browser: "firefox", Country: "Belgium", City: "Brussels"},
		{IP: "192.0.2.3", Platform: "ipad", Browser: "safari", Country: "Netherlands", City: "Amsterdam"},
	},
	odoosim.Alice: {
		{IP: "198.51.100.10", Platform: "linux", Browser: "chrome", Country: "France", City: "Lyon"},
		{IP: "198.51.100.11", Platform: "android", Browser: "chrome", Country: "France", City: "Lyon"},
	},
	odoosim.Bob: {
		{IP: "198.51.100.20", Platform: "windows", Browser: "firefox", Country: "Belgium", City: "Namur"},
		{IP: "198.51.100.21", Platform: "windows", Browser: "edge", Country: "Belgium", City: "Namur"},
	},
	odoosim.Carol: {
		{IP: "203.0.113.30", Platform: "macos", Browser: "safari", Country: "Belgium", City: "Ghent"},
		{IP: "203.0.113.31", Platform: "iphone", Browser: "safari", Country: "Belgium", City: "Ghent"},
	},
}

// demoSalespeople are the users the workload acts as most of the time.
var demoSalespeople = []int64{odoosim.Alice, odoosim.Bob, odoosim.Carol}

var (
	demoCompanies = []string{"Gemini Furniture", "Lumber Inc", "Ready Mat", "The Jackson Group", "Acme Corp",
		"Nordic Fittings", "Atelier Lefèvre", "Müller & Söhne", "Café Olé", "Sakura Trading 桜"}
	demoCities   = []string{"Lyon", "Brussels", "Antwerp", "Berlin", "Porto", "Madrid", "Milano", "Ghent", "Namur", "Kraków"}
	demoCountry  = []string{"FR", "BE", "BE", "DE", "PT", "ES", "IT", "BE", "BE", "PL"}
	demoProducts = []odoosim.Line{
		{Product: "[FURN_0269] Office Chair Black", Price: 170}, {Product: "[FURN_7800] Desk Combination", Price: 450},
		{Product: "[E-COM07] Large Cabinet", Price: 320}, {Product: "[FURN_0096] Customizable Desk", Price: 750},
		{Product: "[FURN_6666] Acoustic Bloc Screens", Price: 295}, {Product: "[E-COM06] Conference Chair", Price: 33},
		{Product: "[FURN_0001] Drawer Black", Price: 21}, {Product: "[E-COM08] Storage Box", Price: 15.8},
		{Product: "[FURN_8220] Four Person Desk", Price: 2350}, {Product: "[FURN_0004] Pedal Bin", Price: 47},
	}
	demoNotes = []string{"Deliver before noon", "Customer asked for a discount", "Invoice to HQ, \"Attn: Accounts\"",
		"Line 1: gift wrap\nLine 2: no invoice in the box", "Rush order", "Paid by wire; ref 2026/0042"}
)

// RawEditEvery is how often (in workload requests) someone edits an order
// total at a psql prompt.
const RawEditEvery = 40

// workload plays the users at a steady rate.
type workload struct {
	dsn  string
	rate float64
	rng  *rand.Rand

	conn     *pgx.Conn
	sim      *odoosim.Sim
	sessions map[int64][]*odoosim.Session // each user's live sessions
	txs      atomic.Uint64
	lastXID  atomic.Uint32 // XID of the last committed transaction that changed rows
	hasXID   atomic.Bool
	ticks    uint64
}

// run plays until ctx is done. Errors of single requests (e.g. a constraint
// someone's manual change broke) are reported through warn and skipped;
// losing the connection ends run with the error.
func (w *workload) run(ctx context.Context, warn func(error)) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, w.dsn)
	cancel()
	if err != nil {
		return err
	}
	w.conn = conn
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET application_name = 'odoo'"); err != nil {
		return err
	}
	w.sim = odoosim.New(conn)
	w.sessions = map[int64][]*odoosim.Session{}

	// Everyone logs in and opens something.
	for _, uid := range []int64{odoosim.Admin, odoosim.Alice, odoosim.Bob, odoosim.Carol} {
		if ctx.Err() != nil {
			return nil
		}
		if err := w.record(w.request(ctx, uid, w.editOrder)); err != nil && ctx.Err() == nil {
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
		err := w.record(w.step(ctx))
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
				return fmt.Errorf("20 requests in a row failed, stopping the workload: %w", err)
			}
		}
	}
}

// record counts a transaction and remembers its XID.
func (w *workload) record(xid uint32, err error) error {
	if err == nil && xid != 0 {
		w.txs.Add(1)
		w.lastXID.Store(xid)
		w.hasXID.Store(true)
	}
	return err
}

// step runs one request (or psql statement), chosen at random with
// ERP-like weights.
func (w *workload) step(ctx context.Context) (uint32, error) {
	w.ticks++
	if w.ticks%RawEditEvery == 7 {
		return w.rawEdit(ctx)
	}
	ops := []struct {
		weight int
		fn     func(context.Context) (uint32, error)
	}{
		{6, w.asSalesperson(w.editOrder)}, {4, w.asSalesperson(w.newOrder)}, {2, w.asSalesperson(w.confirmOrder)},
		{2, w.asSalesperson(w.editPartner)}, {2, w.asSalesperson(w.newPartner)}, {2, w.asSalesperson(w.deleteLine)},
		{1, w.asSalesperson(w.cancelOrder)}, {1, w.asSalesperson(w.deleteCancelledOrder)}, {1, w.asSalesperson(w.deletePartner)},
		{1, w.asSalesperson(w.createAPIKey)}, {1, w.groupChange}, {1, w.revoke}, {1, w.newDevice}, {1, w.moveNetwork},
		{1, w.hourPasses}, {1, w.webshop},
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	n := w.rng.IntN(total)
	for _, o := range ops {
		if n < o.weight {
			return o.fn(ctx)
		}
		n -= o.weight
	}
	return 0, nil
}

func (w *workload) pick(items []string) string { return items[w.rng.IntN(len(items))] }

// session returns one of the user's live sessions, logging the user in
// (on one of their devices) when they have none.
func (w *workload) session(ctx context.Context, uid int64) (*odoosim.Session, error) {
	if live := w.sessions[uid]; len(live) > 0 {
		return live[w.rng.IntN(len(live))], nil
	}
	return w.login(ctx, uid)
}

// login logs the user in on one of their devices: the res_users_log row,
// then a new session (its device row comes with its first request).
func (w *workload) login(ctx context.Context, uid int64) (*odoosim.Session, error) {
	xid, err := w.sim.Login(ctx, uid)
	if err := w.record(xid, err); err != nil {
		return nil, err
	}
	devs := demoDevices[uid]
	s := w.sim.NewDevice(uid, devs[w.rng.IntN(len(devs))])
	w.sessions[uid] = append(w.sessions[uid], s)
	return s, nil
}

// request runs fn as a request of one of the user's sessions.
func (w *workload) request(ctx context.Context, uid int64, fn func(e *odoosim.Env) error) (uint32, error) {
	s, err := w.session(ctx, uid)
	if err != nil {
		return 0, err
	}
	xid, err := s.Request(ctx, fn)
	if errors.Is(err, errNothingToDo) {
		return xid, nil
	}
	return xid, err
}

// errNothingToDo makes a request that found nothing to work on roll back.
var errNothingToDo = errors.New("nothing to do")

// asSalesperson runs fn as a request of alice, bob or carol.
func (w *workload) asSalesperson(fn func(e *odoosim.Env) error) func(context.Context) (uint32, error) {
	return func(ctx context.Context) (uint32, error) {
		return w.request(ctx, demoSalespeople[w.rng.IntN(len(demoSalespeople))], fn)
	}
}

// randomID returns a random id from query, or errNothingToDo.
func randomID(e *odoosim.Env, query string, args ...any) (int64, error) {
	var id int64
	err := e.Tx.QueryRow(e.Ctx, query, args...).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errNothingToDo
	}
	return id, err
}

func (w *workload) editOrder(e *odoosim.Env) error {
	id, err := randomID(e, "SELECT id FROM sale_order WHERE state IN ('draft', 'sent') ORDER BY random() LIMIT 1")
	if err != nil {
		return err
	}
	var vals odoosim.Vals
	switch w.rng.IntN(3) {
	case 0:
		vals = odoosim.Vals{"note": w.pick(demoNotes)}
	case 1:
		vals = odoosim.Vals{"client_order_ref": fmt.Sprintf("PO-%04d", w.rng.IntN(10000))}
	default:
		vals = odoosim.Vals{"validity_date": time.Now().AddDate(0, 0, 15+w.rng.IntN(30)).Format(time.DateOnly)}
	}
	return e.WriteOrder(id, vals)
}

func (w *workload) newOrder(e *odoosim.Env) error {
	partner, err := randomID(e, "SELECT id FROM res_partner WHERE is_company AND id >= 10 AND active ORDER BY random() LIMIT 1")
	if err != nil {
		return err
	}
	var lines []odoosim.Line
	for n := 1 + w.rng.IntN(3); n > 0; n-- {
		l := demoProducts[w.rng.IntN(len(demoProducts))]
		l.Qty = float64(1 + w.rng.IntN(10))
		l.Discount = float64([]int{0, 0, 0, 5, 10}[w.rng.IntN(5)])
		lines = append(lines, l)
	}
	_, _, err = e.CreateOrderWithLines(partner, lines)
	return err
}

func (w *workload) confirmOrder(e *odoosim.Env) error {
	id, err := randomID(e, "SELECT id FROM sale_order WHERE state IN ('draft', 'sent') ORDER BY random() LIMIT 1")
	if err != nil {
		return err
	}
	state := "sale"
	if w.rng.IntN(3) == 0 {
		state = "sent"
	}
	return e.WriteOrder(id, odoosim.Vals{"state": state})
}

func (w *workload) cancelOrder(e *odoosim.Env) error {
	id, err := randomID(e, "SELECT id FROM sale_order WHERE state <> 'cancel' ORDER BY random() LIMIT 1")
	if err != nil {
		return err
	}
	return e.WriteOrder(id, odoosim.Vals{"state": "cancel"})
}

// deleteCancelledOrder unlinks a cancelled order: a lone DELETE (its lines
// go with it), which names nobody.
func (w *workload) deleteCancelledOrder(e *odoosim.Env) error {
	id, err := randomID(e, "SELECT id FROM sale_order WHERE state = 'cancel' ORDER BY random() LIMIT 1")
	if err != nil {
		return err
	}
	return e.DeleteOrder(id)
}

// deleteLine unlinks a line of a draft order; the order's recompute names
// the deleter.
func (w *workload) deleteLine(e *odoosim.Env) error {
	id, err := randomID(e, `SELECT l.id FROM sale_order_line l JOIN sale_order o ON o.id = l.order_id
		WHERE o.state = 'draft' AND (SELECT count(*) FROM sale_order_line x WHERE x.order_id = o.id) > 1
		ORDER BY random() LIMIT 1`)
	if err != nil {
		return err
	}
	return e.DeleteOrderLine(id)
}

func (w *workload) newPartner(e *odoosim.Env) error {
	i := w.rng.IntN(len(demoCities))
	name := w.pick(demoCompanies)
	_, err := e.CreatePartner(name, fmt.Sprintf("contact%d@%s.example", w.rng.IntN(1000), slug(name)), demoCities[i], demoCountry[i])
	return err
}

func (w *workload) editPartner(e *odoosim.Env) error {
	id, err := randomID(e, "SELECT id FROM res_partner WHERE id >= 10 AND active ORDER BY random() LIMIT 1")
	if err != nil {
		return err
	}
	var vals odoosim.Vals
	switch w.rng.IntN(3) {
	case 0:
		vals = odoosim.Vals{"phone": fmt.Sprintf("+32 %03d %02d %02d %02d", w.rng.IntN(1000), w.rng.IntN(100), w.rng.IntN(100), w.rng.IntN(100))}
	case 1:
		vals = odoosim.Vals{"city": w.pick(demoCities)}
	default:
		// company_dependent: a jsonb of values per company id, as Odoo 18 stores it
		vals = odoosim.Vals{"credit_limit": map[string]float64{"1": float64(1000 * w.rng.IntN(50))}}
	}
	return e.WritePartner(id, vals)
}

// deletePartner unlinks a contact nothing refers to: a lone DELETE.
func (w *workload) deletePartner(e *odoosim.Env) error {
	id, err := randomID(e, `SELECT id FROM res_partner p WHERE id >= 15
		AND NOT EXISTS (SELECT 1 FROM sale_order o WHERE p.id IN (o.partner_id, o.partner_invoice_id, o.partner_shipping_id))
		AND NOT EXISTS (SELECT 1 FROM res_users u WHERE u.partner_id = p.id)
		ORDER BY random() LIMIT 1`)
	if err != nil {
		return err
	}
	return e.DeletePartner(id)
}

// createAPIKey makes an API key: its key and index are secrets, shown
// redacted.
func (w *workload) createAPIKey(e *odoosim.Env) error {
	_, err := e.CreateAPIKey(w.pick([]string{"CI pipeline", "Reporting", "Mobile app", "Zapier"}), "rpc")
	return err
}

// groupChange: admin gives or takes "Sales / User: All Documents" (a
// many2many change with the write of the user record).
func (w *workload) groupChange(ctx context.Context) (uint32, error) {
	target := demoSalespeople[w.rng.IntN(len(demoSalespeople))]
	return w.request(ctx, odoosim.Admin, func(e *odoosim.Env) error {
		var member bool
		if err := e.Tx.QueryRow(e.Ctx, "SELECT EXISTS (SELECT 1 FROM res_groups_users_rel WHERE uid = $1 AND gid = $2)",
			target, odoosim.GroupSaleAllLeads).Scan(&member); err != nil {
			return err
		}
		if member {
			return e.SetGroups(target, nil, []int64{odoosim.GroupSaleAllLeads})
		}
		return e.SetGroups(target, []int64{odoosim.GroupSaleAllLeads}, nil)
	})
}

// revoke: admin logs one of a salesperson's sessions out ("log out of this
// device"); that user logs in again when next at work.
func (w *workload) revoke(ctx context.Context) (uint32, error) {
	uid := demoSalespeople[w.rng.IntN(len(demoSalespeople))]
	live := w.sessions[uid]
	if len(live) == 0 {
		return 0, nil
	}
	i := w.rng.IntN(len(live))
	xid, err := w.request(ctx, odoosim.Admin, func(e *odoosim.Env) error { return e.RevokeSession(live[i]) })
	if err == nil {
		w.sessions[uid] = append(live[:i:i], live[i+1:]...)
	}
	return xid, err
}

// newDevice: a salesperson logs in on another of their devices.
func (w *workload) newDevice(ctx context.Context) (uint32, error) {
	uid := demoSalespeople[w.rng.IntN(len(demoSalespeople))]
	if len(w.sessions[uid]) >= 3 {
		return 0, nil
	}
	s, err := w.login(ctx, uid)
	if err != nil {
		return 0, err
	}
	xid, err := s.Request(ctx, w.editPartner)
	if errors.Is(err, errNothingToDo) {
		err = nil
	}
	return xid, err
}

// moveNetwork: a session's next request comes from another IP address (a
// phone leaving the office wifi): Odoo logs the new device.
func (w *workload) moveNetwork(ctx context.Context) (uint32, error) {
	uid := demoSalespeople[w.rng.IntN(len(demoSalespeople))]
	s, err := w.session(ctx, uid)
	if err != nil {
		return 0, err
	}
	s.Device.IP = fmt.Sprintf("198.51.100.%d", 100+w.rng.IntN(150))
	xid, err := s.Request(ctx, w.editOrder)
	if errors.Is(err, errNothingToDo) {
		err = nil
	}
	return xid, err
}

// hourPasses: for one session an hour goes by; its next request leaves a
// fresh device row (Odoo writes one per device per hour).
func (w *workload) hourPasses(ctx context.Context) (uint32, error) {
	uid := demoSalespeople[w.rng.IntN(len(demoSalespeople))]
	s, err := w.session(ctx, uid)
	if err != nil {
		return 0, err
	}
	s.Age(time.Hour)
	if w.rng.IntN(2) == 0 {
		return s.Visit(ctx) // a page view: the device row on its own
	}
	xid, err := s.Request(ctx, w.confirmOrder)
	if errors.Is(err, errNothingToDo) {
		err = nil
	}
	return xid, err
}

// webshop: a connector that opted in names the user and session it acts
// for in a logical decoding message, and creates a contact with raw SQL.
func (w *workload) webshop(ctx context.Context) (uint32, error) {
	uid := demoSalespeople[w.rng.IntN(len(demoSalespeople))]
	s, err := w.session(ctx, uid)
	if err != nil {
		return 0, err
	}
	i := w.rng.IntN(len(demoCities))
	return w.sim.Transaction(ctx, uid, func(e *odoosim.Env) error {
		if err := e.EmitMessage(uid, s.Identifier()); err != nil {
			return err
		}
		name := fmt.Sprintf("Webshop customer %d", w.rng.IntN(100000))
		_, err := e.Tx.Exec(e.Ctx, `INSERT INTO res_partner (name, complete_name, email, city, country_id, type, active, is_company)
			VALUES ($1, $1, $2, $3, $4, 'contact', true, false)`, name, fmt.Sprintf("shop%d@example.com", w.rng.IntN(100000)), demoCities[i], odoosim.CountryID(demoCountry[i]))
		return err
	})
}

// rawEdit changes an order's total at a psql prompt, leaving write_uid and
// write_date alone: what cdcaudit flags orm_bypass.
func (w *workload) rawEdit(ctx context.Context) (uint32, error) {
	var id int64
	var total string
	err := w.conn.QueryRow(ctx, "SELECT id, round(amount_total * 0.9, 2)::text FROM sale_order WHERE amount_total > 0 ORDER BY random() LIMIT 1").Scan(&id, &total)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return w.sim.RawSQLEdit(ctx, id, total)
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
