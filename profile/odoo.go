package profile

// Odoo returns the built-in profile for Odoo 16 to 19 (the facts behind each rule are in its comment).
func Odoo() Profile {
	return Profile{
		Name:   "odoo",
		Users:  UsersTable{Table: "public.res_users", ID: "id", Login: "login", Password: "password"},
		Logins: []LoginTable{{Table: "public.res_users_log", User: "create_uid", At: "create_date"}},
		Sessions: []SessionTable{{
			Table: "public.res_device_log", Kind: "device_log",
			ID: "session_identifier", User: "user_id", IP: "ip_address",
			UserAgent: "user_agent", // Odoo 19.1+; 18.0 has platform/browser/device_type instead
			Platform:  "platform", Browser: "browser", Device: "device_type",
			Country: "country", City: "city",
			Created: "first_activity", LastSeen: "last_activity",
			Revoked: "revoked", RevokedBy: "write_uid",
		}, {
			// OCA session_db: the session store itself; logout deletes the row.
			// The payload is the serialized session: its uid is the user (none
			// before login). Its sid's first 42 characters are the device log's
			// session_identifier: both tables name one session.
			Table: "public.http_sessions", Kind: "session", ID: "sid", IDLength: 42,
			User: "payload", UserKey: "uid", LastSeen: "write_date",
		}},
		Columns: Columns{CreatedBy: "create_uid", UpdatedBy: "write_uid", UpdatedAt: "write_date"},
		Models:  &ModelTable{Table: "public.ir_model", Model: "model"},
		Secrets: []ColumnRule{
			{Table: "public.res_users", Column: "password"},
			{Table: "public.res_users", Column: "totp_secret"},
			{Table: "public.res_users", Column: "oauth_access_token"},
			// Tables Odoo creates by raw SQL (_auto = False), without the
			// ORM's log-access columns, so OdooSecretColumns does not see them.
			{Table: "public.res_users_apikeys", Column: "key"},
			{Table: "public.res_users_apikeys", Column: "index"},
			{Table: "public.auth_totp_device", Column: "key"}, // auth_totp: inherits res.users.apikeys
			{Table: "public.auth_totp_device", Column: "index"},
			// A parameter's name is no secret; the value of a secret-named one is.
			{Table: "public.ir_config_parameter", Column: "value", Where: "key",
				Values: []string{"database.secret", "*secret*", "*token*", "*password*", "*passwd*", "*_key", "*.key", "*api_key*", "*apikey*"}},
			// The password wizards hold typed passwords in plain text (also
			// matched by OdooSecretColumns, listed for tables that lack an
			// audit column in some version).
			{Table: "public.res_users_identitycheck", Column: "password"},
			{Table: "public.change_password_user", Column: "new_passwd"},
			{Table: "public.change_password_own", Column: "new_password"},
			{Table: "public.change_password_own", Column: "confirm_password"},
			{Table: "public.auth_totp_wizard", Column: "secret"},
			{Table: "public.auth_totp_wizard", Column: "url"},    // otpauth://…?secret=…
			{Table: "public.auth_totp_wizard", Column: "qrcode"}, // the same URL as an image
			{Table: "public.auth_totp_wizard", Column: "code"},   // a one-time code
			{Table: "public.res_device_log", Column: "session_identifier"},
			{Table: "public.http_sessions", Column: "sid"},
			{Table: "public.http_sessions", Column: "payload"},
			{Table: "public.auditlog_http_session", Column: "name"},
		},
		RawWrites: []ColumnRule{
			{Table: "public.res_users", Column: "password"},    // hashing on write
			{Table: "public.res_users", Column: "totp_secret"}, // auth_totp sets it with a raw UPDATE
			{Table: "public.res_device_log", Column: "*"},
			{Table: "public.bus_bus", Column: "*"},
			{Table: "public.bus_presence", Column: "*"},
			{Table: "public.ir_cron", Column: "*"}, // locks, lastcall, nextcall
			{Table: "public.ir_cron_trigger", Column: "*"},
			{Table: "public.ir_sequence", Column: "*"},
			{Table: "public.ir_sequence_date_range", Column: "*"},
			{Table: "public.ir_attachment", Column: "*"}, // checksum/file bookkeeping
			{Table: "public.res_users_log", Column: "*"},
			{Table: "public.mail_mail", Column: "*"},
			// The module loader's bookkeeping (recorded on 18.0: "update
			// ir_module_module set demo=false where id=…", "… set
			// state='installed' where name='base'", and
			// ir_module_module_dependency.auto_install_required).
			{Table: "public.ir_module_module", Column: "demo"},
			{Table: "public.ir_module_module", Column: "state"},
			{Table: "public.ir_module_module_dependency", Column: "*"},
		},
		// Module installation reflects models, fields, selections,
		// constraints, relations and xml ids into these.
		Reflection: []string{"public.ir_model", "public.ir_model_*"},
	}
}
