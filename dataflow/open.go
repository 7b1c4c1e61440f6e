package dataflow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
)

// Driver names Open uses. The program must import the driver, for example
//
//	import _ "modernc.org/sqlite"               // registers "sqlite"
//	import _ "github.com/jackc/pgx/v5/stdlib"   // registers "pgx"
//	import _ "github.com/go-sql-driver/mysql"   // registers "mysql" (see MySQLDriver)
const (
	SQLiteDriver   = "sqlite"
	PostgresDriver = "pgx"
)

// target is a parsed database URL.
type target struct {
	driver   string
	dsn      string
	pg       bool
	mysql    bool
	password string // mysql: the URL's password, kept out of errors
	memory   bool
	path     string // SQLite file
	redacted string // the URL without a password, for errors and logs
}

var memCounter atomic.Uint64

// parseURL understands sqlite:///relative.db, sqlite:////absolute.db,
// sqlite:///:memory:, :memory:, postgres://…, postgresql://… and
// mysql://… (see parseMySQLURL).
func parseURL(raw string, cfg config) (target, error) {
	switch {
	case raw == ":memory:" || raw == "sqlite://:memory:":
		return memoryTarget(raw, cfg), nil
	case strings.HasPrefix(raw, "sqlite://"):
		rest := strings.TrimPrefix(raw, "sqlite://")
		if i := strings.IndexAny(rest, "?#"); i >= 0 {
			return target{}, fmt.Errorf("%w: %q: query parameters are not supported; use options", ErrInvalidURL, short(raw))
		}
		if !strings.HasPrefix(rest, "/") || len(rest) < 2 {
			return target{}, fmt.Errorf("%w: %q: want sqlite:///relative.db or sqlite:////absolute/path.db", ErrInvalidURL, short(raw))
		}
		path, err := url.PathUnescape(rest[1:])
		if err != nil || strings.ContainsRune(path, 0) {
			return target{}, fmt.Errorf("%w: %q: bad path", ErrInvalidURL, short(raw))
		}
		if path == ":memory:" {
			return memoryTarget(raw, cfg), nil
		}
		// "file:" + "//x" would make x a URI authority: absolute paths get
		// an empty authority first.
		prefix := "file:"
		if strings.HasPrefix(path, "/") {
			prefix = "file://"
		}
		return target{
			driver:   SQLiteDriver,
			dsn:      prefix + escapeSQLitePath(path) + "?" + strings.TrimPrefix(sqlitePragmas(cfg, false), "&"),
			path:     path,
			redacted: raw,
		}, nil
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		u, err := url.Parse(raw)
		if err != nil {
			return target{}, fmt.Errorf("%w: cannot parse postgres url", ErrInvalidURL) // the error would echo the password
		}
		if u.Host == "" {
			return target{}, fmt.Errorf("%w: %s: no host", ErrInvalidURL, redactURL(u))
		}
		return target{driver: PostgresDriver, dsn: raw, pg: true, redacted: redactURL(u)}, nil
	case strings.HasPrefix(raw, "mysql://"):
		return parseMySQLURL(raw)
	default:
		// Echo only a real scheme: raw may be a key=value DSN holding a
		// password.
		scheme, _, ok := strings.Cut(raw, ":")
		if !ok || !isScheme(scheme) {
			return target{}, fmt.Errorf("%w: no scheme (want sqlite://, postgres:// or mysql://)", ErrInvalidURL)
		}
		if len(scheme) > 32 {
			scheme = scheme[:32] + "…"
		}
		return target{}, fmt.Errorf("%w: unknown scheme %q (want sqlite://, postgres:// or mysql://)", ErrInvalidURL, scheme)
	}
}

// memoryTarget is a named in-memory database with a shared cache, one per
// Open, reached through a single connection so every caller sees it.
func memoryTarget(raw string, cfg config) target {
	name := fmt.Sprintf("turnkeep-mem-%d-%d", os.Getpid(), memCounter.Add(1))
	return target{
		driver:   SQLiteDriver,
		dsn:      "file:" + name + "?mode=memory&cache=shared" + sqlitePragmas(cfg, true),
		memory:   true,
		redacted: raw,
	}
}

// short cuts a URL for an error message.
func short(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "…"
}

// isScheme reports whether s is a URL scheme: a letter, then letters,
// digits, '+', '-' or '.'.
func isScheme(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// redactURL is u.Redacted with a password query parameter (which pgx
// accepts) masked too.
func redactURL(u *url.URL) string {
	c := *u
	if q := c.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		c.RawQuery = q.Encode()
	}
	return c.Redacted()
}

