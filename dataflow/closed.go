package dataflow

// Closed reports whether Close was called. A nil or zero DB counts as
// closed.
func (db *DB) Closed() bool {
	return db == nil || db.sql == nil || db.closed.Load()
}
