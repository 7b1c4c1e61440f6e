package dataflow

import (
	"database/sql"
	"sync"
)

// Closed reports whether Close was called. A nil or zero DB counts as
// closed.
func (db *DB) Closed() bool {
	return db == nil || db.sql == nil || db.closed.Load()
}

// stmtRegistry holds the statements a DB prepared, to close them with it.
type stmtRegistry struct {
	mu     sync.Mutex // protects stmts and closed
	stmts  []*sql.Stmt
	closed bool
}

// trackStmt records a statement prepared for db, or closes it and returns
// ErrClosed if db closed meanwhile.
func (db *DB) trackStmt(st *sql.Stmt) error {
	db.prepared.mu.Lock()
	defer db.prepared.mu.Unlock()
	if db.prepared.closed {
		st.Close()
		return ErrClosed
	}
	db.prepared.stmts = append(db.prepared.stmts, st)
	return nil
}

// closeStmts closes every statement db prepared.
func (db *DB) closeStmts() {
	db.prepared.mu.Lock()
	defer db.prepared.mu.Unlock()
	db.prepared.closed = true
	for _, st := range db.prepared.stmts {
		st.Close()
	}
	db.prepared.stmts = nil
}