// sqlitePragmas are applied by modernc.org/sqlite to every new connection.
func sqlitePragmas(cfg config, memory bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "&_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", cfg.busyTimeout.Milliseconds())
	// Deleted means gone: SQLite overwrites what a delete frees (cells
	// and whole pages, overflow pages included) with zeros, so that erased
	// text leaves the file at the next checkpoint. It is a setting of the
	// connection, not of the file: every connection gets it here, the
	// checkpointer's too, and so does a file written by an earlier release.
	// ON, not FAST: FAST zeroes freed cells but leaves freed pages (the
	// freelist, where a deleted row's overflow pages and emptied pages go)
	// as they were.
	b.WriteString("&_pragma=secure_delete(1)")
	if !memory {
		sync := "NORMAL"
		if cfg.syncFull {
			sync = "FULL"
		}
		// journal_mode=WAL is set once, by Open (see ping): it persists in
		// the file, and setting it on every new connection can fail with
		// SQLITE_BUSY while another process opens the same file.
		b.WriteString("&_pragma=synchronous(" + sync + ")")
		if cfg.checkpointEvery > 0 {
			// The DB's checkpointer checkpoints, not COMMIT (see
			// checkpointer).
			b.WriteString("&_pragma=wal_autocheckpoint(0)")
		}
	}
	b.WriteString("&_txlock=immediate")
	return b.String()
}

// escapeSQLitePath makes a file path safe inside a file: URI.
func escapeSQLitePath(p string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return r.Replace(p)
}

// Open opens the database at url, pings it, and returns a DB ready for
// Register. See the package documentation for the URLs it accepts. A
// password in the URL never appears in an error or log line.
func Open(ctx context.Context, rawURL string, opts ...Option) (*DB, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	t, err := parseURL(rawURL, cfg)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(sql.Drivers(), t.driver) {
		hint := `import _ "modernc.org/sqlite"`
		if t.pg {
			hint = `import _ "github.com/jackc/pgx/v5/stdlib"`
		} else if t.mysql {
			hint = `import _ "github.com/go-sql-driver/mysql"`
		}
		return nil, fmt.Errorf("%w: %q (%s)", ErrDriverNotRegistered, t.driver, hint)
	}
	if t.path != "" {
		dir := filepath.Dir(t.path)
		switch fi, err := os.Stat(dir); {
		case err != nil:
			return nil, fmt.Errorf("open %s: directory %q does not exist: %w", t.redacted, dir, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("open %s: %q is not a directory", t.redacted, dir)
		}
	}
	sqldb, err := sql.Open(t.driver, t.dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", t.redacted, err)
	}
	switch {
	case t.memory:
		sqldb.SetMaxOpenConns(1)
		sqldb.SetMaxIdleConns(1)
		sqldb.SetConnMaxLifetime(0)
		sqldb.SetConnMaxIdleTime(0)
	case t.pg || t.mysql:
		sqldb.SetMaxOpenConns(cfg.maxOpenConns)
		sqldb.SetMaxIdleConns(cfg.maxOpenConns)
	default:
		sqldb.SetMaxIdleConns(8)
	}
	if err := ping(ctx, sqldb, t, cfg.busyTimeout); err != nil {
		sqldb.Close()
		return nil, err
	}
	if t.mysql {
		if changed, err := mysqlSession(ctx, sqldb, &t); err != nil {
			sqldb.Close()
			return nil, err
		} else if changed { // the settings are the pool's: every connection gets them
			sqldb.Close()
			if sqldb, err = sql.Open(t.driver, t.dsn); err != nil {
				return nil, fmt.Errorf("open %s: %w", t.redacted, err)
			}
			sqldb.SetMaxOpenConns(cfg.maxOpenConns)
			sqldb.SetMaxIdleConns(cfg.maxOpenConns)
		}
	}
	var bdb *bun.DB
	if t.pg {
		bdb = bun.NewDB(sqldb, pgdialect.New())
	} else if t.mysql {
		bdb = bun.NewDB(sqldb, mysqldialect.New())
	} else {
		bdb = bun.NewDB(sqldb, sqlitedialect.New())
	}
	db, err := newDB(bdb, cfg, true)
	if err != nil {
		sqldb.Close()
		return nil, err
	}
	if t.pg || t.mysql {
		db.maxIdle = cfg.maxOpenConns
	} else {
		db.txImmediate = true // sqlitePragmas sets _txlock=immediate
	}
	if t.path != "" {
		if db.file, err = statDBFile(t.path); err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s: %w", t.redacted, err)
		}
		if cfg.checkpointEvery > 0 {
			// A pool of its own: the checkpointer's connection, with its
			// own busy timeout, is never one the application's
			// transactions get, nor counted among them.
			ckdb, err := sql.Open(t.driver, t.dsn)
			if err != nil {
				db.Close()
				return nil, fmt.Errorf("open %s: %w", t.redacted, err)
			}
			ckdb.SetMaxOpenConns(1)
			db.ckpt = startCheckpointer(ckdb, db.file, cfg)
		}
	}
	return db, nil
}

