package audit

import "time"

// Terms are what the store indexes an event by: the answers to "what
// happened to this record", "what did this user do", "what was done in this
// session", "what happened to this table" and "what happened then". They
// come from the event as the pipeline built it (Event.Terms) or from its
// stored record (ParseTerms, for a store indexed after the fact); both
// give the same Terms for the same event.
type Terms struct {
	Schema, Table string
	Op            Op
	// User is the actor's login, or "#<user_id>" when only the id is
	// known; "" when the change is not attributed to a user.
	User string
	// Session is the actor's session pseudonym; "" when none.
	Session string
	// Records are the record terms (RecordTerm) the event belongs to: its
	// key's, and also the before-image key's when an update changed the
	// key. None for truncate.
	Records [][]byte
	Flags   []string
	// CommitTime is the transaction's commit time.
	CommitTime time.Time
}
