package sqlcore

import (
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// SQLiteTimeLayout is the fixed-width UTC text form times take on SQLite,
// so that text order is time order.
const SQLiteTimeLayout = "2006-01-02 15:04:05.000000000+00:00"

// Dialect is SQLite (the zero value), PostgreSQL or the MySQL family
// (MariaDB, Galera, MySQL; see dialect_mysql.go).
type Dialect struct {
	PG    bool
	MySQL bool
}

// Detect returns the dialect of db, and false for one that is neither
// SQLite, PostgreSQL nor MySQL.
func Detect(db *bun.DB) (Dialect, bool) {
	switch db.Dialect().Name() {
	case dialect.SQLite:
		return Dialect{}, true
	case dialect.PG:
		return Dialect{PG: true}, true
	case dialect.MySQL:
		return Dialect{MySQL: true}, true
	}
	return Dialect{}, false
}

// Name returns "pg", "mysql" or "sqlite", bun's names.
func (d Dialect) Name() string {
	if d.MySQL {
		return dialect.MySQL.String()
	}
	if d.PG {
		return dialect.PG.String()
	}
	return dialect.SQLite.String()
}

// Quote quotes an identifier: "name" on PostgreSQL, `name` on SQLite and
// MySQL.
//
// SQLite reads a double-quoted identifier that names no column as a string
// literal (the "DQS" misfeature, on in the default build): a column missing
// from the live table would select, compare, order and index as its own
// name. A backquoted identifier is never a literal: an unknown one is the
// error "no such column".
func (d Dialect) Quote(name string) string {
	if d.PG {
		return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	}
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// Placeholder returns the n-th (from 1) bound parameter: $n or ?.
func (d Dialect) Placeholder(n int) string {
	if d.PG {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// WritePlaceholder writes Placeholder(n) to b without allocating.
func (d Dialect) WritePlaceholder(b *strings.Builder, n int) {
	if d.PG {
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
		return
	}
	b.WriteByte('?')
}

// Rebind rewrites ? placeholders into the dialect's form ($1, $2, … on
// PostgreSQL). ? inside quoted strings and identifiers is left alone.
func (d Dialect) Rebind(query string) string {
	if !d.PG {
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

// BindTime returns the bound parameter for t: t in UTC on PostgreSQL and
// MySQL (where DATETIME(6) keeps microseconds), UTC text in
// SQLiteTimeLayout on SQLite.
func (d Dialect) BindTime(t time.Time) any {
	if d.PG || d.MySQL {
		return t.UTC()
	}
	return FormatSQLiteTime(t)
}
