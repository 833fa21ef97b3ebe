package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
)

// TestAttributionDeletes: a delete names no one in its row; its
// before-image's write_uid is the last writer, never the deleter. Deleting
// an order line recomputes the order, stamped by the deleter: the delete is
// the deleter's through that peer (tx_peer). A lone delete is left
// unattributed, unless its request carries a device row (session_row).
func TestAttributionDeletes(t *testing.T) {
	r := startOdoo(t)
	alice := r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	bob := r.sim.NewDevice(odoosim.Bob, bobDesktop)
	var partner int64
	r.request(alice, func(e *odoosim.Env) (err error) {
		partner, err = e.CreatePartner("Ready Mat", "ready.mat28@example.com", "Fremont", "US")
		return err
	})
	r.request(bob, writeOrder(3, odoosim.Vals{"note": "bob's first request"}))
	var carolLine int64
	if err := r.ctl.QueryRow(r.ctx, "SELECT min(id) FROM sale_order_line WHERE order_id = 4").Scan(&carolLine); err != nil {
		t.Fatal(err)
	}
	delLine := r.request(bob, func(e *odoosim.Env) error { return e.DeleteOrderLine(carolLine) })
	delOrder := r.request(bob, func(e *odoosim.Env) error { return e.DeleteOrder(1) }) // alice's, with its two lines
	delPartner := r.request(bob, func(e *odoosim.Env) error { return e.DeletePartner(13) })
	// From a new network: the request's device row names bob.
	bob.Device.IP = "198.51.100.21"
	delWithDevice := r.request(bob, func(e *odoosim.Env) error { return e.DeletePartner(partner) })
	evs := r.stop()

	bobOnly := who{odoosim.Bob, "", sid(bob), "only_active"}
	line := one(t, evs, delLine, "sale_order_line", "delete")
	if got := value(line.BeforeRow, "write_uid"); got != "8" {
		t.Fatalf("%s: before-image write_uid %s, want 8 (carol's line)", describe(line), got)
	}
	bobOnly.userVia = "tx_peer"
	checkActor(t, line, bobOnly, "bob's delete of carol's order line, next to the order's recompute")
	bobOnly.userVia = "row_user"
	checkActor(t, one(t, evs, delLine, "sale_order", "update"), bobOnly, "the order's recompute, stamped by bob")

	lone := txEvents(evs, delOrder)
	if len(lone) != 3 {
		t.Fatalf("deleting order 1: %d events, want 3 (the order and its two lines)", len(lone))
	}
	for _, e := range lone {
		if e.Op != "delete" || value(e.BeforeRow, "write_uid") != "6" {
			t.Fatalf("deleting order 1: %s, before-image write_uid %s; want deletes of alice's rows", describe(e), value(e.BeforeRow, "write_uid"))
		}
		checkActor(t, e, who{}, "a lone delete (never the before-image's write_uid, alice)")
	}
	checkActor(t, one(t, evs, delPartner, "res_partner", "delete"), who{}, "a lone delete of a partner")
	p := one(t, evs, delWithDevice, "res_partner", "delete")
	if value(p.BeforeRow, "write_uid") != "6" {
		t.Errorf("%s: before-image write_uid %s, want 6", describe(p), value(p.BeforeRow, "write_uid"))
	}
	checkActor(t, p, who{odoosim.Bob, "session_row", sid(bob), "same_tx"}, "a delete in a request that carries bob's device row")
}

// TestAttributionMany2Many: admin changes bob's groups. The relation
// table has no audit columns: its inserts and deletes are admin's through
// the write of bob's user record in the same transaction (tx_peer).
func TestAttributionMany2Many(t *testing.T) {
	r := startOdoo(t)
	admin := r.sim.NewDevice(odoosim.Admin, adminDesk)
	r.request(admin, func(e *odoosim.Env) error { return e.SetConfigParameter("mail.catchall.domain", "example.com") })
	tx := r.request(admin, func(e *odoosim.Env) error {
		// GroupUser: bob is a member already, ON CONFLICT DO NOTHING writes nothing.
		return e.SetGroups(odoosim.Bob, []int64{odoosim.GroupUser, odoosim.GroupSaleAllLeads, odoosim.GroupSaleManager}, []int64{odoosim.GroupSaleSalesman})
	})
	evs := r.stop()

	ins := pick(evs, tx, "res_groups_users_rel", "insert")
	del := pick(evs, tx, "res_groups_users_rel", "delete")
	if len(ins) != 2 || len(del) != 1 {
		t.Fatalf("relation changes: %d inserts, %d deletes; want 2 and 1", len(ins), len(del))
	}
	for _, e := range append(ins, del...) {
		checkActor(t, e, who{odoosim.Admin, "tx_peer", sid(admin), "only_active"}, "a many2many change, next to the write of the owning record")
		if model(e) != "" {
			t.Errorf("%s: model %q, want null (a relation table is no model's table)", describe(e), model(e))
		}
	}
	u := one(t, evs, tx, "res_users", "update")
	checkActor(t, u, who{odoosim.Admin, "row_user", sid(admin), "only_active"}, "the write of bob's user record")
	if model(u) != "res.users" || len(u.FlagList) != 0 {
		t.Errorf("%s: model %q flags %v, want res.users and none", describe(u), model(u), u.FlagList)
	}
}

