package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os/exec"
	"strings"
	"time"
)

// User agents of the browsers the scenarios play (real strings of current
// browsers); IPs are from the documentation ranges (RFC 5737).
const (
	uaChromeWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaChromeMac     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaFirefoxLinux  = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaIPhoneSafari  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1"
	uaEdgeWindows   = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
)

// Lab-only passwords of a throwaway server on loopback.
const (
	adminPassword = "admin" // Odoo's default for a database created with --without-demo
	alicePassword = "alice-lab-pw-1"
	bobPassword   = "bob-lab-pw-1"
	carolPassword = "carol-lab-pw-1"
	aliceNewPw    = "alice-lab-pw-2"
	bobNewPw      = "bob-lab-pw-2"
)

// driver holds the browsers and the records the scenarios create and reuse.
type driver struct {
	base    string
	psql    []string // argv of psql connected as the odoo role to erp
	admin   *browser
	alice   *browser
	bob     *browser
	bobFail *browser
	carolPC *browser
	carolPh *browser
	users   map[string]int64
	ids     map[string]int64 // partners, products, orders, lines by a short name
}

type scenario struct {
	name string
	run  func(*driver) error
}

var scenarios = []scenario{
	{"logins", (*driver).logins},
	{"edits", (*driver).edits},
	{"passwords", (*driver).passwords},
	{"sessions", (*driver).sessions},
	{"module", (*driver).module},
	{"rawsql", (*driver).rawSQL},
}

func newDriver(base string, psql []string) *driver {
	return &driver{
		base:    base,
		psql:    psql,
		admin:   newBrowser(base, "admin/edge", uaEdgeWindows, "192.0.2.1"),
		alice:   newBrowser(base, "alice/chrome-win", uaChromeWindows, "203.0.113.10"),
		bob:     newBrowser(base, "bob/firefox-linux", uaFirefoxLinux, "198.51.100.7"),
		bobFail: newBrowser(base, "bob/wrong-password", uaFirefoxLinux, "198.51.100.99"),
		carolPC: newBrowser(base, "carol/chrome-mac", uaChromeMac, "192.0.2.44"),
		carolPh: newBrowser(base, "carol/iphone", uaIPhoneSafari, "198.51.100.23"),
		users:   map[string]int64{},
		ids:     map[string]int64{},
	}
}

// step logs what a scenario just did and lists what that did to Odoo's
// session store.
func step(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Printf("  %s", msg)
	store.note(msg)
}

// logins: admin creates alice, bob and carol; each logs in from their own
// browser and IP, carol twice (desktop and iPhone), and one login fails.
func (d *driver) logins() error {
	if err := d.signIn(d.admin, "admin", adminPassword); err != nil {
		return err
	}
	var groups []any
	for _, x := range [][2]string{{"base", "group_user"}, {"base", "group_partner_manager"}, {"sales_team", "group_sale_salesman_all_leads"}} {
		id, err := d.admin.xmlid(x[0], x[1])
		if err != nil {
			return err
		}
		groups = append(groups, id)
	}
	for _, u := range []struct{ login, name, pw string }{
		{"alice", "Alice Martin", alicePassword}, {"bob", "Bob Keller", bobPassword}, {"carol", "Carol Diaz", carolPassword},
	} {
		var id int64
		err := d.admin.kw("res.users", "create", []any{map[string]any{
			"name": u.name, "login": u.login, "email": u.login + "@example.test", "password": u.pw,
			"groups_id": []any{[]any{6, 0, groups}},
		}}, nil, &id)
		if err != nil {
			return err
		}
		d.users[u.login] = id
		step("admin created %s (id %d)", u.login, id)
	}
	for _, s := range []struct {
		b         *browser
		login, pw string
	}{{d.alice, "alice", alicePassword}, {d.bob, "bob", bobPassword}, {d.carolPC, "carol", carolPassword}, {d.carolPh, "carol", carolPassword}} {
		if err := d.signIn(s.b, s.login, s.pw); err != nil {
			return err
		}
	}
	var rpcErr *rpcError
	if err := d.bobFail.login("bob", "not-bobs-password"); !errors.As(err, &rpcErr) {
		return fmt.Errorf("a wrong password must be refused by Odoo, got %v", err)
	}
	step("bob/wrong-password refused: %s", rpcErr.Data.Name)
	return nil
}

