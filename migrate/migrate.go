package migrate

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/turnkeep/turnkeep/internal/optx"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// DefaultHistoryTable is the name of the table that records migrations.
const DefaultHistoryTable = "turnkeep_migrations"

var (
	// ErrUnsupportedDialect is returned by New for a database that is
	// neither SQLite, PostgreSQL nor MySQL.
	ErrUnsupportedDialect = errors.New("migrate: unsupported dialect")
	// ErrInvalidModel is returned when a Model is not a bun model struct or
	// names an index column the model does not have.
	ErrInvalidModel = errors.New("migrate: invalid model")
	// ErrDestructive is returned by Apply when a forced destructive step
	// cannot be carried out on this dialect.
	ErrDestructive = errors.New("migrate: destructive change not supported")
	// ErrTableMissing is returned by RunUpgrade under
	// UpgradeOptions.NoDDL on the MySQL family when the migration lock's
	// lease table (turnkeep_locks) does not exist: the lock is a row of it,
	// and NoDDL does not create it (a run that may change the schema, such
	// as `turnkeep migrate up`, does). It is the same value as
	// dataflow.ErrTableMissing.
	ErrTableMissing = sqlcore.ErrTableMissing
	// ErrInvalidOption is returned by New for a nil db, a nil option or one
	// with an invalid value. It is the same value as every turnkeep
	// package's ErrInvalidOption.
	ErrInvalidOption = optx.ErrInvalidOption
)

// Index describes an index the table should have.
type Index struct {
	Name    string
	Columns []string // SQL column names
	Unique  bool
	// Where, when not empty, makes a partial index of the rows it holds
	// true for (a condition on the table's columns, no parameters), where
	// the engine has partial indexes (SQLite, PostgreSQL); elsewhere the
	// index holds every row. A write whose row fails it writes no entry.
	Where string
}

// Model is a bun model plus the indexes its table should have.
type Model struct {
	Value   any // a pointer to the model struct, e.g. (*User)(nil)
	Indexes []Index

	// WithoutRowID makes SQLite store the rows in primary-key order
	// (CREATE TABLE … WITHOUT ROWID), so a range of the key is read from
	// adjacent pages; it needs a primary key, and suits rows of modest
	// size. PostgreSQL ignores it. It applies when the table is created.
	WithoutRowID bool

	// Dropped names indexes the model no longer has: a plan drops one
	// the table still holds (an index holds no data of its own, so the
	// step is not destructive), see plan_dropped.go.
	Dropped []string
}

// Option configures a Migrator.
type Option func(*Migrator) error

// WithHistoryTable names the history table (default DefaultHistoryTable).
func WithHistoryTable(name string) Option {
	return func(m *Migrator) error {
		if name == "" {
			return fmt.Errorf("%w: empty history table name", ErrInvalidModel)
		}
		m.history = name
		return nil
	}
}

// WithLogger sets the logger for applied migrations and skipped
// destructive changes (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(m *Migrator) error {
		if l != nil {
			m.log = l
		}
		return nil
	}
}

// Migrator plans and applies migrations on one database.
type Migrator struct {
	db      *bun.DB
	d       sqlcore.Dialect
	history string
	log     *slog.Logger
	models  sqlcore.Models // the bun tables of models, and the ones bun could not build
	ddl     *ddl           // the engine's own DDL
	// collation is the exact collation of MySQL tables (a string), found
	// before the first plan; see mysqlCollation.
	collation atomic.Value
}

// New returns a Migrator for db, which must use the SQLite, PostgreSQL or
// MySQL dialect.
func New(db *bun.DB, opts ...Option) (*Migrator, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: db must not be nil", ErrInvalidOption)
	}
	d, ok := sqlcore.Detect(db)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedDialect, db.Dialect().Name())
	}
	m := &Migrator{db: db, d: d, ddl: engineDDL(d.Name()), history: DefaultHistoryTable, log: slog.New(slog.DiscardHandler)}
	if err := optx.Apply(m, opts); err != nil {
		return nil, err
	}
	return m, nil
}

// HistoryTable returns the name of the history table.
func (m *Migrator) HistoryTable() string { return m.history }

// table resolves the bun schema of a model and checks its indexes.
func (m *Migrator) table(model Model) (*schema.Table, error) {
	typ := reflect.TypeOf(model.Value)
	for typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ == nil || typ.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %T is not a pointer to a struct", ErrInvalidModel, model.Value)
	}
	t, err := m.models.Table(m.db, typ)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	if model.WithoutRowID && len(t.PKs) == 0 {
		return nil, fmt.Errorf("%w: %s: WITHOUT ROWID needs a primary key", ErrInvalidModel, typ)
	}
	for _, idx := range model.Indexes {
		if idx.Name == "" || len(idx.Columns) == 0 {
			return nil, fmt.Errorf("%w: index on %s needs a name and columns", ErrInvalidModel, t.Name)
		}
		for _, c := range idx.Columns {
			if !sqlcore.HasColumn(t, c) {
				return nil, fmt.Errorf("%w: index %s: table %s has no column %q", ErrInvalidModel, idx.Name, t.Name, c)
			}
		}
	}
	return t, nil
}

// ident quotes an identifier (see sqlcore.Dialect.Quote).
func (m *Migrator) ident(name string) string { return m.d.Quote(name) }
