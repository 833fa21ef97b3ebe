package profile

import "strings"

// Column is a column of a table as the replication stream describes it
// (pgoutput's Relation message): its name and type OID, 0 when unknown.
type Column struct {
	Name string
	Type uint32
}

// OdooSecretColumns returns the columns of a table that hold credentials by
// the naming of Odoo's own models: password, passwd, pass, pwd, secret,
// token (access_token, the portal's capability URLs included), pin, the
// payment providers' SHA passphrases (aps_sha_request), and keys
// that are credentials (api_key, private_key, secret_key …). It applies to
// tables that Odoo's ORM made, recognised by the log-access columns the ORM
// gives every model (create_uid, create_date, write_uid, write_date), so it
// holds whether or not the Odoo profile is in use or was detected yet; the
// tables Odoo creates by raw SQL are in the profile's explicit Secrets.
//
// A column whose type cannot hold a credential (boolean, a number, a date:
// payment_token_id, google_calendar_token_validity, api_key_duration) is
// not one. Names that are identifiers, not credentials, are not secrets
// either: a bare "key" (ir_config_parameter.key is a parameter's name, its
// secret is the value; ir_ui_view.key and ir_asset.key are XML ids) and
// public keys (public_key, stripe_publishable_key, turnstile_site_key).
func OdooSecretColumns(schema, table string, cols []Column) []string {
	if !ormTable(cols) {
		return nil
	}
	var out []string
	for _, c := range cols {
		if !canHoldSecret(c.Type) {
			continue
		}
		if SecretName(c.Name) {
			out = append(out, c.Name)
		}
	}
	return out
}

// ormTable reports whether a table has the ORM's log-access columns.
func ormTable(cols []Column) bool {
	var n int
	for _, c := range cols {
		switch c.Name {
		case "create_uid", "create_date", "write_uid", "write_date":
			n++
		}
	}
	return n == 4
}

// SecretName reports whether a column's name, by Odoo's conventions, says
// that it holds a credential. It looks at the name's words (split at '_'),
// so that website_meta_keywords or push_to_talk_key are not matched by
// accident.
func SecretName(name string) bool {
	words := strings.Split(strings.ToLower(name), "_")
	if len(words) == 1 && words[0] == "key" {
		return false // an identifier: parameter name, XML id
	}
	var key, sha, direction bool
	for _, w := range words {
		switch w {
		case "password", "passwd", "pass", "pwd", "secret", "token", "rtoken", "apikey", "apikeys",
			"pin", "passphrase", "shakey": // a kiosk PIN; payment providers' SHA passphrases
			return true
		case "key", "keys":
			key = true
		case "sha":
			sha = true
		case "request", "response", "in", "out":
			direction = true
		}
	}
	if sha && direction {
		return true // aps_sha_request: the passphrase of a request's SHA signature
	}
	if !key {
		return false
	}
	for _, w := range words {
		switch w {
		case "public", "publishable", "site", // meant to be published
			"client", "id", // a provider's public client key, a key's public id
			"cache", "form", "talk", "grouping": // not credentials: a cache stamp, a form's name, a keyboard key, a grouping
			return false
		}
	}
	return true
}

// canHoldSecret reports whether a column of this type can hold a
// credential: everything except booleans, numbers and dates and times
// (built-in type OIDs). Unknown (0) and user-defined types can.
func canHoldSecret(oid uint32) bool {
	switch oid {
	case 16, // bool
		20, 21, 23, 26, // int8, int2, int4, oid
		700, 701, 1700, // float4, float8, numeric
		1082, 1083, 1114, 1184, 1186, 1266: // date, time, timestamp, timestamptz, interval, timetz
		return false
	}
	return true
}