// TestAttributionMessage: an application that opts in names the user (and
// session) with a logical decoding message in the transaction; it decides
// for every change of it. Malformed messages and other prefixes are
// ignored.
func TestAttributionMessage(t *testing.T) {
	r := startOdoo(t)
	carol := r.sim.NewDevice(odoosim.Carol, carolMac)
	var p1, p2 int64
	r.request(carol, func(e *odoosim.Env) (err error) {
		if p1, err = e.CreatePartner("Ready Mat", "ready.mat28@example.com", "Fremont", "US"); err != nil {
			return err
		}
		p2, err = e.CreatePartner("The Jackson Group", "jackson.group82@example.com", "Turlock", "US")
		return err
	})
	// An integration acting for carol in her session: raw deletes and a
	// relation row, nothing that names her but the message.
	withSession := r.ok(r.sim.Transaction(r.ctx, odoosim.Carol, func(e *odoosim.Env) error {
		if err := e.EmitMessage(odoosim.Carol, carol.Identifier()); err != nil {
			return err
		}
		if err := e.DeletePartner(p1); err != nil {
			return err
		}
		_, err := e.Tx.Exec(e.Ctx, "INSERT INTO res_groups_users_rel (gid, uid) VALUES ($1, $2)", odoosim.GroupSaleManager, odoosim.Alice)
		return err
	}))
	withoutSession := r.ok(r.sim.Transaction(r.ctx, odoosim.Carol, func(e *odoosim.Env) error {
		if err := e.EmitMessage(odoosim.Carol, ""); err != nil {
			return err
		}
		return e.DeletePartner(p2)
	}))
	ignored := r.ok(r.sim.RawSQL(r.ctx, `SELECT pg_logical_emit_message(true, 'cdcaudit', 'not json'),
		pg_logical_emit_message(true, 'someone-else', '{"user_id": 8}'),
		pg_logical_emit_message(true, 'cdcaudit', '{"user_id": "8"}');
		DELETE FROM res_groups_users_rel WHERE gid = 8 AND uid = 6`))
	evs := r.stop()

	for _, e := range txEvents(evs, withSession) {
		checkActor(t, e, who{odoosim.Carol, "message", sid(carol), "message"},
			"a change of a transaction whose message names carol and her session (by its session_identifier: the event must show the session's pseudonym, never the identifier)")
	}
	if n := len(txEvents(evs, withSession)); n != 2 {
		t.Errorf("the message's transaction: %d events, want 2", n)
	}
	checkActor(t, one(t, evs, withoutSession, "res_partner", "delete"), who{odoosim.Carol, "message", sid(carol), "only_active"},
		"a message naming carol without a session: her only session")
	checkActor(t, one(t, evs, ignored, "res_groups_users_rel", "delete"), who{}, "malformed messages and other prefixes are no attribution")
}

