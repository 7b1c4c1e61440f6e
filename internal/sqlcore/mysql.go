package sqlcore

import (
	"reflect"
	"strings"

	"github.com/uptrace/bun/dialect"
)

// MySQL is the dialect of the MySQL family (MariaDB, Galera, MySQL 8;
// github.com/go-sql-driver/mysql). Its placeholders are ?, as on SQLite,
// and its identifiers are backquoted, as on SQLite; the quirks below are
// its own.
var MySQL = Dialect{&mysqlEngine}

var mysqlEngine = engine{
	name:    dialect.MySQL.String(),
	system:  "mysql", // MariaDB too: one wire protocol and SQL
	product: "MySQL",
	quote:   '`',
	// MySQL reads a backslash inside a string literal as an escape itself
	// (unless NO_BACKSLASH_ESCAPES, which turnkeep's connections do not
	// set), so the escape character is written twice.
	likeEscape:     ` ESCAPE '\\'`,
	unboundedLimit: " LIMIT 18446744073709551615", // the documented "all rows"
	defaultRow:     " () VALUES ()",               // MySQL has no DEFAULT VALUES
	varcharLength:  true,
	// The type names a model may use -> the names information_schema
	// reports, so a model and a live table compare equal.
	typeAliases: map[string]string{
		"boolean":           "tinyint",
		"bool":              "tinyint",
		"integer":           "int",
		"real":              "double",
		"double precision":  "double",
		"json":              "longtext", // MariaDB: LONGTEXT with a json_valid check
		"numeric":           "decimal",
		"character varying": "varchar",
		"character":         "char",
	},
	historyID: "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
	timestamp: "DATETIME(6)",
	catalog: Catalog{
		Tables: `SELECT table_name FROM information_schema.tables
WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' AND table_name IN (?)`,
		Columns: `SELECT column_name, column_type, is_nullable = 'NO', column_key = 'PRI',
	(column_default IS NOT NULL AND column_default <> 'NULL') OR extra LIKE '%auto_increment%' OR extra LIKE '%GENERATED%'
FROM information_schema.columns
WHERE table_schema = DATABASE() AND table_name = ?
ORDER BY ordinal_position`,
		Indexes: `SELECT index_name, non_unique = 0, COALESCE(column_name, '')
FROM information_schema.statistics
WHERE table_schema = DATABASE() AND table_name = ?
ORDER BY index_name, seq_in_index`,
	},
	// alterType is left to migrate's MySQL DDL: MODIFY COLUMN restates
	// the whole definition, which needs the model's field.
	upsert: mysqlUpsert,
	locked: lockedMySQL,
}

func init() { register(&mysqlEngine) }

// mysqlUpsert is Upsert on MySQL: ON DUPLICATE KEY UPDATE every data
// column to the inserted value (VALUES(c), which MariaDB and MySQL 8 both
// read), or the key to itself when there is none, which keeps the row as
// it is. Unlike ON CONFLICT (pk), it fires on a clash with any unique
// index of the table, not only the primary key.
func mysqlUpsert(keys, data []string) string {
	sets := make([]string, 0, max(1, len(data)))
	for _, c := range data {
		sets = append(sets, c+" = VALUES("+c+")")
	}
	if len(sets) == 0 {
		sets = append(sets, keys[0]+" = "+keys[0])
	}
	return " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
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
