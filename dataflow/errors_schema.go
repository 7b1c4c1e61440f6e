package dataflow

import "errors"

var (
	// ErrDestructiveChange is returned (wrapped in ErrEnsureFailed) by
	// EnsureTable and by every operation on a table whose live schema
	// differs from the model in a way that breaks the model's statements,
	// when the engine will not change it: WithForceDestructive is off, or
	// the dialect cannot make the change (SQLite cannot change a column's
	// type). The message names the table, each column and the kind of
	// change. Differences that break the model are a model column whose
	// type changed, and a column the model lacks that is NOT NULL without
	// a default (every insert would fail). A column the model lacks that is
	// nullable or has a default is left alone without an error: it is the
	// normal state of a rolling deploy, where a newer program has added a
	// column this one does not know. With auto-migration off the same
	// differences are ErrSchemaMismatch instead.
	ErrDestructiveChange = errors.New("dataflow: destructive change not applied")
)
