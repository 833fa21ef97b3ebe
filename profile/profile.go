// Package profile describes what cdcaudit knows about an application's
// tables: where its users, logins and sessions live, which columns name the
// acting user, which columns hold secrets, and which raw writes are the
// application's own. It is data only, no I/O: sessions/ and correlate/ read
// it; the odoo profile is built in, a generic one comes from YAML.
package profile

// Table names a table as "schema.table".
type Table = string

// SessionTable maps an application's session (or device-log) table. Empty
// column names mean the application does not record that field.
type SessionTable struct {
	Table Table `yaml:"table"`
	// Kind: "device_log" (Odoo's res_device_log: every INSERT opens or
	// refreshes the session it names, rows are never updated except to
	// revoke) or "session" (one row per session, updated as it is used,
	// deleted or marked ended at logout).
	Kind string `yaml:"kind"`
	ID   string `yaml:"id"` // the session identifier: a secret, only ever kept as a pseudonym
	// IDLength, when set, keeps only the first IDLength characters of the
	// identifier, so that two tables naming one session name it alike (Odoo's
	// res_device_log stores the first 42 characters of the session id).
	IDLength int    `yaml:"id_length,omitempty"`
	User     string `yaml:"user"`
	// UserKey, when set, means the User column holds a JSON document (jsonb,
	// or text holding JSON, e.g. a serialized session) and the user id is its
	// top-level member UserKey; a document without it is an anonymous session.
	UserKey   string `yaml:"user_key,omitempty"`
	IP        string `yaml:"ip"`
	UserAgent string `yaml:"user_agent"` // parsed with uap-go into browser, OS, device
	Platform  string `yaml:"platform"`   // OS as the application recorded it
	Browser   string `yaml:"browser"`
	Device    string `yaml:"device"`
	Country   string `yaml:"country"`
	City      string `yaml:"city"`
	Created   string `yaml:"created"`   // first activity
	LastSeen  string `yaml:"last_seen"` // last activity
	Ended     string `yaml:"ended"`     // a timestamp set when the session ends
	Revoked   string `yaml:"revoked"`   // a boolean set true when the session is revoked
	RevokedBy string `yaml:"revoked_by"`
}

// LoginTable is a table with one INSERT per successful login.
type LoginTable struct {
	Table Table  `yaml:"table"`
	User  string `yaml:"user"` // the column naming who logged in
	At    string `yaml:"at"`   // when ("" = commit time)
}

// UsersTable is where logins (user names) live.
type UsersTable struct {
	Table Table  `yaml:"table"`
	ID    string `yaml:"id"`
	Login string `yaml:"login"`
	// Password: an UPDATE of this column invalidates all of the user's
	// sessions (Odoo 16/17 "log out everywhere" re-hashes it).
	Password string `yaml:"password"`
}

// Columns names the audit columns a business table may carry.
type Columns struct {
	CreatedBy string `yaml:"created_by"` // Odoo: create_uid
	UpdatedBy string `yaml:"updated_by"` // Odoo: write_uid
	// UpdatedAt is stamped by the application on every write (Odoo:
	// write_date): an update that changes other columns but not this one
	// did not come through the application (flag orm_bypass).
	UpdatedAt string `yaml:"updated_at"`
}

// ColumnRule selects columns: Table and Column are globs (path.Match), Table
// over "schema.table". Where is optional: a column of the same row that must
// match one of Values (e.g. ir_config_parameter's key) for the rule to apply.
type ColumnRule struct {
	Table  string   `yaml:"table"`
	Column string   `yaml:"column"`
	Where  string   `yaml:"where,omitempty"`
	Values []string `yaml:"values,omitempty"` // globs
}

// ModelTable maps table names to application model names.
type ModelTable struct {
	Table Table  `yaml:"table"` // Odoo: public.ir_model
	Model string `yaml:"model"` // the column holding the model name ("sale.order")
}

// Profile is everything cdcaudit knows about one application.
type Profile struct {
	Name     string         `yaml:"name"`
	Users    UsersTable     `yaml:"users"`
	Logins   []LoginTable   `yaml:"logins"`
	Sessions []SessionTable `yaml:"sessions"`
	Columns  Columns        `yaml:"columns"`
	Models   *ModelTable    `yaml:"models,omitempty"`
	// Secrets are never stored: values replaced by "[redacted]" or an HMAC.
	Secrets []ColumnRule `yaml:"secrets"`
	// RawWrites are the application's own writes outside its ORM: updates of
	// these columns are never flagged orm_bypass (Table/Column globs; a rule
	// with Column "*" allowlists the whole table).
	RawWrites []ColumnRule `yaml:"raw_writes"`
	// Reflection are the tables (schema.table globs) where the application
	// describes its own schema (Odoo: ir_model, ir_model_fields …): their
	// raw writes in a transaction that changed any table's shape, or that
	// inserted into one of them (a new model or field), are the schema
	// migration's, flagged schema_migration rather than orm_bypass.
	Reflection []string `yaml:"reflection,omitempty"`
}

// SecretRules returns the columns never to store: Secrets, plus what the
// profile's own mapping says is a credential whether or not it is listed
// there — every session table's identifier (and a user column holding a
// JSON session payload), and the users table's password.
func (p Profile) SecretRules() []ColumnRule {
	rules := append([]ColumnRule(nil), p.Secrets...)
	add := func(table, column string) {
		if table == "" || column == "" {
			return
		}
		for _, r := range rules {
			if r.Table == table && r.Column == column && r.Where == "" {
				return
			}
		}
		rules = append(rules, ColumnRule{Table: table, Column: column})
	}
	for _, st := range p.Sessions {
		add(st.Table, st.ID)
		if st.UserKey != "" {
			add(st.Table, st.User)
		}
	}
	add(p.Users.Table, p.Users.Password)
	return rules
}
