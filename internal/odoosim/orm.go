package odoosim

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is one transaction of the ORM, as a user: Odoo's `env`. Its methods
// send the SQL the ORM sends, in the shapes recorded from a real Odoo 18.0
// (testdata/odoo18/traces; TestSQLIsRecordedOdoos checks them): quoted
// identifiers, values as literals (psycopg2 interpolates them), and the
// transaction's timestamp read once and written as a literal (cr.now()).
type Env struct {
	Ctx context.Context
	Tx  pgx.Tx
	// UID is the acting user: every ORM write stamps it as write_uid.
	UID int64
	// Session is the request's session (nil outside a request).
	Session *Session
	now     string // the transaction's timestamp as a literal, once read
}

// Vals are field values for Create and Write: column → value.
type Vals map[string]any

// Expr is a value given as SQL, inlined as is (e.g. the transaction's
// timestamp, Now).
type Expr string

// Now is the ORM's timestamp as a value: the transaction's start in UTC,
// written as the literal Odoo writes.
const Now = Expr(nowUTC)

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// timestamp returns the transaction's timestamp as Odoo's cr.now() has it
// (now() AT TIME ZONE 'UTC', read once per transaction), as a literal.
func (e *Env) timestamp() (string, error) {
	if e.now == "" {
		var ts string
		if err := e.Tx.QueryRow(e.Ctx, "SELECT to_char("+nowUTC+", 'YYYY-MM-DD HH24:MI:SS.US')").Scan(&ts); err != nil {
			return "", fmt.Errorf("the transaction's timestamp: %w", err)
		}
		e.now = quote(ts)
	}
	return e.now, nil
}

// quote is a string literal, as psycopg2 writes it (standard_conforming_strings
// on, PostgreSQL's default: only the quote is doubled).
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// literal renders a value the way psycopg2 interpolates it into the
// statement; maps and slices are JSON (jsonb columns).
func (e *Env) literal(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "NULL", nil
	case Expr:
		if x == Now {
			return e.timestamp()
		}
		return string(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case string:
		if strings.ContainsRune(x, 0) {
			return "", fmt.Errorf("a string with a NUL byte")
		}
		return quote(x), nil
	case []byte:
		return `'\x` + hex.EncodeToString(x) + "'", nil
	case time.Time:
		return quote(x.UTC().Format("2006-01-02 15:04:05.999999")), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return quote(string(b)), nil
}

// row renders the values of cols as a parenthesised list of literals.
func (e *Env) row(vals Vals, cols []string) (string, error) {
	lits := make([]string, len(cols))
	for i, c := range cols {
		l, err := e.literal(vals[c])
		if err != nil {
			return "", fmt.Errorf("%s: %w", c, err)
		}
		lits[i] = l
	}
	return "(" + strings.Join(lits, ", ") + ")", nil
}

func idents(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = ident(c)
	}
	return strings.Join(q, ", ")
}

func idList(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ", ")
}

// stamped returns vals plus the ORM's audit columns and their names in
// the ORM's order (sorted).
func stamped(vals Vals, audit Vals) (Vals, []string) {
	all := maps.Clone(audit)
	maps.Copy(all, vals)
	maps.Copy(all, audit)
	return all, slices.Sorted(maps.Keys(all))
}

// Create inserts a record the way the ORM's _create does: the given
// values plus create_uid/write_uid = the user and create_date/write_date =
// the transaction's timestamp, in one INSERT … RETURNING "id". It returns
// the new id.
func (e *Env) Create(table string, vals Vals) (int64, error) {
	all, cols := stamped(vals, Vals{"create_uid": e.UID, "create_date": Now, "write_uid": e.UID, "write_date": Now})
	row, err := e.row(all, cols)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", table, err)
	}
	var id int64
	err = e.Tx.QueryRow(e.Ctx, "INSERT INTO "+ident(table)+" ("+idents(cols)+") VALUES "+row+` RETURNING "id"`).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", table, err)
	}
	return id, nil
}

