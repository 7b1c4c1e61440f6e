package dataflow

import (
	"errors"
	"strings"

	"github.com/turnkeep/turnkeep/internal/optx"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

var (
	// ErrNotFound is returned by Read, Update and Delete when no row has the
	// primary key.
	ErrNotFound = errors.New("dataflow: not found")
	// ErrEnsureFailed is returned by every operation whose table could not
	// be made ready; it wraps the cause (for example ErrTableMissing, or the
	// database's error for rejected DDL).
	ErrEnsureFailed = errors.New("dataflow: ensure table failed")
	// ErrTableMissing is returned (wrapped in ErrEnsureFailed) at first use
	// of a table that does not exist when auto-migration is off, and by a
	// first step that needs a table the DB may not create (SchemaChanges
	// false), such as the MySQL family's migration lock table under a
	// backend's data upgrade. It is the same value as
	// migrate.ErrTableMissing.
	ErrTableMissing = sqlcore.ErrTableMissing
	// ErrSchemaMismatch is returned (wrapped in ErrEnsureFailed) at first
	// use when auto-migration is off and the table lacks a model column or
	// differs from it in a way that breaks the model, and by any operation
	// whose statement names a model column the live table lacks.
	ErrSchemaMismatch = errors.New("dataflow: schema does not match model")
	// ErrUnknownColumn is returned before any SQL runs when a filter, an
	// order or a set names a column the model does not have.
	ErrUnknownColumn = errors.New("dataflow: unknown column")
	// ErrInvalidArgument is returned for malformed arguments: a nil row, a
	// negative limit, a bad filter value, a wrong number of key values.
	ErrInvalidArgument = errors.New("dataflow: invalid argument")
	// ErrEmptyFilter is returned by BulkUpdate and BulkDelete for an empty
	// filter, so that a forgotten filter never touches every row.
	ErrEmptyFilter = errors.New("dataflow: empty filter")
	// ErrNoPrimaryKey is returned by Read, Update, Delete and Upsert for a
	// model without a primary key.
	ErrNoPrimaryKey = errors.New("dataflow: model has no primary key")
	// ErrInvalidModel is returned by Register for a type that is not a bun
	// model struct, or a table name registered for another type.
	ErrInvalidModel = errors.New("dataflow: invalid model")
	// ErrInvalidURL is returned by Open for a URL it cannot parse or whose
	// scheme it does not know.
	ErrInvalidURL = errors.New("dataflow: invalid database url")
	// ErrDriverNotRegistered is returned by Open when the program does not
	// import the database/sql driver the URL needs.
	ErrDriverNotRegistered = errors.New("dataflow: database driver not registered")
	// ErrInvalidOption is returned by Open, New and Register for a nil
	// option or one with an invalid value. It is the same value as every
	// turnkeep package's ErrInvalidOption.
	ErrInvalidOption = optx.ErrInvalidOption
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("dataflow: database closed")
	// ErrOutcomeUnknown is returned by RunInTx, and by every write that
	// runs in a transaction of its own, when the connection was lost or the
	// context ended while COMMIT was in flight: the transaction may or may
	// not have committed. The error also wraps the cause, so
	// errors.Is(err, context.DeadlineExceeded) still holds. Retry only a
	// write that is idempotent, or read back to find out.
	ErrOutcomeUnknown = errors.New("dataflow: transaction outcome unknown")
	// ErrDatabaseReplaced is returned by RunInTx, and by every write that
	// runs in a transaction of its own, when the SQLite file Open opened
	// was deleted, renamed or replaced: writes would go on into a file no
	// path names, and be lost when the process ends. Nothing is written.
	// Every write transaction checks, holding the write lock, at the cost
	// of one stat; reads are not checked (they lose nothing). A database
	// made with New has no path, so it is not checked.
	//
	// To restore a backup: stop every process using the file, remove the
	// stale -wal and -shm files beside it, put the backup in place, then
	// start them again.
	ErrDatabaseReplaced = errors.New("dataflow: database file deleted or replaced")
)

// inner wraps an error of this package inside another of its errors: its
// text without its own "dataflow: " prefixes (and the leading "turnkeep: "
// of a value shared with migrate, ErrTableMissing), so that a chain names
// the package once ("dataflow: ensure table failed: table "t": table
// missing", not "…: turnkeep: table missing"). errors.Is and errors.As
// see err.
type inner struct{ err error }

func (e inner) Error() string {
	msg := strings.TrimPrefix(strings.TrimPrefix(e.err.Error(), "dataflow: "), "turnkeep: ")
	return strings.ReplaceAll(msg, ": dataflow: ", ": ")
}

func (e inner) Unwrap() error { return e.err }