func (d *driver) signIn(b *browser, login, pw string) error {
	if err := b.login(login, pw); err != nil {
		return err
	}
	if err := b.open(); err != nil {
		return err
	}
	step("%s logged in (uid %d) from %s", b.name, b.uid, b.ip)
	return nil
}

// edits: ORM creates, writes, a sale order confirmed, a line deleted, a
// contact deleted, a many2many change, and carol's save from her iPhone
// while her desktop session is open.
func (d *driver) edits() error {
	for _, p := range []struct{ key, name, email string }{
		{"azure", "Azure Interior", "info@azure.example.test"},
		{"deco", "Deco Addict", "info@deco.example.test"},
		{"gemini", "Gemini Furniture", "info@gemini.example.test"},
		{"lumber", "Lumber Inc", "info@lumber.example.test"},
	} {
		id, err := d.alice.save("res.partner", nil, map[string]any{"name": p.name, "email": p.email, "is_company": true}, nil)
		if err != nil {
			return err
		}
		d.ids[p.key] = id
	}
	step("alice created 4 companies")
	if _, err := d.alice.save("res.partner", []int64{d.ids["deco"]}, map[string]any{"phone": "+32 2 555 01 23", "street": "Rue de la Loi 16"}, nil); err != nil {
		return err
	}
	step("alice wrote Deco Addict")
	var msgID int64
	if err := d.alice.kw("res.partner", "message_post", []any{[]int64{d.ids["gemini"]}}, map[string]any{
		"body": "Called about the spring catalogue.", "message_type": "comment", "subtype_xmlid": "mail.mt_note",
	}, &msgID); err != nil {
		return err
	}
	step("alice logged a note on Gemini Furniture (message %d)", msgID)
	for _, p := range []struct {
		key, name string
		price     float64
	}{{"desk", "Office Desk", 450}, {"chair", "Office Chair", 120}} {
		id, err := d.admin.save("product.product", nil, map[string]any{"name": p.name, "list_price": p.price, "type": "consu"}, nil)
		if err != nil {
			return err
		}
		d.ids[p.key] = id
	}
	step("admin created 2 products")
	lines := func() []any {
		return []any{
			[]any{0, 0, map[string]any{"product_id": d.ids["desk"], "product_uom_qty": 2}},
			[]any{0, 0, map[string]any{"product_id": d.ids["chair"], "product_uom_qty": 6}},
		}
	}
	so, err := d.bob.save("sale.order", nil, map[string]any{"partner_id": d.ids["azure"], "order_line": lines()}, nil)
	if err != nil {
		return err
	}
	d.ids["so1"] = so
	if err := d.bob.button("sale.order", "action_confirm", []int64{so}, nil, nil); err != nil {
		return err
	}
	step("bob created sale order %d with 2 lines and confirmed it", so)
	q, err := d.bob.save("sale.order", nil, map[string]any{"partner_id": d.ids["deco"], "order_line": lines()}, nil)
	if err != nil {
		return err
	}
	d.ids["so2"] = q
	qlines, err := d.alice.searchRead("sale.order.line", []any{[]any{"order_id", "=", q}}, []string{"id"})
	if err != nil || len(qlines) != 2 {
		return fmt.Errorf("quotation %d lines: %v (%d)", q, err, len(qlines))
	}
	line := int64(qlines[1]["id"].(float64))
	if _, err := d.alice.save("sale.order", []int64{q}, map[string]any{"order_line": []any{[]any{2, line, false}}}, nil); err != nil {
		return err
	}
	step("bob created quotation %d; alice deleted its line %d", q, line)
	if err := d.carolPC.kw("res.partner", "unlink", []any{[]int64{d.ids["gemini"]}}, nil, nil); err != nil {
		return err
	}
	step("carol deleted contact Gemini Furniture (%d)", d.ids["gemini"])
	mgr, err := d.admin.xmlid("sales_team", "group_sale_manager")
	if err != nil {
		return err
	}
	if _, err := d.admin.save("res.users", []int64{d.users["bob"]}, map[string]any{"groups_id": []any{[]any{4, mgr}}}, nil); err != nil {
		return err
	}
	step("admin added bob to Sales / Administrator (group %d)", mgr)
	if _, err := d.carolPh.save("res.partner", []int64{d.ids["azure"]}, map[string]any{"mobile": "+32 470 12 34 56"}, nil); err != nil {
		return err
	}
	step("carol saved Azure Interior from her iPhone (desktop session still open)")
	return nil
}

