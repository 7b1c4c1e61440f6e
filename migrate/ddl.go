package migrate

import (
	"context"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"
)

// ddl is an engine's own DDL, where bun's CREATE TABLE and the shared
// forms do not fit. An engine's file registers one from init
// (migrate/mysql.go); a nil field takes the shared form, and an engine that
// registers none takes them all (SQLite, PostgreSQL). Shared code asks
// these instead of comparing dialect names.
type ddl struct {
	// setup runs on c before a plan is made (MySQL finds its exact
	// collation, once per Migrator).
	setup func(ctx context.Context, m *Migrator, c bun.IConn) error
	// modelType is the type of f's column on the engine.
	modelType func(f *schema.Field) string
	// createTable is the CREATE TABLE of t.
	createTable func(m *Migrator, t *schema.Table) string
	// addColumn is the ADD COLUMN of f to t.
	addColumn func(m *Migrator, t *schema.Table, f *schema.Field) string
	// modify is the statement that gives column f of t its model type and
	// definition in place: it changes a type, and widens a varchar.
	modify func(m *Migrator, t *schema.Table, f *schema.Field) string
	// history is the statements that create the history table.
	history func(m *Migrator) []string
	// dropIndexOn is true where DROP INDEX names its table (… ON t).
	dropIndexOn bool
	// noIndexIfNotExists is true where CREATE INDEX has no IF NOT EXISTS
	// (MySQL 8); the plan creates only the indexes inspect did not find.
	noIndexIfNotExists bool
	// noPartialIndex is true where an index cannot have a WHERE clause
	// (MySQL): a partial index (Index.Where) is then made whole.
	noPartialIndex bool
}

// ddls are the registered engines' DDL, by bun's dialect name.
var ddls = map[string]*ddl{}

// registerDDL makes d the DDL of dialect's databases.
func registerDDL(dialect string, d *ddl) {
	if _, dup := ddls[dialect]; dup {
		panic("migrate: DDL of " + dialect + " registered twice")
	}
	ddls[dialect] = d
}

// engineDDL returns the DDL registered for dialect, or the shared forms.
func engineDDL(dialect string) *ddl {
	if d, ok := ddls[dialect]; ok {
		return d
	}
	return &ddl{}
}

// setup runs the engine's setup, if it has one.
func (m *Migrator) setup(ctx context.Context, c bun.IConn) error {
	if m.ddl.setup == nil {
		return nil
	}
	return m.ddl.setup(ctx, m, c)
}

// modelType is the type the model's field f has on the dialect.
func (m *Migrator) modelType(f *schema.Field) string {
	if m.ddl.modelType != nil {
		return m.ddl.modelType(f)
	}
	return f.CreateTableSQLType
}
