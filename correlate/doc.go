// Package correlate names the application user and login session behind
// each change, between the decoder and the store, from nothing but the
// replication stream and an application profile (profile.Odoo, or a generic
// profile from YAML). It also maps tables to the application's model names
// and flags updates that bypassed the application (orm_bypass).
//
// The pipeline calls Observe for every event in stream order (it keeps the
// table → model map current from the profile's model table, e.g. Odoo's
// ir_model), then Attribute once per transaction (or per chunk of a huge
// one) with the transaction's events, its transactional logical decoding
// messages and the session-table rows the session Tracker found in it.
// Attribute sets Actor, Model and Flags on every event. Dirty and Load
// persist the model map as key/value records written with the events.
//
// # Who: actor.user_via
//
// The strongest clue wins, for every event of a transaction:
//
//  1. message: a pg_logical_emit_message(true, 'cdcaudit', '{"user_id": N,
//     "session_id": "…"}') in the transaction, for applications that opt in.
//     The content is untrusted: a message that is not a JSON object whose
//     user_id is a positive integer (and whose session_id, when present, is
//     a string of at most 256 bytes) is ignored as a whole. When several
//     valid messages are present the first one counts.
//  2. session_row: a session-table row the Tracker saw in the transaction
//     (Odoo 18: the res_device_log INSERT runs on the request's own cursor),
//     naming its user. When rows of several users are present the first one
//     counts.
//  3. row_user: the row's own audit column: created_by (Odoo create_uid) of
//     an insert (updated_by when the table has no created_by column),
//     updated_by (write_uid) of an update the application stamped. Never a
//     delete's before-image: that write_uid is the last writer, not the
//     deleter.
//  4. tx_peer: the user that row_user found for the other events of the
//     transaction: the parent sale_order the ORM recomputes when a line is
//     deleted, the owning record written with a many2many change. When
//     peers disagree, the user of the most events counts; on a tie, the one
//     found first in stream order.
//  5. none.
//
// User ids are positive integers (a JSON number, or a string of digits for
// numeric columns); null, zero and anything else is no user.
//
// # Which session: actor.session_via
//
// message (the message's session_id), same_tx (a session row of that user in
// the transaction), only_active (the SessionSource knows exactly one active
// session of the user at commit time), most_recent (several: the most
// recently active), or none. The login comes from SessionSource.Login. The
// session every change is put on is touched (SessionSource.Touch) at commit
// time, once per transaction.
//
// # orm_bypass
//
// An update of a table whose after-image has the profile's updated_at column
// (Odoo write_date) is stamped by the application when that column is in
// Changed. It is also stamped when its updated_at value equals one another
// event of the same table stamped in this transaction (the ORM writes a
// record twice in one transaction — a second flush, a recompute — with the
// same transaction timestamp, so the second UPDATE leaves write_date as it
// is). An unstamped update carries a stale updated_by: it gets no row_user.
// When, in addition, it changed a column other than the audit columns
// (created_by, updated_by, updated_at) and the profile's RawWrites do not
// allowlist it (a rule with Column "*" for the whole table, or rules
// covering every changed business column, e.g. Odoo's password hashing),
// it is flagged orm_bypass: someone wrote with raw SQL. Updates without a
// known change set (Changed nil: no full before-image) are never flagged.
//
// # Models
//
// With profile.Models (Odoo: public.ir_model, column model), an INSERT or
// UPDATE of a model row maps the table named by the model ('.' → '_', in
// the model table's schema) to it, a DELETE unmaps it, a TRUNCATE unmaps
// every model of that schema. Tables without a model get Model "" (null).
// The model table's rows that predate the replication slot are not in the
// stream: SeedModel records them (one read of the table at first start).
//
// A Correlator is not safe for concurrent use: one pipeline goroutine owns it.
package correlate
