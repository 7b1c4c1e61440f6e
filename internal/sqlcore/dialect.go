package sqlcore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// SQLiteTimeLayout is the fixed-width UTC text form times take on SQLite,
// so that text order is time order.
const SQLiteTimeLayout = "2006-01-02 15:04:05.000000000+00:00"

// Dialect is one database engine as turnkeep's SQL packages see it: its
// SQL forms and the features they ask it for, never its name (bun's
// shape). Each engine is described in a file of its own (sqlite.go,
// postgres.go) and registered there; adding an engine means adding its
// file. The zero value is SQLite.
type Dialect struct{ e *engine }

// engine describes an engine: what differs between engines, as data and
// small functions, so that shared code asks instead of comparing names.
type engine struct {
	name     string // bun's dialect name
	system   string // OpenTelemetry's db.system.name
	product  string // the engine's name in messages
	quote    byte   // identifier quote
	numbered bool   // placeholders are $1, $2, … rather than ?

	timeAsText        bool   // times are stored as SQLiteTimeLayout text
	prepare           bool   // statements are prepared once per connection by the caller (the driver caches none)
	immediateTx       bool   // a write transaction must take the write lock at BEGIN (BEGIN IMMEDIATE)
	arrays            bool   // bun's "array" tag binds a native array
	unboundedLimit    string // a LIMIT of every row, where OFFSET needs a LIMIT before it ("" where it does not)
	defaultValuesOnly bool   // a row of only defaults is inserted alone (DEFAULT VALUES), not in a batch
	withoutRowID      bool   // tables can be WITHOUT ROWID
	varcharLength     bool   // varchar(n) is enforced, so a shorter live column must be widened

	likeEscape string // the ESCAPE clause that makes a backslash a LIKE pattern's escape
	defaultRow string // what follows INSERT INTO t for a row of only defaults

	typeAliases map[string]string // type names as a model writes them -> as the catalog reports them
	historyID   string            // the history table's id column
	timestamp   string            // the history table's time type
	catalog     Catalog

	// alterType returns the statement that changes the type of column
	// col of table to typ in place, or "" when the engine cannot.
	alterType func(table, col, typ string) string
	// upsert is Dialect.Upsert; nil is ON CONFLICT (SQLite, PostgreSQL).
	upsert func(keys, data []string) string
	// locked is Dialect.Locked and, with ddl false, Dialect.LockedNoDDL.
	locked func(ctx context.Context, db *bun.DB, key string, ddl bool, fn func(bun.IConn) error) error
}

// Catalog holds the statements that read an engine's catalog.
type Catalog struct {
	// Tables selects the names of the current schema's tables among the
	// list of names bound to its one parameter (bun.List).
	Tables string
	// Columns selects, for the table named by its parameter, each
	// column's name, type, whether it is NOT NULL, part of the primary
	// key, and filled by a default; the last three scan into a Flag.
	Columns string
	// Indexes selects, for the table named by its parameter, each
	// index's name, uniqueness (a Flag) and column ("" for an
	// expression), in index then column order.
	Indexes string
}

// engines are the registered engines by bun's dialect name.
var engines = map[string]*engine{}

// register makes e known to Detect; an engine's file calls it from init.
func register(e *engine) {
	if _, dup := engines[e.name]; dup {
		panic("sqlcore: engine " + e.name + " registered twice")
	}
	engines[e.name] = e
}

// Detect returns the dialect of db, and false for an engine none of the
// registered ones describes.
func Detect(db *bun.DB) (Dialect, bool) {
	e, ok := engines[db.Dialect().Name().String()]
	if !ok {
		return Dialect{}, false
	}
	return Dialect{e}, true
}

func (d Dialect) eng() *engine {
	if d.e == nil {
		return &sqliteEngine
	}
	return d.e
}

// Name returns bun's name of the engine ("sqlite", "pg"), for messages
// and checksums; code asks the feature methods instead of comparing it.
func (d Dialect) Name() string { return d.eng().name }

