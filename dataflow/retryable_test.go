package dataflow_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"

	"github.com/turnkeep/turnkeep/dataflow"
)

// Retryable is true only for transient errors, and connLost only for a
// lost connection, however the error is wrapped.
func TestRetryableClassifiesErrors(t *testing.T) {
	type want struct{ retryable, connLost bool }
	lost := want{true, true}
	transient := want{true, false} // worth another try, but not a dead connection
	permanent := want{false, false}

	type tc struct {
		name string
		err  error
		want want
	}
	tests := []tc{
		{"nil", nil, permanent},
		{"plain error", errors.New("boom"), permanent},
		{"canceled", context.Canceled, permanent},
		{"deadline", context.DeadlineExceeded, permanent},
		{"wrapped deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), permanent},
		{"deadline with a lost connection", fmt.Errorf("%w: %w", context.DeadlineExceeded, io.ErrUnexpectedEOF), permanent},
		{"ErrBadConn", driver.ErrBadConn, lost},
		{"wrapped ErrBadConn", fmt.Errorf("begin: %w", driver.ErrBadConn), lost},
		{"EOF", io.EOF, lost},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), lost},
		{"net.ErrClosed", &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}, lost},
		{"pgx conn closed", errors.New("conn closed"), lost},
		{"i/o timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, lost},
		{"DNS timeout", &net.DNSError{Err: "timeout", Name: "db", IsTimeout: true}, lost},
		{"DNS not found", &net.DNSError{Err: "no such host", Name: "db", IsNotFound: true}, permanent},
		{"outcome unknown, connection lost", fmt.Errorf("commit: %w: %w", dataflow.ErrOutcomeUnknown, errors.New("conn closed")), lost},
		{"outcome unknown, deadline", fmt.Errorf("commit: %w: %w", dataflow.ErrOutcomeUnknown, context.DeadlineExceeded), permanent},
		{"database replaced", fmt.Errorf("begin: %w: /x.db no longer exists", dataflow.ErrDatabaseReplaced), permanent},
		{"SQLite busy", errors.New("database is locked (5) (SQLITE_BUSY)"), transient},
		{"SQLite constraint", errors.New("constraint failed: UNIQUE constraint failed: t.id (2067)"), permanent},
	}
	for _, code := range []string{"08000", "08001", "08003", "08006", "08P01", "57P01", "57P02", "57P03", "57P05"} {
		tests = append(tests, tc{"PgError " + code, &pgconn.PgError{Code: code}, lost})
	}
	for _, code := range []string{"40001", "40P01"} {
		tests = append(tests, tc{"PgError " + code, &pgconn.PgError{Code: code}, transient})
	}
	for _, code := range []string{"23505", "23503", "42601", "42P01", "53100", "57014", "57P04", "25P02"} {
		tests = append(tests, tc{"PgError " + code, &pgconn.PgError{Code: code}, permanent})
	}
	errnos := []struct {
		errno syscall.Errno
		want  want
	}{
		{syscall.ECONNRESET, lost}, {syscall.ECONNREFUSED, lost}, {syscall.ECONNABORTED, lost},
		{syscall.EPIPE, lost}, {syscall.ETIMEDOUT, lost}, {syscall.ENETUNREACH, lost},
		{syscall.EHOSTUNREACH, lost},
		{syscall.ENOENT, permanent}, {syscall.EACCES, permanent}, {syscall.EPERM, permanent},
		{syscall.ENOSPC, permanent}, {syscall.EROFS, permanent}, {syscall.EMFILE, permanent},
	}
	for _, e := range errnos {
		sys := &os.SyscallError{Syscall: "connect", Err: e.errno}
		tests = append(tests,
			tc{e.errno.Error(), e.errno, e.want},
			tc{e.errno.Error() + " in SyscallError", sys, e.want},
			tc{e.errno.Error() + " in OpError", &net.OpError{Op: "dial", Net: "unix", Err: sys}, e.want},
			tc{e.errno.Error() + " wrapped", fmt.Errorf("open db: %w", &net.OpError{Op: "dial", Net: "tcp", Err: sys}), e.want},
			tc{e.errno.Error() + " in PathError", &os.PathError{Op: "open", Path: "/x.db", Err: e.errno}, e.want},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want.retryable, dataflow.Retryable(tt.err), "Retryable(%v)", tt.err)
			assert.Equal(t, tt.want.connLost, dataflow.ConnLost(tt.err), "connLost(%v)", tt.err)
		})
	}
}
