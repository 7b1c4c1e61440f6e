package sqlcore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// ConnLost reports whether err says the connection died (rather than the
// statement failed, or the caller gave up), so that a BEGIN or a read may
// run again on another connection: a driver's ErrBadConn, an EOF, a closed
// or reset connection or a network timeout (see netLost), pgx's closed
// connection, or a PostgreSQL error of class 08 (connection exception) or
// 57P01-57P03 and 57P05 (the server terminated the session: an
// administrator, a shutdown, a server not accepting connections yet, an
// idle session timeout), or on MySQL the driver's "invalid connection"
// (the connection broke while a statement was in flight) or a server
// error that ends the session (see mysqlConnLost). It is false for an
// error that involves the
// context ending, and for local failures such as a missing file or a full
// disk.
func ConnLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up; DeadlineExceeded is also a net.Error
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || netLost(err) || mysqlConnLost(err) {
		return true
	}
	if code, ok := SQLState(err); ok {
		switch code {
		case "57P01", "57P02", "57P03", "57P05":
			return true
		}
		return strings.HasPrefix(code, "08")
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, mysqlInvalidConn)
}

// netLost reports whether err is a network failure that another attempt
// may not meet: a connection reset, refused (the server is restarting),
// aborted or broken, an unreachable network or host, or a timeout. Other
// system errors (a missing socket file, permissions, a full disk) are not.
func netLost(err error) bool {
	for _, errno := range [...]syscall.Errno{
		syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.ETIMEDOUT, syscall.ENETUNREACH, syscall.EHOSTUNREACH, syscall.ENETDOWN, syscall.ENETRESET,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// SQLState returns the SQLSTATE of a PostgreSQL or MySQL error in err's
// chain.
func SQLState(err error) (string, bool) {
	var state interface{ SQLState() string }
	if !errors.As(err, &state) {
		if _, code, ok := MySQLErrno(err); ok && code != "" {
			return code, true
		}
		return "", false
	}
	return state.SQLState(), true
}

// Discard closes conn and tells the pool not to reuse its driver
// connection. A nil conn is nothing to discard.
func Discard(conn *sql.Conn) {
	if conn == nil {
		return
	}
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}