// passwords: alice changes her own password in her preferences (with the
// "confirm your password" step Odoo asks for), admin sets bob's, carol
// creates an API key, alice turns on two-factor authentication.
func (d *driver) passwords() error {
	w, err := d.alice.save("change.password.own", nil, map[string]any{"new_password": aliceNewPw, "confirm_password": aliceNewPw}, nil)
	if err != nil {
		return err
	}
	if err := d.checkedButton(d.alice, "change.password.own", "change_password", w, alicePassword); err != nil {
		return err
	}
	step("alice changed her own password (wizard %d)", w)
	// The web client reloads after a password change. Whether the session
	// survives is recorded, not assumed: if Odoo sends the login page, alice
	// logs in again with her new password, as she would.
	if err := d.alice.open(); err != nil {
		step("alice's reload after the change: %v", err)
		if err := d.signIn(d.alice, "alice", aliceNewPw); err != nil {
			return err
		}
	} else {
		step("alice's session survived her password change")
	}
	ctx := map[string]any{"active_model": "res.users", "active_ids": []int64{d.users["bob"]}, "active_id": d.users["bob"]}
	w, err = d.admin.save("change.password.wizard", nil, map[string]any{"user_ids": []any{
		[]any{0, 0, map[string]any{"user_id": d.users["bob"], "user_login": "bob", "new_passwd": bobNewPw}},
	}}, ctx)
	if err != nil {
		return err
	}
	if err := d.admin.button("change.password.wizard", "change_password_button", []int64{w}, ctx, nil); err != nil {
		return err
	}
	step("admin changed bob's password (wizard %d)", w)
	k, err := d.carolPC.save("res.users.apikeys.description", nil, map[string]any{"name": "lab integration"}, nil)
	if err != nil {
		return err
	}
	if err := d.checkedButton(d.carolPC, "res.users.apikeys.description", "make_key", k, carolPassword); err != nil {
		return err
	}
	step("carol created an API key (description %d)", k)
	if err := d.enableTOTP(d.alice, aliceNewPw); err != nil {
		return err
	}
	step("alice enabled two-factor authentication")
	return nil
}

// checkedButton clicks a button that Odoo guards with @check_identity: the
// first click answers with the res.users.identitycheck form; the user types
// their password into it and confirms (run_check), which runs the button.
func (d *driver) checkedButton(b *browser, model, method string, id int64, password string) error {
	_, err := d.checkedAction(b, model, method, id, password)
	return err
}

// checkedAction is checkedButton returning the action the button returned.
func (d *driver) checkedAction(b *browser, model, method string, id int64, password string) (map[string]any, error) {
	var action map[string]any
	if err := b.button(model, method, []int64{id}, nil, &action); err != nil {
		return nil, err
	}
	if action["res_model"] != "res.users.identitycheck" {
		step("%s.%s ran without an identity check", model, method)
		return action, nil
	}
	check := int64(action["res_id"].(float64))
	if _, err := b.save("res.users.identitycheck", []int64{check}, map[string]any{"password": password}, nil); err != nil {
		return nil, err
	}
	// The guarded method's own return: an action, or false/null.
	var raw json.RawMessage
	if err := b.button("res.users.identitycheck", "run_check", []int64{check}, nil, &raw); err != nil {
		return nil, err
	}
	action = nil
	_ = json.Unmarshal(raw, &action)
	step("%s confirmed their password (identity check %d)", b.name, check)
	return action, nil
}

// enableTOTP is the "Two-factor authentication" switch of a user's
// preferences: the wizard shows a secret, the authenticator app derives the
// code the user types back (RFC 6238: HMAC-SHA1, 30 s, 6 digits).
func (d *driver) enableTOTP(b *browser, password string) error {
	action, err := d.checkedAction(b, "res.users", "action_totp_enable_wizard", b.uid, password)
	if err != nil {
		return err
	}
	if action["res_model"] != "auth_totp.wizard" {
		return fmt.Errorf("action_totp_enable_wizard answered %v", action)
	}
	w := int64(action["res_id"].(float64))
	var recs []struct {
		Secret string `json:"secret"`
	}
	if err := b.kw("auth_totp.wizard", "read", []any{[]int64{w}, []string{"secret"}}, nil, &recs); err != nil {
		return err
	}
	if len(recs) != 1 {
		return fmt.Errorf("auth_totp.wizard %d: %d records", w, len(recs))
	}
	key, err := base32.StdEncoding.DecodeString(strings.ToUpper(strings.ReplaceAll(recs[0].Secret, " ", "")))
	if err != nil {
		return fmt.Errorf("totp secret: %w", err)
	}
	if _, err := b.save("auth_totp.wizard", []int64{w}, map[string]any{"code": totpCode(key, time.Now())}, nil); err != nil {
		return err
	}
	return d.checkedButton(b, "auth_totp.wizard", "enable", w, password)
}

