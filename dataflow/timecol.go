package dataflow

import (
	"fmt"
	"time"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// SQLiteTimeLayout is the form every time takes on SQLite when dataflow
// binds it: UTC, fixed width, with nanoseconds, so that text order is time
// order. A Time reads it with exactly this layout.
const SQLiteTimeLayout = "2006-01-02 15:04:05.000000000+00:00" // spelt out for the docs; a test checks it is sqlcore's

// TimeColumn returns an expression that selects the time column expr as
// dataflow stored it, for scanning into a Time: on SQLite the stored text
// itself, so that the driver does not try format after format on every row
// (modernc guesses the format of a column declared as a time, starting with
// one that always fails); on PostgreSQL and MySQL expr itself.
func (db *DB) TimeColumn(expr string) string {
	if db == nil || !db.d.TimeAsText() {
		return expr
	}
	return "CAST(" + expr + " AS TEXT)"
}

// A Time scans a time column selected with DB.TimeColumn, or any column a
// driver returns as a time.Time. The result is in UTC. NULL is the zero
// time.
type Time struct{ time.Time }

// Scan implements sql.Scanner.
func (t *Time) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		t.Time = time.Time{}
	case time.Time:
		t.Time = x.UTC()
	case string:
		return t.parse(x)
	case []byte:
		return t.parse(string(x))
	default:
		return fmt.Errorf("dataflow: scan %T into a time", v)
	}
	return nil
}

// parse reads the stored layout, and only if that fails (text written by
// another program) the other layouts SQLite's date functions know.
func (t *Time) parse(s string) error {
	if p, ok := sqlcore.ParseSQLiteTime(s); ok {
		t.Time = p
		return nil
	}
	p, err := time.Parse(SQLiteTimeLayout, s)
	for i := 0; err != nil && i < len(otherTimeLayouts); i++ {
		p, err = time.Parse(otherTimeLayouts[i], s)
	}
	if err != nil {
		return fmt.Errorf("dataflow: time %q is not in the stored layout %s", s, SQLiteTimeLayout)
	}
	t.Time = p.UTC()
	return nil
}

var otherTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02",
}