// columnTypes returns the SQL types of a table's columns, for the casts of
// Write (the ORM knows them from its fields).
func (e *Env) columnTypes(table string) (map[string]string, error) {
	rows, err := e.Tx.Query(e.Ctx, `SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, ident(table))
	if err != nil {
		return nil, err
	}
	types := map[string]string{}
	var name, typ string
	_, err = pgx.ForEachRow(rows, []any{&name, &typ}, func() error { types[name] = typ; return nil })
	return types, err
}

// Write updates records the way the ORM's flush does: the given values
// plus write_uid = the user and write_date = the transaction's timestamp,
// in Odoo 18's one-statement form for any number of records:
//
//	UPDATE "t" SET "c" = "__tmp"."c"::type, … FROM (VALUES (id, …), …)
//	AS "__tmp"("id", "c", …) WHERE "t"."id" = "__tmp"."id"
//
// With no values it only stamps them (a write whose fields are stored
// elsewhere, e.g. a many2many or an inverse).
func (e *Env) Write(table string, ids []int64, vals Vals) error {
	if len(ids) == 0 {
		return nil
	}
	all, cols := stamped(vals, Vals{"write_uid": e.UID, "write_date": Now})
	types, err := e.columnTypes(table)
	if err != nil {
		return fmt.Errorf("write %s: %w", table, err)
	}
	sets := make([]string, len(cols))
	for i, c := range cols {
		if types[c] == "" {
			return fmt.Errorf("write %s: no column %s", table, c)
		}
		sets[i] = ident(c) + ` = "__tmp".` + ident(c) + "::" + types[c]
	}
	rows := make([]string, len(ids))
	for i, id := range ids {
		all["id"] = id
		r, err := e.row(all, append([]string{"id"}, cols...))
		if err != nil {
			return fmt.Errorf("write %s: %w", table, err)
		}
		rows[i] = r
	}
	t := ident(table)
	_, err = e.Tx.Exec(e.Ctx, "UPDATE "+t+" SET "+strings.Join(sets, ", ")+" FROM (VALUES "+strings.Join(rows, ", ")+
		`) AS "__tmp"("id", `+idents(cols)+") WHERE "+t+`."id" = "__tmp"."id"`)
	if err != nil {
		return fmt.Errorf("write %s: %w", table, err)
	}
	return nil
}

// Unlink deletes records the way the ORM does: a bare DELETE, which
// records nothing about who deleted.
func (e *Env) Unlink(table string, ids ...int64) error {
	if _, err := e.Tx.Exec(e.Ctx, "DELETE FROM "+ident(table)+" WHERE id IN ("+idList(ids)+")"); err != nil {
		return fmt.Errorf("unlink %s: %w", table, err)
	}
	return nil
}

// CreatePartner creates a company contact. As in Odoo, the INSERT is
// followed in the same transaction by the flush of the stored computed
// field commercial_partner_id (the partner itself), which stamps the row
// again with the same write_date.
func (e *Env) CreatePartner(name, email, city, countryCode string) (int64, error) {
	id, err := e.Create("res_partner", Vals{
		"name": name, "complete_name": name, "email": email, "city": city, "country_id": CountryID(countryCode),
		"is_company": true, "active": true, "type": "contact", "partner_share": true,
	})
	if err != nil {
		return 0, err
	}
	return id, e.Write("res_partner", []int64{id}, Vals{"commercial_partner_id": id})
}

// WritePartner writes a contact's fields.
func (e *Env) WritePartner(id int64, vals Vals) error {
	return e.Write("res_partner", []int64{id}, vals)
}

// DeletePartner unlinks a contact: a lone DELETE.
func (e *Env) DeletePartner(id int64) error { return e.Unlink("res_partner", id) }

// Line is a sales order line to create.
type Line struct {
	Product  string  // the line's description, e.g. "[FURN_7800] Desk Combination"
	Qty      float64 // product_uom_qty
	Price    float64 // price_unit
	Discount float64 // percent
}

// TaxRate is the fixture's one sales tax (21 %).
const TaxRate = 0.21

func money(x float64) string { return fmt.Sprintf("%.2f", math.Round(x*100)/100) }

// CreateOrderWithLines creates a draft quotation for a customer, with the
// user as salesperson: the sale_order INSERT, one INSERT per line, then —
// as the ORM's flush of the stored computed totals — an UPDATE of the
// order in the same transaction (same write_date as its INSERT).
func (e *Env) CreateOrderWithLines(partnerID int64, lines []Line) (orderID int64, lineIDs []int64, err error) {
	var name string
	if err := e.Tx.QueryRow(e.Ctx, "SELECT 'S' || lpad(nextval('ir_sequence_sale_order')::text, 5, '0')").Scan(&name); err != nil {
		return 0, nil, err
	}
	orderID, err = e.Create("sale_order", Vals{
		"name": name, "state": "draft", "partner_id": partnerID, "partner_invoice_id": partnerID,
		"partner_shipping_id": partnerID, "user_id": e.UID, "currency_id": 1, "invoice_status": "no", "locked": false,
		"date_order": Now,
	})
	if err != nil {
		return 0, nil, err
	}
	for i, l := range lines {
		sub := l.Qty * l.Price * (1 - l.Discount/100)
		tax := math.Round(sub*TaxRate*100) / 100
		id, err := e.Create("sale_order_line", Vals{
			"order_id": orderID, "sequence": 10 * (i + 1), "name": l.Product,
			"product_uom_qty": fmt.Sprint(l.Qty), "price_unit": money(l.Price), "discount": money(l.Discount),
			"price_subtotal": money(sub), "price_tax": tax, "price_total": money(sub + tax),
			"state": "draft", "company_id": 1, "currency_id": 1,
		})
		if err != nil {
			return 0, nil, err
		}
		lineIDs = append(lineIDs, id)
	}
	return orderID, lineIDs, e.recomputeOrder(orderID)
}

// recomputeOrder is the flush of sale_order's stored computed totals
// (computed in Python, written by the ORM), stamped with the acting user.
func (e *Env) recomputeOrder(orderID int64) error {
	var untaxed, tax, total string
	err := e.Tx.QueryRow(e.Ctx, `SELECT u::text, t::text, (u + t)::text FROM
		(SELECT COALESCE(sum(price_subtotal), 0) AS u, COALESCE(round(sum(price_tax)::numeric, 2), 0) AS t
		 FROM sale_order_line WHERE order_id = $1) s`, orderID).Scan(&untaxed, &tax, &total)
	if err != nil {
		return fmt.Errorf("recompute sale_order %d: %w", orderID, err)
	}
	return e.Write("sale_order", []int64{orderID}, Vals{"amount_untaxed": untaxed, "amount_tax": tax, "amount_total": total})
}

// WriteOrder writes an order's fields (e.g. Vals{"state": "sale"}).
func (e *Env) WriteOrder(id int64, vals Vals) error {
	return e.Write("sale_order", []int64{id}, vals)
}

// DeleteOrderLine unlinks an order line: the DELETE, then the recompute of
// its order's totals, which stamps the order with the deleter — the only
// trace of who deleted the line.
func (e *Env) DeleteOrderLine(lineID int64) error {
	var orderID int64
	if err := e.Tx.QueryRow(e.Ctx, "SELECT order_id FROM sale_order_line WHERE id = $1", lineID).Scan(&orderID); err != nil {
		return fmt.Errorf("sale_order_line %d: %w", lineID, err)
	}
	if err := e.Unlink("sale_order_line", lineID); err != nil {
		return err
	}
	return e.recomputeOrder(orderID)
}

// DeleteOrder unlinks an order: a lone DELETE (its lines go with it, ON
// DELETE CASCADE), nothing else.
func (e *Env) DeleteOrder(id int64) error { return e.Unlink("sale_order", id) }

// SetGroups changes a user's groups (res.users.groups_id, a many2many over
// res_groups_users_rel(gid, uid)): INSERT … ON CONFLICT DO NOTHING for the
// added groups, DELETE for the removed ones, and the write of the user
// record that owns the change.
func (e *Env) SetGroups(uid int64, add, remove []int64) error {
	if len(add) > 0 {
		pairs := make([]string, len(add))
		for i, g := range add {
			pairs[i] = fmt.Sprintf("(%d, %d)", uid, g)
		}
		if _, err := e.Tx.Exec(e.Ctx, `INSERT INTO "res_groups_users_rel" ("uid", "gid") VALUES `+strings.Join(pairs, ", ")+
			" ON CONFLICT DO NOTHING"); err != nil {
			return fmt.Errorf("res_groups_users_rel: %w", err)
		}
	}
	if len(remove) > 0 {
		if _, err := e.Tx.Exec(e.Ctx, fmt.Sprintf(`DELETE FROM "res_groups_users_rel" WHERE "uid" IN (%d) AND "gid" IN (%s)`,
			uid, idList(remove))); err != nil {
			return fmt.Errorf("res_groups_users_rel: %w", err)
		}
	}
	return e.Write("res_users", []int64{uid}, nil)
}

// ChangePassword sets a user's password hash as Odoo 18 does, in one
// transaction: the password field's inverse runs a raw UPDATE res_users
// SET password=… WHERE id=…, Odoo mails the user a "Security Update"
// (mail_message + mail_mail rows, by the acting user), and the ORM's flush
// stamps write_uid/write_date on the record — the acting user, who may be
// an administrator setting someone else's password.
func (e *Env) ChangePassword(uid int64, hash string) error {
	if _, err := e.Tx.Exec(e.Ctx, "UPDATE res_users SET password=$1 WHERE id=$2", hash, uid); err != nil {
		return err
	}
	if err := e.securityMail(uid, "Security Update: Password Changed"); err != nil {
		return err
	}
	return e.Write("res_users", []int64{uid}, nil)
}

// SetTOTP enables two-factor authentication with secret, or disables it
// (secret ""): auth_totp's inverse of totp_secret runs a raw UPDATE
// res_users SET totp_secret=… WHERE id=…, auth_totp_mail mails the user,
// then the ORM stamps the record.
func (e *Env) SetTOTP(uid int64, secret string) error {
	if _, err := e.Tx.Exec(e.Ctx, "UPDATE res_users SET totp_secret = $1 WHERE id=$2", nullIfEmpty(secret), uid); err != nil {
		return err
	}
	subject := "Security Update: 2FA Activated"
	if secret == "" {
		subject = "Security Update: 2FA Deactivated"
	}
	if err := e.securityMail(uid, subject); err != nil {
		return err
	}
	return e.Write("res_users", []int64{uid}, nil)
}

// securityMail is res.users._notify_security_setting_update: a message
// authored by the acting user and its outgoing e-mail to the user whose
// setting changed, created by the ORM in the transaction of the change.
func (e *Env) securityMail(uid int64, subject string) error {
	author, from, err := e.partnerAddress(e.UID)
	if err != nil {
		return err
	}
	_, to, err := e.partnerAddress(uid)
	if err != nil {
		return err
	}
	b := make([]byte, 8)
	randRead(b)
	msg, err := e.Create("mail_message", Vals{
		"author_id": author, "body": "", "date": time.Now().UTC().Truncate(time.Second), "email_add_signature": true,
		"email_from": from, "message_id": "<" + hex.EncodeToString(b) + "-openerp-private@odoosim>",
		"message_type": "email_outgoing", "record_name": nil, "reply_to": from, "subject": subject,
	})
	if err != nil {
		return err
	}
	_, err = e.Create("mail_mail", Vals{
		"auto_delete": true, "body_html": "<p>" + subject + "</p>", "email_to": to, "mail_message_id": msg,
		"scheduled_date": nil, "state": "outgoing",
	})
	return err
}

// partnerAddress returns a user's partner and e-mail address as Odoo
// formats it ("Name" <email>).
func (e *Env) partnerAddress(uid int64) (int64, string, error) {
	var id int64
	var name, email string
	err := e.Tx.QueryRow(e.Ctx, `SELECT p.id, p.name, COALESCE(p.email, '') FROM res_users u JOIN res_partner p ON p.id = u.partner_id
		WHERE u.id = $1`, uid).Scan(&id, &name, &email)
	if err != nil {
		return 0, "", fmt.Errorf("the partner of user %d: %w", uid, err)
	}
	return id, `"` + strings.ReplaceAll(name, `"`, `\"`) + `" <` + email + ">", nil
}

// APIKey is a key made by CreateAPIKey.
type APIKey struct {
	ID    int64
	Key   string // the plain key, shown once to the user (40 hex digits)
	Index string // its first 8 characters, stored as the lookup index
	Hash  string // what is stored in the key column
}

// CreateAPIKey makes an API key for the user, as res.users.apikeys._generate
// does: a random 40-hex-digit key, stored as its first 8 characters
// (index) and its pbkdf2-sha512 hash (key), by a raw INSERT.
func (e *Env) CreateAPIKey(name, scope string) (APIKey, error) {
	b := make([]byte, 20)
	randRead(b)
	k := APIKey{Key: hex.EncodeToString(b)}
	k.Index = k.Key[:8]
	k.Hash = hashPBKDF2(k.Key, apiKeyRounds)
	var sc any
	if scope != "" {
		sc = scope
	}
	err := e.Tx.QueryRow(e.Ctx, `INSERT INTO res_users_apikeys (name, user_id, scope, expiration_date, key, index)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, name, e.UID, sc, nil, k.Hash, k.Index).Scan(&k.ID)
	return k, err
}

