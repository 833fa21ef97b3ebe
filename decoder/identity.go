package decoder

// FullIdentity reports whether the table of the row change being handed to
// Handler.Event has REPLICA IDENTITY FULL, as the stream's last Relation
// message for it says: its updates and deletes carry the whole old row.
// False outside that call.
func (d *Decoder) FullIdentity() bool { return d.cur != nil && d.cur.identity == 'f' }