// TestAttributionORMBypass: an update that changes business columns while
// write_date stays as it was did not come through the ORM: flagged
// orm_bypass, and its stale write_uid names no one. Odoo's own raw writes
// (password hash, TOTP secret, device log) and the ORM's second write of a
// row in one transaction are not flagged.
func TestAttributionORMBypass(t *testing.T) {
	r := startOdoo(t)
	alice := r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	carol := r.sim.NewDevice(odoosim.Carol, carolMac)
	admin := r.sim.NewDevice(odoosim.Admin, adminDesk)
	r.request(alice, writeOrder(2, odoosim.Vals{"note": "alice's first request"}))
	r.request(carol, writeOrder(4, odoosim.Vals{"note": "carol's first request"}))
	r.request(admin, writePartner(1, odoosim.Vals{"phone": "+32 2 555 00 00"}))
	var order int64
	create := r.request(alice, func(e *odoosim.Env) (err error) {
		order, _, err = e.CreateOrderWithLines(11, []odoosim.Line{{Product: "[FURN_7800] Desk Combination", Qty: 1, Price: 450}, {Product: "[FURN_0269] Office Chair Black", Qty: 4, Price: 170, Discount: 5}})
		return err
	})
	rawOrder := r.ok(r.sim.RawSQLEdit(r.ctx, 2, "1.00"))
	rawPartner := r.ok(r.sim.RawSQL(r.ctx, `UPDATE res_partner SET credit_limit = '{"1": 1000000}' WHERE id = 11`))
	revoke := r.request(admin, func(e *odoosim.Env) error { return e.RevokeSession(carol) })
	carolAgain := r.sim.NewDevice(odoosim.Carol, carolMac)
	totp := r.request(carolAgain, func(e *odoosim.Env) error { return e.SetTOTP(odoosim.Carol, odoosim.NewTOTPSecret()) })
	password := r.request(alice, func(e *odoosim.Env) error {
		return e.ChangePassword(odoosim.Alice, odoosim.HashPassword("alice-Autumn2026"))
	})
	evs := r.stop()

	t.Run("psql edits are flagged and unattributed", func(t *testing.T) {
		for _, x := range []struct {
			xid   uint32
			table string
		}{{rawOrder, "sale_order"}, {rawPartner, "res_partner"}} {
			e := one(t, evs, x.xid, x.table, "update")
			if !hasFlag(e, "orm_bypass") {
				t.Errorf("%s: flags %v, want orm_bypass (changed %v, write_date unchanged)", describe(e), e.FlagList, e.ChangedList)
			}
			checkActor(t, e, who{}, "a psql edit: its write_uid is the previous writer's, not the editor's")
		}
	})
	t.Run("the ORM writing a row twice in a transaction", func(t *testing.T) {
		ups := pick(evs, create, "sale_order", "update")
		if len(ups) != 1 || len(pick(evs, create, "sale_order", "insert")) != 1 {
			t.Fatalf("creating order %d: want its insert and the recompute's update", order)
		}
		if slices.Contains(ups[0].ChangedList, "write_date") {
			t.Fatalf("the recompute changed write_date: the fixture does not reproduce the case (changed %v)", ups[0].ChangedList)
		}
		for _, e := range txEvents(evs, create) {
			if len(e.FlagList) != 0 {
				t.Errorf("%s: flags %v: the flush of a computed field stamps the transaction's write_date again, it is no bypass", describe(e), e.FlagList)
			}
			if e.Table != "res_device_log" {
				checkActor(t, e, who{odoosim.Alice, "row_user", sid(alice), "only_active"}, "alice's new order, its lines and its recompute")
			}
		}
	})
	t.Run("Odoo's own raw writes", func(t *testing.T) {
		ups := pick(evs, password, "res_users", "update")
		if len(ups) != 2 {
			t.Fatalf("changing alice's password: %d res_users updates, want 2 (the raw hash, the ORM's stamp)", len(ups))
		}
		raw, stamp := ups[0], ups[1]
		if !slices.Equal(raw.ChangedList, []string{"password"}) {
			t.Fatalf("%s: changed %v, want [password]", describe(raw), raw.ChangedList)
		}
		for _, e := range ups {
			if len(e.FlagList) != 0 {
				t.Errorf("%s (changed %v): flags %v: Odoo hashes passwords with a raw UPDATE", describe(e), e.ChangedList, e.FlagList)
			}
		}
		checkActor(t, stamp, who{odoosim.Alice, "row_user", "*", ""}, "the ORM's stamp of alice's password change")
		checkActor(t, raw, who{odoosim.Alice, "tx_peer", "*", ""}, "the raw password UPDATE (its write_uid is stale; the stamp next to it is alice's)")

		tu := pick(evs, totp, "res_users", "update")
		if len(tu) != 2 || !slices.Equal(tu[0].ChangedList, []string{"totp_secret"}) {
			t.Fatalf("enabling carol's TOTP: %d res_users updates, want the raw totp_secret UPDATE and the stamp", len(tu))
		}
		for _, e := range tu {
			if len(e.FlagList) != 0 {
				t.Errorf("%s (changed %v): flags %v: auth_totp writes totp_secret with a raw UPDATE (res_users._inverse_totp_secret): "+
					"the Odoo profile's RawWrites must allowlist res_users.totp_secret", describe(e), e.ChangedList, e.FlagList)
			}
			checkActor(t, e, who{odoosim.Carol, "", sid(carolAgain), ""}, "carol enabling TOTP")
		}

		for _, e := range evs {
			if e.Table == "res_device_log" && len(e.FlagList) != 0 {
				t.Errorf("%s: flags %v: the device log is Odoo's own raw SQL", describe(e), e.FlagList)
			}
		}
		if len(pick(evs, revoke, "res_device_log", "update")) == 0 {
			t.Error("the revocation wrote no device row")
		}
	})
}

