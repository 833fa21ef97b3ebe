package e2e

import (
	"slices"
	"testing"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/jackc/pgx/v5"
)

// TestAttributionDefaultIdentity: Odoo keeps REPLICA IDENTITY DEFAULT, so
// the server sends updates without a before-image: cdcaudit reconstructs
// it for records it saw since it started, the others have none and no
// change set (before_source unknown). write_uid names the
// user only when write_date is provably the ORM's stamp of that
// transaction; a psql edit keeps a stale write_date and write_uid: it is
// blamed on no one, and flagged when that is provable; when it cannot be
// told, the write_uid's user is a candidate, not the actor. A password
// change is attributed with the session it was made in, then ends the
// user's sessions (Odoo 18 logs out that one too) by the user who changed
// it, not by the stale write_uid of Odoo's raw hash UPDATE. A lone delete names no one, with the
// users active then as candidates.
func TestAttributionDefaultIdentity(t *testing.T) {
	r := startOdooPrepared(t, true, func(ctl *pgx.Conn) {
		defaultIdentity(t, ctl)
		// Bob saved partner 14 through Odoo an hour before cdcaudit started.
		mustExec(t, ctl, `UPDATE res_partner SET phone = '+32 9 555 00 14', write_uid = 7,
			write_date = (now() AT TIME ZONE 'UTC') - interval '1 hour' WHERE id = 14`)
	}, "--snapshot", "never") // partner 14 stays a record never seen: its before-image unknown
	// (With the initial snapshot it is seen, and the same edit is orm_bypass:
	// TestReconstructedBeforeImagesAfterSnapshot.)
	alice := r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	admin := r.sim.NewDevice(odoosim.Admin, adminDesk)
	bob := r.sim.NewDevice(odoosim.Bob, bobDesktop)
	bobPhone := r.sim.NewDevice(odoosim.Bob, odoosim.Device{IP: "198.51.100.21", Platform: "android", Browser: "chrome"})
	// First requests: each carries its session's device row.
	r.request(admin, func(e *odoosim.Env) error { // alice's user row seen with her current hash
		return e.SetGroups(odoosim.Alice, []int64{odoosim.GroupSaleManager}, nil)
	})
	r.request(alice, writeOrder(2, odoosim.Vals{"note": "alice's first request"}))
	r.request(bob, func(e *odoosim.Env) error {
		return e.Write("res_users", []int64{odoosim.Bob}, odoosim.Vals{"signature": "Bob"})
	})
	r.request(bobPhone, writeOrder(3, odoosim.Vals{"note": "from bob's phone"}))

	orm := r.request(alice, writePartner(12, odoosim.Vals{"phone": "+1 555 0112"}))
	rawRecent := r.ok(r.sim.RawSQL(r.ctx, "UPDATE res_partner SET phone = '+1 555 9999' WHERE id = 12"))
	rawOld := r.ok(r.sim.RawSQL(r.ctx, "UPDATE res_partner SET city = 'Nowhere' WHERE id = 11"))
	undecided := r.ok(r.sim.RawSQL(r.ctx, "UPDATE res_partner SET city = 'Somewhere' WHERE id = 14"))
	password := r.request(alice, func(e *odoosim.Env) error {
		return e.ChangePassword(odoosim.Alice, odoosim.HashPassword("alice-Winter2026"))
	})
	reset := r.request(admin, func(e *odoosim.Env) error { // the admin resets bob's password
		return e.ChangePassword(odoosim.Bob, odoosim.HashPassword("bob-Reset2026"))
	})
	del := r.request(admin, func(e *odoosim.Env) error { return e.DeletePartner(13) })
	evs := r.stop()

	for _, e := range evs {
		if e.Op == "update" && e.BeforeSource == "wal" {
			t.Fatalf("%s: before_source wal: the fixture is not REPLICA IDENTITY DEFAULT", describe(e))
		}
	}
	e := one(t, evs, orm, "res_partner", "update")
	checkActor(t, e, who{odoosim.Alice, "row_user", sid(alice), "only_active"}, "an ORM write: write_date is its transaction's own stamp")
	if len(e.FlagList) != 0 {
		t.Errorf("%s: flags %v", describe(e), e.FlagList)
	}
	for _, x := range []struct {
		xid uint32
		why string
	}{{rawRecent, "psql edits the partner alice saved a moment ago (write_date and write_uid hers)"},
		{rawOld, "psql edits a partner last saved in January"}} {
		e := one(t, evs, x.xid, "res_partner", "update")
		checkActor(t, e, who{}, x.why)
		if !slices.Equal(e.FlagList, []string{"orm_bypass"}) {
			t.Errorf("%s: %s: flags %v, want orm_bypass", x.why, describe(e), e.FlagList)
		}
	}
	e = one(t, evs, undecided, "res_partner", "update")
	checkActor(t, e, who{}, "psql edits a partner bob saved an hour before cdcaudit started: cannot be told")
	if got := actorOf(t, e).Candidates.userIDs(); !slices.Equal(got, []int64{odoosim.Bob}) || len(e.FlagList) != 0 {
		t.Errorf("%s: candidates %v flags %v, want bob (7) as a candidate only, no flag", describe(e), got, e.FlagList)
	}

	ups := pick(evs, password, "res_users", "update")
	if len(ups) != 2 {
		t.Fatalf("alice's password change: %d res_users updates, want the raw hash UPDATE and the ORM's stamp", len(ups))
	}
	checkActor(t, ups[0], who{odoosim.Alice, "tx_peer", sid(alice), "only_active"}, "the raw hash UPDATE (stale write_uid), in the session that made the change")
	checkActor(t, ups[1], who{odoosim.Alice, "row_user", sid(alice), "only_active"}, "the ORM's stamp of the password change")
	for _, e := range ups {
		if len(e.FlagList) != 0 {
			t.Errorf("%s: flags %v: Odoo hashes passwords with a raw UPDATE", describe(e), e.FlagList)
		}
	}

	for _, e := range txEvents(evs, reset) {
		checkActor(t, e, who{odoosim.Admin, "", sid(admin), "only_active"}, "the admin's reset of bob's password")
	}
	// Her session is logged out by the change (as Odoo 18 does), by her —
	// not by the stale write_uid of the raw hash UPDATE (the admin, 2);
	// bob's, by the admin — not by his own stale write_uid (7).
	list := listSessions(t, r.dataDir)
	checkSessionFields(t, findSession(list, sid(alice)), map[string]string{"state": "ended", "end_reason": "password_changed", "ended_by": "6", "end_inferred": "true"})
	for _, s := range []*odoosim.Session{bob, bobPhone} {
		m := findSession(list, sid(s))
		checkSessionFields(t, m, map[string]string{"state": "ended", "end_reason": "password_changed", "ended_by": "2", "end_inferred": "true"})
	}
	checkSessionFields(t, findSession(list, sid(admin)), map[string]string{"state": "active", "end_inferred": "true"})

	d := one(t, evs, del, "res_partner", "delete")
	checkActor(t, d, who{}, "a lone delete of a contact")
	if got := actorOf(t, d).Candidates.userIDs(); !slices.Equal(got, []int64{odoosim.Admin}) {
		t.Errorf("%s: candidate users %v, want the users with an open session (admin, the deleter, among them; alice and bob were logged out by the password changes)", describe(d), got)
	}
}

