package e2e

import (
	"context"
	"slices"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/sink"
)

// TestIndexFromPipeline: the daemon indexes each event by the terms of the
// event it built; every user, session, table, op and record of a real run
// finds through the indexes exactly the events that carry it, and the
// counts read from the postings alone agree.
func TestIndexFromPipeline(t *testing.T) {
	r := startOdoo(t)
	r.ok(r.sim.Login(r.ctx, odoosim.Alice))
	a := r.newSim().NewDevice(odoosim.Alice, aliceLaptop)
	p := r.newSim().NewDevice(odoosim.Alice, alicePhone)
	b := r.newSim().NewDevice(odoosim.Bob, bobDesktop)
	r.request(a, writeOrder(1, odoosim.Vals{"state": "sent"}))
	r.request(b, writePartner(12, odoosim.Vals{"phone": "+1 555 0112"}))
	r.request(p, writeOrder(2, odoosim.Vals{"note": "from the phone"}))
	r.request(b, func(e *odoosim.Env) error {
		_, _, err := e.CreateOrderWithLines(12, []odoosim.Line{{Product: "Desk", Qty: 2, Price: 5}})
		return err
	})
	r.request(a, func(e *odoosim.Env) error { return e.DeleteOrder(3) })
	evs := r.stop()

	st, err := sink.OpenReadOnly(r.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ok, err := st.IndexComplete(); !ok || err != nil {
		t.Fatalf("index complete: %v %v", ok, err)
	}
	type tagged struct {
		id    string
		terms audit.Terms
	}
	var all []tagged
	for _, e := range evs {
		terms, err := audit.ParseTerms([]byte(e.Raw))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, tagged{e.ID, terms})
	}
	check := func(q sink.Query, want func(tg *tagged) bool) int {
		t.Helper()
		var ids, got []string
		for i := range all {
			if (all[i].terms.Op != audit.OpSnapshot || slices.Contains(q.Ops, audit.OpSnapshot)) && want(&all[i]) {
				ids = append(ids, all[i].id)
			}
		}
		if _, err := st.Query(context.Background(), q, func(k, _ []byte) error {
			lsn, ord, _ := audit.SplitKey(k)
			got = append(got, audit.FormatID(lsn, ord))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, ids) {
			t.Errorf("%+v: got %v, want %v", q, got, ids)
		}
		if n, err := st.Count(context.Background(), q); err != nil || n != uint64(len(ids)) {
			t.Errorf("count %+v: %d %v, want %d", q, n, err, len(ids))
		}
		return len(ids)
	}
	users, sessions, records := map[string]bool{}, map[string]bool{}, 0
	for _, tg := range all {
		terms := tg.terms
		if terms.User != "" && !users[terms.User] {
			users[terms.User] = true
			check(sink.Query{User: terms.User}, func(x *tagged) bool { return x.terms.User == terms.User })
		}
		if terms.Session != "" && !sessions[terms.Session] {
			sessions[terms.Session] = true
			check(sink.Query{Session: terms.Session}, func(x *tagged) bool { return x.terms.Session == terms.Session })
		}
		ops := []audit.Op{terms.Op}
		check(sink.Query{Tables: []string{terms.Schema + "." + terms.Table}, Ops: ops}, func(x *tagged) bool {
			return x.terms.Schema == terms.Schema && x.terms.Table == terms.Table && x.terms.Op == terms.Op
		})
		for _, f := range terms.Flags {
			check(sink.Query{Flag: f}, func(x *tagged) bool { return slices.Contains(x.terms.Flags, f) })
		}
		if e := evs[slices.IndexFunc(evs, func(e *event) bool { return e.ID == tg.id })]; len(e.KeyRow) > 0 && records < 40 {
			records++
			ref, err := audit.ParseRecordRef(`"` + terms.Schema + `"."` + terms.Table + `":` + string(e.Key))
			if err != nil {
				t.Fatal(err)
			}
			check(sink.Query{Record: &ref, Ops: []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete, audit.OpSnapshot}}, func(x *tagged) bool {
				return slices.ContainsFunc(x.terms.Records, func(rt []byte) bool { return string(rt) == string(ref.Term()) })
			})
		}
	}
	if len(users) < 2 || len(sessions) < 2 || records == 0 {
		t.Fatalf("the run attributed too little to test the indexes: users %v, sessions %v, records %d", users, sessions, records)
	}
}
