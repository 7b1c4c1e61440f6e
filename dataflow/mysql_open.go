package dataflow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MySQLDriver is the driver name Open uses for mysql:// URLs, registered by
//
//	import _ "github.com/go-sql-driver/mysql"
const MySQLDriver = "mysql"

// mysqlDefaults are the connection parameters Open adds to a mysql:// URL
// unless the URL sets them:
//
//   - parseTime, loc: DATETIME columns scan as time.Time in UTC;
//   - interpolateParams: the driver binds the arguments into the statement
//     text itself (escaping them; our code never concatenates a value), so
//     that a statement with arguments is one round trip, not a prepare, an
//     execute and a close;
//   - time_zone: the session's NOW() and the server's conversions are UTC,
//     as every time dataflow binds is;
//   - sql_mode: strict (a value that does not fit is an error, never
//     truncated), and without ANSI_QUOTES or NO_BACKSLASH_ESCAPES, whose
//     quoting dataflow's statements rely on.
var mysqlDefaults = [...][2]string{
	{"parseTime", "true"},
	{"loc", "UTC"},
	{"interpolateParams", "true"},
	// multiStatements: a text of several statements is one round trip
	// (backend's MySQL save: begin, write and commit in one); with
	// interpolateParams every value in it is still bound by the driver.
	{"multiStatements", "true"},
	{"clientFoundRows", "true"}, // RowsAffected counts matched rows, as elsewhere (an UPDATE to the same values is not "not found")
	{"time_zone", "'+00:00'"},
	{"sql_mode", "'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE,NO_ZERO_IN_DATE,NO_ENGINE_SUBSTITUTION'"},
}

// maxMySQLURLBytes bounds a mysql:// URL, so that an error never echoes a
// huge one: a host name is at most 253 bytes.
const maxMySQLURLBytes = 4096

// parseMySQLURL reads mysql://user[:password]@host[:port]/dbname[?params]
// into the driver's DSN, user:password@tcp(host:port)/dbname?params. The
// parameters are the driver's (see mysqlDefaults); an unknown one sets the
// session variable of that name.
func parseMySQLURL(raw string) (target, error) {
	if len(raw) > maxMySQLURLBytes {
		return target{}, fmt.Errorf("%w: a mysql url of %d bytes (at most %d)", ErrInvalidURL, len(raw), maxMySQLURLBytes) // not echoed
	}
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("%w: cannot parse mysql url", ErrInvalidURL) // the error would echo the password
	}
	redacted := redactURL(u)
	if u.Host == "" {
		return target{}, fmt.Errorf("%w: %s: no host", ErrInvalidURL, redacted)
	}
	if u.Fragment != "" || u.Opaque != "" {
		return target{}, fmt.Errorf("%w: %s: want mysql://user[:password]@host:port/dbname", ErrInvalidURL, redacted)
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	if dbname == "" || strings.ContainsAny(dbname, "/?\x00") {
		return target{}, fmt.Errorf("%w: %s: want one database name in the path", ErrInvalidURL, redacted)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return target{}, fmt.Errorf("%w: %s: bad query", ErrInvalidURL, redacted)
	}
	for _, kv := range mysqlDefaults {
		if !q.Has(kv[0]) {
			q.Set(kv[0], kv[1])
		}
	}
	var dsn strings.Builder
	password := ""
	if u.User != nil {
		dsn.WriteString(u.User.Username())
		if pw, ok := u.User.Password(); ok {
			password = pw
			dsn.WriteString(":" + pw)
		}
		dsn.WriteByte('@')
	}
	dsn.WriteString("tcp(" + u.Host + ")/" + dbname + "?" + q.Encode())
	return target{driver: MySQLDriver, dsn: dsn.String(), mysql: true, password: password, redacted: redacted}, nil
}

// galeraSyncWait is the wsrep_sync_wait Open sets on a Galera node unless
// the URL sets one: reads (and the statements that read before they
// write) first wait until the node has applied every write set the
// cluster committed before they began, so that a read on one node sees a
// commit acknowledged by another (read-your-writes across nodes). 1
// covers SELECT, SHOW and BEGIN; 3 adds UPDATE and DELETE.
const galeraSyncWait = "3"

// mysqlSession adjusts the DSN to the server: on a Galera node (wsrep_on)
// it adds galeraSyncWait unless the URL chose. It reports whether the DSN
// changed, so that Open reopens the pool with it.
func mysqlSession(ctx context.Context, sqldb *sql.DB, t *target) (bool, error) {
	if strings.Contains(t.dsn, "wsrep_sync_wait=") {
		return false, nil
	}
	var name, value string
	err := sqldb.QueryRowContext(ctx, "SHOW VARIABLES LIKE 'wsrep_on'").Scan(&name, &value)
	switch {
	case errors.Is(err, sql.ErrNoRows): // MySQL, or MariaDB built without wsrep
		return false, nil
	case err != nil:
		return false, fmt.Errorf("open %s: %w", t.redacted, redact(err, *t))
	case !strings.EqualFold(value, "ON"):
		return false, nil
	}
	t.dsn += "&wsrep_sync_wait=" + galeraSyncWait
	return true, nil
}
