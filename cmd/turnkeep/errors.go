package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

// errHelp is returned after --help printed a command's usage: exit 0.
var errHelp = errors.New("help shown")

// usageError is a bad command line: exit 2. hint names the command whose
// --help to suggest.
type usageError struct {
	msg  string
	hint string
}

func (e *usageError) Error() string { return e.msg }

func usagef(hint, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), hint: hint}
}

// errNotFound marks what names something that does not exist: exit 3.
var errNotFound = errors.New("not found")

// dbError marks a failure of the database: exit 4, unless the error is
// also one of input (exit 2) or of a missing session (exit 3).
type dbError struct{ err error }

func (e *dbError) Error() string { return e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }

// dbErr marks err, returned by the database or the library over it, as a
// database error, with a hint where the schema is the cause.
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, dataflow.ErrTableMissing):
		err = fmt.Errorf("%w (a turnkeep table is missing: run 'turnkeep migrate up')", err)
	case errors.Is(err, dataflow.ErrSchemaMismatch):
		err = fmt.Errorf("%w (run 'turnkeep migrate plan' and 'turnkeep migrate up')", err)
	}
	return &dbError{err}
}

// inputErrors are the library's errors for invalid input: exit 2.
var inputErrors = []error{
	memory.ErrInvalidSessionID, memory.ErrInvalidTenant, memory.ErrInvalidUser,
	memory.ErrInvalidCursor, memory.ErrInvalidImport, memory.ErrInvalidTurn,
	memory.ErrTurnTooLarge, memory.ErrInvalidOption, dataflow.ErrInvalidURL,
	memory.ErrInvalidQuery, memory.ErrSessionOwned, memory.ErrSessionExists,
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	if _, ok := errors.AsType[*usageError](err); ok {
		return exitUsage
	}
	for _, target := range inputErrors {
		if errors.Is(err, target) {
			return exitUsage
		}
	}
	if errors.Is(err, errNotFound) || errors.Is(err, memory.ErrSessionNotFound) || errors.Is(err, fs.ErrNotExist) {
		return exitNotFound
	}
	if _, ok := errors.AsType[*dbError](err); ok {
		return exitDatabase
	}
	return exitFailure
}

// oneLine keeps an error to one line, as the command promises.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