func totpCode(key []byte, now time.Time) string {
	var counter [8]byte
	binary.BigEndian.PutUint64(counter[:], uint64(now.Unix()/30))
	mac := hmac.New(sha1.New, key)
	mac.Write(counter[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0xf
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1000000)
}

// sessions: bob, whose old session the password change ended, logs in
// again and logs out; admin revokes carol's iPhone from carol's user
// form, and the iPhone's next request finds its session gone.
func (d *driver) sessions() error {
	// admin's change of bob's password (scenario passwords) ended bob's
	// session: Odoo refuses it with "Session expired". Bob logs in again.
	if err := d.expectExpired(d.bob); err != nil {
		return err
	}
	if err := d.signIn(d.bob, "bob", bobNewPw); err != nil {
		return err
	}
	if err := d.bob.logout(); err != nil {
		return err
	}
	step("bob logged out")
	devs, err := d.admin.searchRead("res.device", []any{[]any{"user_id", "=", d.users["carol"]}}, []string{"id", "platform", "browser", "ip_address", "device_type"})
	if err != nil {
		return err
	}
	var phone int64
	for _, dv := range devs {
		if dv["device_type"] == "mobile" {
			phone = int64(dv["id"].(float64))
		}
	}
	if phone == 0 {
		return fmt.Errorf("carol's devices have no mobile one: %v", devs)
	}
	// Revoke is guarded by @check_identity: admin confirms his password first.
	if err := d.checkedButton(d.admin, "res.device", "revoke", phone, adminPassword); err != nil {
		return err
	}
	step("admin revoked carol's iPhone (res.device %d of %d)", phone, len(devs))
	return d.expectExpired(d.carolPh)
}

// expectExpired checks that Odoo refuses b's session as expired.
func (d *driver) expectExpired(b *browser) error {
	err := b.kw("res.partner", "search_read", []any{}, map[string]any{"domain": []any{}, "fields": []string{"name"}, "limit": 1}, nil)
	var rpcErr *rpcError
	if !errors.As(err, &rpcErr) || !strings.Contains(rpcErr.Data.Name, "SessionExpired") {
		return fmt.Errorf("%s: session must be expired, got %v", b.name, err)
	}
	step("%s: %s", b.name, rpcErr.Data.Name)
	return nil
}

// module: admin installs sale_margin while the server runs: a new stored
// column on sale_order_line and sale_order, filled for the existing orders.
func (d *driver) module() error {
	mods, err := d.admin.searchRead("ir.module.module", []any{[]any{"name", "=", "sale_margin"}}, []string{"id", "state"})
	if err != nil || len(mods) != 1 {
		return fmt.Errorf("module sale_margin: %v %v", err, mods)
	}
	id := int64(mods[0]["id"].(float64))
	if err := d.admin.button("ir.module.module", "button_immediate_install", []int64{id}, nil, nil); err != nil {
		return err
	}
	step("admin installed sale_margin (module %d)", id)
	return nil
}

// rawSQL: a person with the odoo role edits the database in psql, outside
// Odoo: a partner's name, a sale order's note, and a partner deleted.
func (d *driver) rawSQL() error {
	for _, q := range []string{
		fmt.Sprintf("UPDATE res_partner SET name = 'Deco Addict (renamed in psql)' WHERE id = %d", d.ids["deco"]),
		fmt.Sprintf("UPDATE sale_order SET note = '<p>changed in psql</p>' WHERE id = %d", d.ids["so1"]),
		fmt.Sprintf("DELETE FROM res_partner WHERE id = %d", d.ids["lumber"]),
	} {
		cmd := exec.Command(d.psql[0], append(d.psql[1:], "-v", "ON_ERROR_STOP=1", "-c", q)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("psql %q: %v: %s", q, err, out)
		}
		step("psql: %s -> %s", q, strings.TrimSpace(string(out)))
	}
	return nil
}