// defaultIdentity sets every table of the fixture back to REPLICA IDENTITY
// DEFAULT, as a real Odoo keeps them.
func defaultIdentity(t *testing.T, ctl *pgx.Conn) {
	t.Helper()
	mustExec(t, ctl, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT c.oid::regclass AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'public' AND c.relkind = 'r' LOOP
			EXECUTE format('ALTER TABLE %s REPLICA IDENTITY DEFAULT', r.t);
		END LOOP; END $$`)
}

// TestAttributionSchemaMigration: installing a module adds a column and
// fills it for existing rows with raw UPDATEs, and reflects the new field
// into ir_model_fields, in one transaction: schema_migration, not
// orm_bypass. A raw edit of the same table afterwards is a bypass again.
// With Odoo's REPLICA IDENTITY DEFAULT and with FULL.
func TestAttributionSchemaMigration(t *testing.T) {
	for _, full := range []bool{true, false} {
		name := "default"
		if full {
			name = "full"
		}
		t.Run(name, func(t *testing.T) {
			var r *odooRig
			if full {
				r = startOdoo(t)
			} else {
				r = startOdooDefault(t)
			}
			admin := r.sim.NewDevice(odoosim.Admin, adminDesk)
			r.request(admin, writePartner(1, odoosim.Vals{"phone": "+32 2 555 00 00"}))
			install := r.ok(r.sim.Transaction(r.ctx, odoosim.Root, func(e *odoosim.Env) error {
				for _, q := range []string{
					`ALTER TABLE res_partner ADD COLUMN x_rank integer`,
					`UPDATE res_partner SET x_rank = 0 WHERE id IN (10, 11)`,
					`UPDATE ir_model_fields SET field_description = '{"en_US": "Display Name"}' WHERE model = 'res.partner' AND name = 'name'`,
				} {
					if _, err := e.Tx.Exec(e.Ctx, q); err != nil {
						return err
					}
				}
				return nil
			}))
			raw := r.ok(r.sim.RawSQL(r.ctx, "UPDATE res_partner SET city = 'Elsewhere' WHERE id = 10"))
			evs := r.stop()

			fills := pick(evs, install, "res_partner", "update")
			refl := pick(evs, install, "ir_model_fields", "update")
			if len(fills) != 2 || len(refl) != 1 {
				t.Fatalf("the install: %d res_partner and %d ir_model_fields updates, want 2 and 1", len(fills), len(refl))
			}
			for _, e := range append(fills, refl...) {
				if !slices.Equal(e.FlagList, []string{"schema_migration"}) {
					t.Errorf("%s: flags %v, want schema_migration (a write of the transaction that changed the table)", describe(e), e.FlagList)
				}
			}
			if e := one(t, evs, raw, "res_partner", "update"); !slices.Equal(e.FlagList, []string{"orm_bypass"}) {
				t.Errorf("%s: flags %v, want orm_bypass (a raw edit after the migration)", describe(e), e.FlagList)
			}
		})
	}
}
