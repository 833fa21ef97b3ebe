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
//     updated_by (write_uid) of an update the application provably stamped
//     in this transaction (below). Never a delete's before-image: that
//     write_uid is the last writer, not the deleter.
//  4. tx_peer: the user that row_user found for the other events of the
//     transaction: the parent sale_order the ORM recomputes when a line is
//     deleted, the owning record written with a many2many change. When
//     peers disagree, the user of the most events counts; on a tie, the one
//     found first in stream order.
//  5. none, with candidates (actor.candidates): the updated_by user of an
//     update that may or may not have gone through the application, else
//     the users with an open session at commit time
//     (SessionSource.ActiveUsers): leads, never a finding.
//
// User ids are positive integers (a JSON number, or a string of digits for
// numeric columns); null, zero and anything else is no user.
//
// # Which session: actor.session_via
//
// message (the message's session_id), same_tx (a session row of that user in
// the transaction), only_active (the SessionSource knows exactly one active
// session of the user at commit time), ambiguous (several, and nothing
// decides: no session, the open ones as candidates), or none. The login
// comes from SessionSource.Login. The session every change is put on is
// touched (SessionSource.Touch) at commit time, once per transaction.
//
// # Through the application? row_user, orm_bypass, schema_migration
//
// The application stamps the profile's updated_at column (Odoo write_date:
// the transaction's start, the same value for every row it writes) on
// every write. An update of a table whose after-image has that column is
// judged:
//
//   - With a whole before-image (Changed known): stamped when updated_at is
//     in Changed, or when its value equals one another event of the same
//     table stamped in this transaction (the ORM writes a record twice in
//     one transaction — a second flush, a recompute — with the same
//     timestamp). An update without a before-image stamped its table when
//     judged stamped (below); when it is undecided, so is an update here
//     repeating its value (a reconstructed before-image may be the one it
//     left). Otherwise it is unstamped.
//   - Without one (REPLICA IDENTITY DEFAULT, Odoo's default; Changed nil),
//     the value decides. The transaction's stamps are the values its
//     inserts wrote and the values its updates provably wrote themselves:
//     later than the horizon of recentStamps (which remembers, for 5
//     minutes of stream time and since streaming started, the updated_at
//     each row carried) and not the value an earlier transaction left on
//     the row. An update carrying the transaction's one stamp is stamped.
//     It is provably unstamped when updated_at is NULL, is the value an
//     earlier transaction left on that row, is older than the transaction's
//     stamp, or is older than the commit by more than maxTxAge (24 h).
//     Anything else is undecided: no row_user, the updated_by user a
//     candidate.
//
// An unstamped update gets no row_user: its updated_by is stale. It is
// flagged orm_bypass when it changed a column other than the audit columns
// (created_by, updated_by, updated_at) that the profile's RawWrites do not
// allowlist (a rule with Column "*" for the whole table, or rules covering
// every changed column, e.g. Odoo's password hashing); without a change set,
// when the table has no RawWrites rule at all. It is flagged
// schema_migration instead when the transaction changed the shape of its
// table (Tx.SchemaChanged, from the decoder), or of any table for the
// profile's Reflection tables (Odoo's ir_model*): a module installing a
// column fills it with raw UPDATEs. A Reflection table's update is also
// schema_migration when the transaction inserted into a Reflection table (a
// new model or field): the decoder cannot see a new table's creation, and
// Odoo's module loader rewrites existing ir_model* rows in the transaction
// that creates its tables (measured live: an install started after cdcaudit).
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