// SetConfigParameter sets a system parameter (ir.config_parameter.set_param):
// an ORM write of the existing row, or a create.
func (e *Env) SetConfigParameter(key, value string) error {
	var id int64
	err := e.Tx.QueryRow(e.Ctx, "SELECT id FROM ir_config_parameter WHERE key = $1", key).Scan(&id)
	switch {
	case err == pgx.ErrNoRows:
		_, err = e.Create("ir_config_parameter", Vals{"key": key, "value": value})
		return err
	case err != nil:
		return err
	}
	return e.Write("ir_config_parameter", []int64{id}, Vals{"value": value})
}

// RevokeSession logs a session out ("log out of this device", Odoo 18's
// res.device._revoke): the session file is deleted (the session can make
// no more requests), then an ORM write sets revoked = true on every device
// row of the session, stamped with the revoking user.
func (e *Env) RevokeSession(target *Session) error {
	rows, err := e.Tx.Query(e.Ctx, "SELECT id FROM res_device_log WHERE session_identifier = $1 ORDER BY id", target.Identifier())
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	target.revoked = true
	if len(ids) == 0 {
		return nil
	}
	return e.Write("res_device_log", ids, Vals{"revoked": true})
}

// MessagePrefix is the prefix of the logical decoding messages through
// which an application can tell cdcaudit who is acting.
const MessagePrefix = "cdcaudit"

// EmitMessage tells cdcaudit, inside the transaction, who is acting:
// pg_logical_emit_message(true, 'cdcaudit', '{"user_id":…,"session_id":…}').
// sessionID "" leaves session_id out.
func (e *Env) EmitMessage(uid int64, sessionID string) error {
	m := map[string]any{"user_id": uid}
	if sessionID != "" {
		m["session_id"] = sessionID
	}
	payload, _ := json.Marshal(m)
	_, err := e.Tx.Exec(e.Ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", MessagePrefix, string(payload))
	return err
}

// countryIDs are res_country ids of a real Odoo 18.0 (base's data loads the
// countries in the same order on every install).
var countryIDs = map[string]int64{"BE": 20, "DE": 57, "ES": 68, "FR": 75, "IT": 109, "PL": 178, "PT": 183, "US": 233}

// CountryID returns Odoo 18.0's res_country id of an ISO country code, or
// nil (NULL) for a code the fixture does not know: res_partner stores
// country_id; country_code is a related field, not a column.
func CountryID(code string) any {
	if id, ok := countryIDs[code]; ok {
		return id
	}
	return nil
}