// dbFile is the SQLite file Open opened, so that a write notices when the
// path no longer names it (see ErrDatabaseReplaced).
type dbFile struct {
	path string      // absolute: the process may change directory
	info os.FileInfo // from Open; os.SameFile compares device and inode
}

// statDBFile records the identity of the file at path.
func statDBFile(path string) (*dbFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	return &dbFile{path: abs, info: fi}, nil
}

// check returns an error wrapping ErrDatabaseReplaced unless the path still
// names the file Open opened. It costs one stat.
func (f *dbFile) check() error {
	fi, err := os.Stat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s no longer exists", ErrDatabaseReplaced, f.path)
	case err != nil:
		return fmt.Errorf("check database file: %w", err)
	case !os.SameFile(f.info, fi):
		return fmt.Errorf("%w: %s is another file now", ErrDatabaseReplaced, f.path)
	}
	return nil
}

// ping checks the connection. For SQLite files it also switches the file
// to WAL (retrying while another process holds the lock, up to the busy
// timeout) and proves it is writable, which a read-only file or directory
// would otherwise hide until the first write.
func ping(ctx context.Context, sqldb *sql.DB, t target, busyTimeout time.Duration) error {
	if err := sqldb.PingContext(ctx); err != nil {
		return fmt.Errorf("open %s: %w%s", t.redacted, redact(err, t), dirHint(t))
	}
	if t.path == "" {
		return nil
	}
	var mode string
	err := retryBusy(ctx, busyTimeout, func() error {
		return sqldb.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode)
	})
	if err != nil {
		return fmt.Errorf("open %s: set WAL: %w%s", t.redacted, err, dirHint(t))
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("open %s: cannot enable WAL (journal_mode is %q)%s", t.redacted, mode, dirHint(t))
	}
	if _, err := sqldb.ExecContext(ctx, "BEGIN IMMEDIATE; COMMIT"); err != nil {
		return fmt.Errorf("open %s: database is not writable: %w%s", t.redacted, err, dirHint(t))
	}
	return nil
}

// retryBusy runs fn until it does not fail with SQLITE_BUSY, for at most
// limit.
func retryBusy(ctx context.Context, limit time.Duration, fn func() error) error {
	deadline := time.Now().Add(limit)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := fn()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return withCtxErr(ctx, err)
		case <-time.After(wait):
		}
	}
}

func isBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked")
}

// dirHint explains a failure to open a SQLite file whose directory cannot
// be written (SQLite needs to create the file and its -wal and -shm files).
func dirHint(t target) string {
	if t.path == "" {
		return ""
	}
	dir := filepath.Dir(t.path)
	f, err := os.CreateTemp(dir, ".turnkeep-probe-*")
	if err != nil {
		return fmt.Sprintf(" (directory %q is not writable: %v)", dir, err)
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return ""
}

// redact removes the password from an error text, should a driver echo the
// connection string.
func redact(err error, t target) error {
	if t.mysql {
		if t.password == "" || !strings.Contains(err.Error(), t.password) {
			return err
		}
		return redactedError{msg: strings.ReplaceAll(err.Error(), t.password, "xxxxx"), err: err}
	}
	if !t.pg {
		return err
	}
	u, perr := url.Parse(t.dsn)
	if perr != nil {
		return err
	}
	msg := err.Error()
	pws := u.Query()["password"]
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			pws = append(pws, pw)
		}
	}
	for _, pw := range pws {
		if pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }

// Unwrap keeps errors.Is and errors.As working on the original error.
func (e redactedError) Unwrap() error { return e.err }
