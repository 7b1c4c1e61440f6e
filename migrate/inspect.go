package migrate

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
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

func (m *Migrator) inspect(ctx context.Context, c bun.IConn, table string) (*TableInfo, error) {
	colsQuery, idxQuery := m.d.Catalog().Columns, m.d.Catalog().Indexes
	ti := &TableInfo{Name: table}
	rows, err := c.QueryContext(ctx, colsQuery, table)
	if err != nil {
		return nil, fmt.Errorf("inspect table %q: %w", table, err)
	}
	for rows.Next() {
		var col Column
		var notNull, pk, hasDefault sqlcore.Flag
		err = rows.Scan(&col.Name, &col.Type, &notNull, &pk, &hasDefault)
		col.NotNull, col.PK, col.HasDefault = bool(notNull), bool(pk), bool(hasDefault)
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
		var unique sqlcore.Flag
		if err := rows.Scan(&name, &unique, &col); err != nil {
			rows.Close()
			return nil, fmt.Errorf("inspect indexes of %q: %w", table, err)
		}
		if n := len(ti.IndexDefs); n == 0 || ti.IndexDefs[n-1].Name != name {
			ti.Indexes = append(ti.Indexes, name)
			ti.IndexDefs = append(ti.IndexDefs, Index{Name: name, Unique: bool(unique)})
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