// System returns the engine's OpenTelemetry db.system.name.
func (d Dialect) System() string { return d.eng().system }

// Product returns the engine's name for messages: "SQLite", "PostgreSQL".
func (d Dialect) Product() string { return d.eng().product }

// Quote quotes an identifier: "name" on PostgreSQL, `name` on SQLite.
//
// SQLite reads a double-quoted identifier that names no column as a string
// literal (the "DQS" misfeature, on in the default build): a column missing
// from the live table would select, compare, order and index as its own
// name. A backquoted identifier is never a literal: an unknown one is the
// error "no such column".
func (d Dialect) Quote(name string) string {
	q := string(d.eng().quote)
	return q + strings.ReplaceAll(name, q, q+q) + q
}

// Placeholder returns the n-th (from 1) bound parameter: $n or ?.
func (d Dialect) Placeholder(n int) string {
	if d.eng().numbered {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// WritePlaceholder writes Placeholder(n) to b without allocating.
func (d Dialect) WritePlaceholder(b *strings.Builder, n int) {
	if d.eng().numbered {
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
		return
	}
	b.WriteByte('?')
}

// Rebind rewrites ? placeholders into the dialect's form ($1, $2, … on
// PostgreSQL). ? inside quoted strings and identifiers is left alone.
func (d Dialect) Rebind(query string) string {
	if !d.eng().numbered {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			d.WritePlaceholder(&b, n)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// BindTime returns the bound parameter for t: t in UTC, or UTC text in
// SQLiteTimeLayout where times are stored as text (TimeAsText).
func (d Dialect) BindTime(t time.Time) any {
	if !d.eng().timeAsText {
		return t.UTC()
	}
	return FormatSQLiteTime(t)
}

// TimeAsText reports whether times are stored as SQLiteTimeLayout text, to
// be selected as text and parsed (SQLite), rather than as a time type.
func (d Dialect) TimeAsText() bool { return d.eng().timeAsText }

// PrepareStatements reports whether the caller should prepare statements
// once per connection itself (SQLite's driver caches none; pgx does).
func (d Dialect) PrepareStatements() bool { return d.eng().prepare }

// ImmediateTx reports whether a write transaction must take the write
// lock when it begins (SQLite's BEGIN IMMEDIATE on a connection of its
// own; see BeginImmediate) rather than use database/sql's BeginTx.
func (d Dialect) ImmediateTx() bool { return d.eng().immediateTx }

// NativeArrays reports whether a field tagged "array" binds as a native
// array.
func (d Dialect) NativeArrays() bool { return d.eng().arrays }

// UnboundedLimit returns the LIMIT clause that selects every row, for an
// OFFSET without a limit where the engine needs a LIMIT before OFFSET
// (" LIMIT -1" on SQLite), and "" where it does not.
func (d Dialect) UnboundedLimit() string { return d.eng().unboundedLimit }

// LikeEscape returns the ESCAPE clause that makes a backslash the escape
// character of a LIKE pattern, as a string literal of the engine reads it.
func (d Dialect) LikeEscape() string {
	if e := d.eng().likeEscape; e != "" {
		return e
	}
	return ` ESCAPE '\'`
}

// DefaultRow returns what follows "INSERT INTO table" to insert one row
// whose every column takes its default.
func (d Dialect) DefaultRow() string {
	if r := d.eng().defaultRow; r != "" {
		return r
	}
	return " DEFAULT VALUES"
}

// Upsert returns the clause that follows an INSERT's VALUES so that a row
// whose key is taken updates the data columns to the inserted values (or,
// with none, keeps the row): keys and data are quoted column names.
func (d Dialect) Upsert(keys, data []string) string {
	if f := d.eng().upsert; f != nil {
		return f(keys, data)
	}
	var b strings.Builder
	b.WriteString(" ON CONFLICT (" + strings.Join(keys, ", ") + ")")
	if len(data) == 0 {
		b.WriteString(" DO NOTHING")
		return b.String()
	}
	b.WriteString(" DO UPDATE SET ")
	for i, c := range data {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c + " = EXCLUDED." + c)
	}
	return b.String()
}

// DefaultValuesOnly reports whether a row of only default values is
// inserted alone (INSERT ... DEFAULT VALUES) rather than in a batch.
func (d Dialect) DefaultValuesOnly() bool { return d.eng().defaultValuesOnly }

// WithoutRowID reports whether a table can be WITHOUT ROWID (clustered by
// its primary key).
func (d Dialect) WithoutRowID() bool { return d.eng().withoutRowID }

// EnforcesVarcharLength reports whether varchar(n) is enforced, so that a
// live column shorter than the model's must be widened.
func (d Dialect) EnforcesVarcharLength() bool { return d.eng().varcharLength }

// NormType reduces a type name to a comparable form: lower case, without
// length or precision modifiers, the engine's aliases resolved.
func (d Dialect) NormType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	if i := strings.IndexByte(t, '('); i >= 0 {
		j := strings.IndexByte(t, ')')
		if j > i {
			t = strings.TrimSpace(t[:i] + t[j+1:])
		}
	}
	if a, ok := d.eng().typeAliases[t]; ok {
		return a
	}
	return t
}

// AlterType returns the statement that changes the type of column col of
// table (both quoted) to typ in place, and false when the engine cannot.
func (d Dialect) AlterType(table, col, typ string) (string, bool) {
	if d.eng().alterType == nil {
		return "", false
	}
	return d.eng().alterType(table, col, typ), true
}

// HistoryColumns returns the types of a history table's generated id
// column (with its key) and of its times.
func (d Dialect) HistoryColumns() (id, timestamp string) { return d.eng().historyID, d.eng().timestamp }

// Catalog returns the statements that read the engine's catalog.
func (d Dialect) Catalog() Catalog { return d.eng().catalog }

// Locked runs fn in a transaction on db that holds the cross-process lock
// named key: a transaction-scoped advisory lock on PostgreSQL (per key and
// current schema), the write lock of BEGIN IMMEDIATE on SQLite. It commits
// if fn returns nil and rolls back otherwise, also when fn panics.
//
// On the MySQL family it is a lease, a row of LockTable, and fn runs on a
// connection of its own outside any transaction (see lockedMySQL); the
// table is made on first use.
func (d Dialect) Locked(ctx context.Context, db *bun.DB, key string, fn func(bun.IConn) error) error {
	return d.eng().locked(ctx, db, key, true, fn)
}

// LockedNoDDL is Locked for a client that may not change the schema: it
// never makes LockTable, and where that table is missing (the MySQL
// family) it returns an error wrapping ErrTableMissing that names it, and
// fn does not run.
func (d Dialect) LockedNoDDL(ctx context.Context, db *bun.DB, key string, fn func(bun.IConn) error) error {
	return d.eng().locked(ctx, db, key, false, fn)
}

// ErrTableMissing is the error value of a table that does not exist where
// the caller may not create it: dataflow and migrate each export it under
// that name.
var ErrTableMissing = errors.New("turnkeep: table missing")

// Flag scans a catalog's yes-or-no column, which one engine reports as a
// boolean and another as a number (non-zero is true).
type Flag bool

// Scan implements sql.Scanner.
func (f *Flag) Scan(v any) error {
	switch v := v.(type) {
	case bool:
		*f = Flag(v)
	case int64:
		*f = v != 0
	case nil:
		*f = false
	case []byte:
		*f = Flag(flagText(string(v)))
	case string:
		*f = Flag(flagText(v))
	default:
		return fmt.Errorf("flag: unsupported %T", v)
	}
	return nil
}

func flagText(s string) bool {
	switch strings.ToLower(s) {
	case "", "0", "f", "false":
		return false
	}
	return true
}