// TestAttributionModels: events name their Odoo model from ir_model,
// including models that existed before cdcaudit started, and follow
// ir_model as it changes.
func TestAttributionModels(t *testing.T) {
	r := startOdoo(t)
	s := r.sim.NewDevice(odoosim.Admin, adminDesk)
	var key odoosim.APIKey
	var line int64
	tx := r.request(s, func(e *odoosim.Env) (err error) {
		_, lines, err := e.CreateOrderWithLines(12, []odoosim.Line{{Product: "[E-COM07] Large Cabinet", Qty: 1, Price: 320}, {Product: "[E-COM08] Storage Box", Qty: 2, Price: 15.8}})
		if err != nil {
			return err
		}
		line = lines[1]
		if err := e.SetGroups(odoosim.Alice, []int64{odoosim.GroupSaleManager}, nil); err != nil {
			return err
		}
		if err := e.SetConfigParameter("sale.default_deposit_product_id", "7"); err != nil {
			return err
		}
		if err := e.WritePartner(10, odoosim.Vals{"vat": "US12345671"}); err != nil {
			return err
		}
		key, err = e.CreateAPIKey("reporting", "rpc")
		return err
	})
	del := r.request(s, func(e *odoosim.Env) error { return e.DeleteOrderLine(line) })
	// A custom model appears (Studio-style): its table, then its ir_model row.
	r.ok(r.sim.RawSQL(r.ctx, `CREATE TABLE x_fleet_vehicle (id serial PRIMARY KEY, x_name varchar, x_plate varchar,
		create_uid integer, create_date timestamp, write_uid integer, write_date timestamp);
		ALTER TABLE x_fleet_vehicle REPLICA IDENTITY FULL`))
	r.request(s, func(e *odoosim.Env) error {
		_, err := e.Create("ir_model", odoosim.Vals{"model": "x_fleet.vehicle", "name": map[string]string{"en_US": "Vehicle"}, "state": "manual"})
		return err
	})
	custom := r.request(s, func(e *odoosim.Env) error {
		_, err := e.Create("x_fleet_vehicle", odoosim.Vals{"x_name": "Delivery van", "x_plate": "1-ABC-123"})
		return err
	})
	r.request(s, func(e *odoosim.Env) error {
		_, err := e.Tx.Exec(e.Ctx, "DELETE FROM ir_model WHERE model = 'x_fleet.vehicle'")
		return err
	})
	after := r.request(s, func(e *odoosim.Env) error {
		_, err := e.Create("x_fleet_vehicle", odoosim.Vals{"x_name": "Truck", "x_plate": "1-XYZ-789"})
		return err
	})
	evs := r.stop()

	want := map[string]string{
		"sale_order": "sale.order", "sale_order_line": "sale.order.line", "res_users": "res.users",
		"res_groups_users_rel": "", "ir_config_parameter": "ir.config_parameter", "res_partner": "res.partner",
		"res_users_apikeys": "res.users.apikeys", "res_device_log": "res.device.log",
	}
	seen := map[string]bool{}
	for _, e := range txEvents(evs, tx) {
		seen[e.Table] = true
		if w, ok := want[e.Table]; !ok || model(e) != w {
			t.Errorf("%s: model %q, want %q", describe(e), model(e), w)
		}
	}
	for table := range want {
		if !seen[table] {
			t.Errorf("no event on %s in the transaction", table)
		}
	}
	if e := one(t, evs, del, "sale_order_line", "delete"); model(e) != "sale.order.line" {
		t.Errorf("%s: model %q, want sale.order.line", describe(e), model(e))
	}
	if e := one(t, evs, custom, "x_fleet_vehicle", "insert"); model(e) != "x_fleet.vehicle" {
		t.Errorf("%s: model %q, want x_fleet.vehicle (its ir_model row was created in the stream)", describe(e), model(e))
	}
	if e := one(t, evs, after, "x_fleet_vehicle", "insert"); model(e) != "" {
		t.Errorf("%s: model %q, want null (its ir_model row was deleted)", describe(e), model(e))
	}
	if key.ID == 0 {
		t.Error("no API key made")
	}
}

// TestAttributionProfileAutoDetected: without --profile, a database with
// res_users and res_device_log is audited with the Odoo profile.
func TestAttributionProfileAutoDetected(t *testing.T) {
	r := startOdooRig(t, false)
	s := r.sim.NewDevice(odoosim.Bob, bobDesktop)
	tx := r.request(s, writeOrder(3, odoosim.Vals{"state": "sale"}))
	tx2 := r.request(s, writeOrder(3, odoosim.Vals{"note": "confirmed by phone"}))
	evs := r.stop()
	checkActor(t, one(t, evs, tx, "sale_order", "update"), who{odoosim.Bob, "session_row", sid(s), "same_tx"}, "auto-detected Odoo: a first request")
	checkActor(t, one(t, evs, tx2, "sale_order", "update"), who{odoosim.Bob, "row_user", sid(s), "only_active"}, "auto-detected Odoo: the next one")
	if !strings.Contains(r.d.log(), "odoo") {
		t.Errorf("the daemon's log does not mention the odoo profile")
	}
}
