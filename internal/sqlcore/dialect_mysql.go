package sqlcore

import "reflect"

// What the MySQL family (MariaDB, Galera, MySQL) needs beyond the other
// dialects. Its placeholders are ?, as on SQLite, and its identifiers are
// backquoted, as on SQLite; the quirks below are its own.

// SQLite reports whether d is SQLite, the dialect whose transactions run
// on a connection of their own with BEGIN IMMEDIATE (see BeginImmediate)
// and whose statements are kept prepared per connection. PostgreSQL and
// MySQL are servers: their transactions are database/sql's.
func (d Dialect) SQLite() bool { return !d.PG && !d.MySQL }

// LikeEscape is the ESCAPE clause that makes a backslash the escape
// character of a LIKE pattern. MySQL reads a backslash inside a string
// literal as an escape itself (unless NO_BACKSLASH_ESCAPES, which
// turnkeep's connections do not set), so it is written twice there.
func (d Dialect) LikeEscape() string {
	if d.MySQL {
		return ` ESCAPE '\\'`
	}
	return ` ESCAPE '\'`
}

// UnboundedLimit is a LIMIT that selects every row, for an OFFSET without
// a limit where the dialect needs a LIMIT before OFFSET ("" where it does
// not: PostgreSQL).
func (d Dialect) UnboundedLimit() string {
	switch {
	case d.PG:
		return ""
	case d.MySQL:
		return " LIMIT 18446744073709551615" // the documented "all rows"
	}
	return " LIMIT -1"
}

// MySQL error numbers turnkeep acts on.
const (
	MySQLLockWaitTimeout   = 1205 // ER_LOCK_WAIT_TIMEOUT: a row lock was held too long; the statement (not the transaction) failed
	MySQLDeadlock          = 1213 // ER_LOCK_DEADLOCK (SQLSTATE 40001): a deadlock, or a Galera certification failure; the transaction was rolled back
	MySQLDuplicateKey      = 1062 // ER_DUP_ENTRY (SQLSTATE 23000)
	MySQLNoSuchTable       = 1146 // ER_NO_SUCH_TABLE (SQLSTATE 42S02)
	MySQLUnknownColumn     = 1054 // ER_BAD_FIELD_ERROR (SQLSTATE 42S22)
	MySQLConnectionKilled  = 1927 // ER_CONNECTION_KILLED (SQLSTATE 70100): KILL, or a shutdown
	MySQLServerShutdown    = 1053 // ER_SERVER_SHUTDOWN (SQLSTATE 08S01)
	MySQLWsrepNotPrepared  = 1047 // ER_UNKNOWN_COM_ERROR (SQLSTATE 08S01): a Galera node outside the primary component
	MySQLQueryInterrupted  = 1317 // ER_QUERY_INTERRUPTED (SQLSTATE 70100): KILL QUERY or max_statement_time
	MySQLStatementTimeout  = 1969 // ER_STATEMENT_TIMEOUT (SQLSTATE 70100): MariaDB's max_statement_time
	mysqlDriverErrorTypeID = "github.com/go-sql-driver/mysql.MySQLError"
)

// MySQLErrno returns the error number and SQLSTATE of a server error of
// the MySQL driver (github.com/go-sql-driver/mysql's *MySQLError) in err's
// chain. sqlcore imports no driver: the error is recognised by its type's
// package path and read by its fields, Number and SQLState.
func MySQLErrno(err error) (number uint16, state string, ok bool) {
	for _, e := range chain(err) {
		v := reflect.ValueOf(e)
		if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
			continue
		}
		s := v.Elem()
		if s.Type().PkgPath()+"."+s.Type().Name() != mysqlDriverErrorTypeID {
			continue
		}
		n, st := s.FieldByName("Number"), s.FieldByName("SQLState")
		if n.Kind() != reflect.Uint16 || st.Kind() != reflect.Array || st.Len() != 5 {
			return 0, "", false // a driver version with another shape
		}
		var b [5]byte
		for i := range b {
			b[i] = byte(st.Index(i).Uint())
		}
		if b == [5]byte{} {
			return uint16(n.Uint()), "", true
		}
		return uint16(n.Uint()), string(b[:]), true
	}
	return 0, "", false
}

// chain returns err and every error it wraps, depth first.
func chain(err error) []error {
	var out []error
	stack := []error{err}
	for len(stack) > 0 && len(out) < 64 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if e == nil {
			continue
		}
		out = append(out, e)
		switch x := e.(type) {
		case interface{ Unwrap() []error }:
			errs := x.Unwrap()
			for i := len(errs) - 1; i >= 0; i-- {
				stack = append(stack, errs[i])
			}
		case interface{ Unwrap() error }:
			stack = append(stack, x.Unwrap())
		}
	}
	return out
}

// mysqlConnLost reports whether err is a MySQL server error that ends the
// session: the connection was killed, the server is shutting down, or a
// Galera node left the primary component (another connection, perhaps to
// another node, may serve).
func mysqlConnLost(err error) bool {
	n, _, ok := MySQLErrno(err)
	return ok && (n == MySQLConnectionKilled || n == MySQLServerShutdown || n == MySQLWsrepNotPrepared)
}

// mysqlInvalidConn is the text of the driver's ErrInvalidConn, returned
// when the connection broke while a statement was in flight.
const mysqlInvalidConn = "invalid connection"

// MySQLRetryable reports whether err is a MySQL error that another attempt
// of the transaction may not meet: a deadlock or a Galera certification
// conflict (1213, SQLSTATE 40001), whose transaction was rolled back, or a
// lock wait timeout (1205).
func MySQLRetryable(err error) bool {
	n, _, ok := MySQLErrno(err)
	return ok && (n == MySQLDeadlock || n == MySQLLockWaitTimeout)
}

// IsMySQLErrno reports whether err is the MySQL server error number n.
func IsMySQLErrno(err error, n uint16) bool {
	got, _, ok := MySQLErrno(err)
	return ok && got == n
}
