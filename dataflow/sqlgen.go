package dataflow

import (
	"strings"
	"sync"

	"github.com/uptrace/bun/schema"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// statements holds the SQL a table's operations reuse. Single-row inserts
// are cached by the set of columns they leave to the database. Column
// names are quoted by sqlcore.Dialect.Quote (backquoted on SQLite, so that a
// column missing from the live table is "no such column", which the
// operations report as ErrSchemaMismatch, not a string literal). Table
// names keep bun's double quotes: they stand only where SQLite wants a
// table (FROM, INTO, UPDATE), and an unknown one is "no such table".
type statements struct {
	d          sqlcore.Dialect
	table      string            // quoted by bun
	idents     map[string]string // quoted column names, by SQL name
	selectCols string            // "a", "b", … (`a`, `b`, … on SQLite)
	readByPK   string
	updateByPK string
	deleteByPK string
	conflict   string   // " ON CONFLICT (pk) DO UPDATE SET …" or "" without a key
	inserts    sync.Map // omit mask (uint64) -> insertStmt
}

type insertStmt struct {
	sql       string
	fields    []*schema.Field // the bound columns, in order
	returning []*schema.Field // the columns left to the database, read back
}

func buildStatements(d sqlcore.Dialect, t *schema.Table) *statements {
	s := &statements{d: d, table: string(t.SQLName), idents: make(map[string]string, len(t.Fields))}
	names := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		names[i] = d.Quote(f.Name)
		s.idents[f.Name] = names[i]
	}
	s.selectCols = strings.Join(names, ", ")
	if len(t.PKs) == 0 {
		return s
	}
	n := 0
	pkWhere := func() string {
		conds := make([]string, len(t.PKs))
		for i, f := range t.PKs {
			n++
			conds[i] = s.ident(f) + " = " + d.Placeholder(n)
		}
		return " WHERE " + strings.Join(conds, " AND ")
	}
	s.readByPK = "SELECT " + s.selectCols + " FROM " + s.table + pkWhere()
	n = 0
	s.deleteByPK = "DELETE FROM " + s.table + pkWhere()
	n = 0
	sets := make([]string, 0, len(t.DataFields))
	data := make([]string, 0, len(t.DataFields))
	for _, f := range t.DataFields {
		n++
		sets = append(sets, s.ident(f)+" = "+d.Placeholder(n))
		data = append(data, s.ident(f))
	}
	if len(sets) > 0 {
		s.updateByPK = "UPDATE " + s.table + " SET " + strings.Join(sets, ", ") + pkWhere()
	}
	pks := make([]string, len(t.PKs))
	for i, f := range t.PKs {
		pks[i] = s.ident(f)
	}
	s.conflict = d.Upsert(pks, data)
	return s
}

// ident returns the quoted name of a column of the model.
func (s *statements) ident(f *schema.Field) string { return s.idents[f.Name] }

// insertFor returns the INSERT for the fields not in omit (a bit per field
// index), for rows rows, with an optional conflict clause.
func (s *statements) insertFor(t *schema.Table, omit uint64, rows int, upsert bool) insertStmt {
	cacheable := rows == 1 && len(t.Fields) <= 63
	key := omit << 1
	if upsert {
		key |= 1
	}
	if cacheable {
		if v, ok := s.inserts.Load(key); ok {
			return v.(insertStmt)
		}
	}
	var st insertStmt
	cols := make([]string, 0, len(t.Fields))
	for i, f := range t.Fields {
		if i < 64 && omit&(1<<i) != 0 {
			st.returning = append(st.returning, f)
			continue
		}
		st.fields = append(st.fields, f)
		cols = append(cols, s.ident(f))
	}
	var b strings.Builder
	switch {
	case len(cols) == 0 && rows == 1:
		// Every column is left to the database (a model that is only an
		// auto-increment key).
		b.WriteString("INSERT INTO " + s.table + s.d.DefaultRow())
	case len(cols) == 0: // PostgreSQL only: bulkInsert gives SQLite one row at a time
		defaults := make([]string, len(st.returning))
		for i, f := range st.returning {
			cols = append(cols, s.ident(f))
			defaults[i] = "DEFAULT"
		}
		row := "(" + strings.Join(defaults, ", ") + ")"
		b.WriteString("INSERT INTO " + s.table + " (" + strings.Join(cols, ", ") + ") VALUES " + row)
		b.WriteString(strings.Repeat(", "+row, rows-1))
	default:
		b.WriteString("INSERT INTO " + s.table + " (" + strings.Join(cols, ", ") + ") VALUES ")
		n := 0
		for r := 0; r < rows; r++ {
			if r > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for i := range st.fields {
				if i > 0 {
					b.WriteString(", ")
				}
				n++
				b.WriteString(s.d.Placeholder(n))
			}
			b.WriteByte(')')
		}
	}
	if upsert {
		b.WriteString(s.conflict)
	}
	if len(st.returning) > 0 {
		ret := make([]string, len(st.returning))
		for i, f := range st.returning {
			ret[i] = s.ident(f)
		}
		b.WriteString(" RETURNING " + strings.Join(ret, ", "))
	}
	st.sql = b.String()
	if cacheable {
		s.inserts.Store(key, st)
	}
	return st
}
