package history

import "github.com/cdcaudit/cdcaudit/audit"

// The names of a record live in audit (the store's record index uses them
// too); these aliases keep history's API as it was.

// Ref names one record: its table and the values of its key.
type Ref = audit.RecordRef

// Key is a record's key (see audit.RecordKey).
type Key = audit.RecordKey

// KeyValue is one key column's value as text (see audit.KeyValue).
type KeyValue = audit.KeyValue

// ParseRef parses TABLE:KEY (see audit.ParseRecordRef).
func ParseRef(s string) (Ref, error) { return audit.ParseRecordRef(s) }

func valueText(raw []byte) (string, bool) { return audit.KeyText(raw) }

func sortKey(k Key) { k.Sort() }
