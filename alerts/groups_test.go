package alerts

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// Routes by group ask the application's database, as of delivery: the
// members of a group (directly or through an implied group) get the
// route, the others not; users= adds logins.
func TestRoutesByGroup(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`CREATE TABLE res_groups_users_rel (gid int, uid int)`,
		`CREATE TABLE res_groups_implied_rel (gid int, hid int)`,
		`CREATE TABLE ir_model_data (module varchar, name varchar, model varchar, res_id int)`,
		`INSERT INTO ir_model_data VALUES ('base', 'group_system', 'res.groups', 3), ('base', 'group_erp_manager', 'res.groups', 2),
			('sales_team', 'group_sale_manager', 'res.groups', 8), ('base', 'group_system', 'res.partner', 6)`,
		`INSERT INTO res_groups_implied_rel VALUES (3, 2)`, // Settings implies Access Rights
		`INSERT INTO res_groups_users_rel VALUES (3, 2), (8, 6), (1, 7)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	groups := OdooGroups{DB: conn}
	for _, c := range []struct {
		user   int64
		groups []string
		in     bool
	}{
		{2, []string{"base.group_system"}, true},
		{2, []string{"base.group_erp_manager"}, true}, // implied
		{6, []string{"base.group_system"}, false},     // a partner's xml id is no group
		{6, []string{"base.group_system", "sales_team.group_sale_manager"}, true},
		{7, []string{"base.group_system", "sales_team.group_sale_manager"}, false},
	} {
		if in, err := groups.Member(ctx, c.user, c.groups); err != nil || in != c.in {
			t.Errorf("user %d in %v: %v (%v), want %v", c.user, c.groups, in, err, c.in)
		}
	}

	var mu sync.Mutex
	var got []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get(AlertHeader))
		mu.Unlock()
	}))
	defer hs.Close()
	s := newStore(t)
	now := time.Now()
	alert := func(id string, user int64, login string) Alert {
		return Alert{ID: "new_device/" + id, Kind: KindNewDevice, Time: now, UserID: user, Login: login, Summary: id}
	}
	queue(t, s, Queue(alert("admin", 2, "admin")), Queue(alert("alice", 6, "alice")), Queue(alert("bob", 7, "bob")),
		Queue(alert("carol", 8, "carol")))
	wh, _ := NewWebhook(hs.URL, []byte("0123456789abcdef"), 0)
	routes := mustRoutes(t, "kind=new_device channel=webhook groups=base.group_erp_manager,sales_team.group_sale_manager users=carol")
	if _, err := NewDeliverer(s.store, DelivererOptions{Routes: routes, Webhook: wh}); err == nil {
		t.Error("routes by group without the database: accepted")
	}
	d, err := NewDeliverer(s.store, DelivererOptions{Routes: routes, Webhook: wh, Groups: groups, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Round(ctx, s.state); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	if want := []string{"new_device/admin", "new_device/alice", "new_device/carol"}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}
