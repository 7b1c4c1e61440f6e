package migrate

import (
	"context"
	"fmt"
	"strings"

	"github.com/uptrace/bun"
)

// Column is a column of a live table.
type Column struct {
	Name       string
	Type       string // as the database reports it
	NotNull    bool
	PK         bool
	HasDefault bool // a default, identity or generated value fills it when an insert leaves it out
}

// TableInfo is what Inspect found of a live table.
type TableInfo struct {
	Name    string
	Exists  bool
	Columns []Column
	Indexes []string // the index names, in name order
	// IndexDefs are the same indexes with their columns (in index order;
	// "" for an expression) and uniqueness. They include the indexes the
	// database made for primary keys and unique constraints.
	IndexDefs []Index
}

func (ti *TableInfo) column(name string) (Column, bool) {
	for _, c := range ti.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

func (ti *TableInfo) index(name string) (Index, bool) {
	for _, ix := range ti.IndexDefs {
		if ix.Name == name {
			return ix, true
		}
	}
	return Index{}, false
}

// Inspect reads a table's columns and indexes from the catalog (two
// queries). A missing table is not an error: Exists is false.
func (m *Migrator) Inspect(ctx context.Context, table string) (*TableInfo, error) {
	return m.inspect(ctx, m.db, table)
}

const (
	sqliteColumns = "SELECT name, type, `notnull`, pk, dflt_value IS NOT NULL FROM pragma_table_info(?) ORDER BY cid"
	sqliteIndexes = `SELECT il.name, il."unique" <> 0, COALESCE(ii.name, '')
FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii
ORDER BY il.name, ii.seqno`
	pgColumns = `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
	COALESCE((SELECT true FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY(i.indkey)), false),
	a.atthasdef OR a.attidentity <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = ? AND c.relkind IN ('r', 'p')
	AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`
	pgIndexes = `SELECT i.relname, x.indisunique, COALESCE(a.attname, '')
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum AND k.attnum > 0
WHERE n.nspname = current_schema() AND t.relname = ?
ORDER BY i.relname, k.ord`
)

func (m *Migrator) inspect(ctx context.Context, c bun.IConn, table string) (*TableInfo, error) {
	colsQuery, idxQuery := sqliteColumns, sqliteIndexes
	if m.d.MySQL {
		colsQuery, idxQuery = mysqlColumns, mysqlIndexes
	}
	if m.d.PG {
		colsQuery, idxQuery = pgColumns, pgIndexes
	}
	ti := &TableInfo{Name: table}
	rows, err := c.QueryContext(ctx, colsQuery, table)
	if err != nil {
		return nil, fmt.Errorf("inspect table %q: %w", table, err)
	}
	for rows.Next() {
		var col Column
		var pk int64
		if m.d.PG {
			err = rows.Scan(&col.Name, &col.Type, &col.NotNull, &col.PK, &col.HasDefault)
		} else {
			var notNull, hasDefault int64
			err = rows.Scan(&col.Name, &col.Type, &notNull, &pk, &hasDefault)
			col.NotNull, col.PK, col.HasDefault = notNull != 0, pk != 0, hasDefault != 0
		}
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("inspect table %q: %w", table, err)
		}
		ti.Columns = append(ti.Columns, col)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("inspect table %q: %w", table, err)
	}
	ti.Exists = len(ti.Columns) > 0
	if !ti.Exists {
		return ti, nil
	}
	rows, err = c.QueryContext(ctx, idxQuery, table)
	if err != nil {
		return nil, fmt.Errorf("inspect indexes of %q: %w", table, err)
	}
	for rows.Next() {
		var name, col string
		var unique bool
		if err := rows.Scan(&name, &unique, &col); err != nil {
			rows.Close()
			return nil, fmt.Errorf("inspect indexes of %q: %w", table, err)
		}
		if n := len(ti.IndexDefs); n == 0 || ti.IndexDefs[n-1].Name != name {
			ti.Indexes = append(ti.Indexes, name)
			ti.IndexDefs = append(ti.IndexDefs, Index{Name: name, Unique: unique})
		}
		last := &ti.IndexDefs[len(ti.IndexDefs)-1]
		last.Columns = append(last.Columns, col)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("inspect indexes of %q: %w", table, err)
	}
	return ti, nil
}

type rowsCloser interface {
	Err() error
	Close() error
}

func closeRows(rows rowsCloser) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// typeAliases maps the type names bun writes to the names the PostgreSQL
// catalog reports, so a model and a live table compare equal.
var typeAliases = map[string]string{
	"varchar":     "character varying",
	"char":        "character",
	"timestamptz": "timestamp with time zone",
	"timestamp":   "timestamp without time zone",
	"timetz":      "time with time zone",
	"time":        "time without time zone",
	"bigserial":   "bigint",
	"serial":      "integer",
	"smallserial": "smallint",
	"int":         "integer",
	"int8":        "bigint",
	"int4":        "integer",
	"int2":        "smallint",
	"bool":        "boolean",
	"float8":      "double precision",
	"float4":      "real",
	"decimal":     "numeric",
}

// normType reduces a type name to a comparable form: lower case, without
// length or precision modifiers, PostgreSQL aliases resolved.
func normType(pg bool, t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	if i := strings.IndexByte(t, '('); i >= 0 {
		j := strings.IndexByte(t, ')')
		if j > i {
			t = strings.TrimSpace(t[:i] + t[j+1:])
		}
	}
	if pg {
		if a, ok := typeAliases[t]; ok {
			return a
		}
	}
	return t
}
