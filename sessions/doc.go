// Package sessions rebuilds the application's users, logins and login
// sessions from the replication stream — the application's session tables
// are just more published tables — for correlate to attribute changes to
// them, and for 'cdcaudit sessions' to list them.
//
// A Tracker sees every event in stream order, before redaction (Observe),
// and is driven by a profile.Profile:
//
//   - users table (Odoo: res_users): id → login, kept current from
//     INSERT/UPDATE/DELETE. An UPDATE that changes the password column ends
//     the user's open sessions (password_changed: Odoo 16/17's "log out
//     everywhere"; Odoo 18 logs out every session of the user, the one the
//     change was made in too) once its transaction is attributed
//     (Attributed), ended by the user it is attributed to: the
//     transaction's own changes keep their session.
//   - login tables (Odoo: res_users_log): every INSERT is a login of its user
//     column (create_uid). When none of the profile's session tables exists
//     (Options.PresentTables: Odoo 16/17), each login is also a session of
//     its own, "l" + the login row's id.
//   - session tables of kind device_log (Odoo 18+: res_device_log): an
//     INSERT opens or refreshes the session it names (last activity, IP,
//     browser, OS, device, country, city; a user_agent column, Odoo 19.1+,
//     is parsed with uap-go); revoked set true ends it (revoked, by the
//     revoked_by column: write_uid). Its DELETEs are cleanup: they end
//     nothing.
//   - session tables of kind session (OCA session_db's http_sessions, generic
//     applications): INSERT opens, UPDATE refreshes, an ended column set or
//     revoked true ends it (logged_out, revoked), DELETE of its last row ends
//     it (deleted: a logout). A row that names no user (an anonymous web
//     session) opens nothing.
//
// A session is active, idle (open, no activity for Options.IdleAfter), or
// ended: explicitly, or expired after Options.Lifetime without activity.
// Ends that are inferences (expiry, a password change) are undone by later
// activity of the same session; explicit ones are final.
//
// The application's session identifiers are credentials: the tracker keeps
// only their pseudonyms (Pseudonym: "s" + 24 hex digits of SHA-256), never
// the raw value, in memory past an Observe call, in its state, or in errors.
//
// State is persisted by the caller: Dirty returns the records changed since
// its last call (to write in the same store transaction as the events that
// caused them), Load restores them at start-up, ReadAll/ReadState decode
// them for the CLI and the API. Records: "c" (the stream clock and
// settings), "l/<user>/<time>/<event id>" (a login), "s/<session id>" (a
// session), "u/<user>" (a login name); all JSON. Sessions ended for a
// lifetime leave memory but stay in the store.
package sessions
