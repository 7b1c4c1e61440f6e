package dataflow

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun/schema"

	"github.com/turnkeep/turnkeep/internal/cache"
	"github.com/turnkeep/turnkeep/internal/optx"
	"github.com/turnkeep/turnkeep/migrate"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// tableState is shared by every Table handle of one registered model.
type tableState struct {
	name  string
	typ   reflect.Type
	st    *schema.Table
	model migrate.Model
	ens   cache.Ensurer
	cols  map[string]*schema.Field // by SQL name
	sql   *statements

	timeFields []*schema.Field // time.Time and *time.Time columns, read back in UTC

	// surveyed is what DB.Survey found of the table (surveyNone,
	// surveyCurrent, surveyStale), taken by the next ensure run.
	surveyed atomic.Int32
}

// utcTimes puts the time columns of a scanned row in UTC: drivers return
// them in the zone they like (pgx: time.Local), and a row read back should
// not depend on the dialect or the machine.
func (st *tableState) utcTimes(rv reflect.Value) {
	for _, f := range st.timeFields {
		fv := f.Value(rv)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		tm := fv.Interface().(time.Time)
		fv.Set(reflect.ValueOf(tm.UTC()))
	}
}

// Table runs typed operations on the table of model T. Get one from
// Register; it is safe for concurrent use. WithTx returns a copy bound to a
// transaction.
type Table[T any] struct {
	db *DB
	st *tableState
	q  querier // nil: the DB's pool
	tx *Tx
}

// Register declares T, a bun model struct, and returns its table handle. It
// does no I/O: the table is ensured lazily on first use (or by
// EnsureTable). Registering the same type again returns a handle on the
// same state; registering another type under a taken table name, or the
// same type with other indexes, is an error.
func Register[T any](db *DB, opts ...ModelOption) (*Table[T], error) {
	if db == nil {
		return nil, fmt.Errorf("%w: db must not be nil", ErrInvalidArgument)
	}
	if err := db.usable(); err != nil {
		return nil, err
	}
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %s is not a struct", ErrInvalidModel, typ)
	}
	var mc modelConfig
	if err := optx.Apply(&mc, opts); err != nil {
		return nil, err
	}
	st, err := newTableState(db, typ, mc)
	if err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if old, ok := db.tables[st.name]; ok {
		if old.typ != typ {
			return nil, fmt.Errorf("%w: table %q is already registered for %s", ErrInvalidModel, st.name, old.typ)
		}
		if !sameIndexes(old.model.Indexes, st.model.Indexes) || old.model.WithoutRowID != st.model.WithoutRowID {
			return nil, fmt.Errorf("%w: table %q is already registered with other indexes", ErrInvalidModel, st.name)
		}
		st = old
	} else {
		db.tables[st.name] = st
		db.tablesGen++
		db.allReady.Store(false)
	}
	return &Table[T]{db: db, st: st}, nil
}

func newTableState(db *DB, typ reflect.Type, mc modelConfig) (*tableState, error) {
	t, err := db.models.Table(db.bun, typ)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	st := &tableState{
		name:  t.Name,
		typ:   typ,
		st:    t,
		model: migrate.Model{Value: t.ZeroIface, Indexes: mc.indexes, WithoutRowID: mc.withoutRowID, Dropped: mc.dropped},
		cols:  make(map[string]*schema.Field, len(t.Fields)),
	}
	for _, f := range t.Fields {
		st.cols[f.Name] = f
		if f.IndirectType == timeType {
			st.timeFields = append(st.timeFields, f)
		}
	}
	if mc.withoutRowID && len(t.PKs) == 0 {
		return nil, fmt.Errorf("%w: %s: WithoutRowID needs a primary key", ErrInvalidModel, typ)
	}
	for _, ix := range mc.indexes {
		for _, c := range ix.Columns {
			if _, ok := st.cols[c]; !ok {
				return nil, fmt.Errorf("%w: index %s: %q", ErrUnknownColumn, ix.Name, c)
			}
		}
	}
	st.ens.Timeout = db.cfg.ensureTimeout
	st.ens.MinBackoff = db.cfg.minBackoff
	st.ens.MaxBackoff = db.cfg.maxBackoff
	st.sql = buildStatements(db.d, t)
	return st, nil
}

func sameIndexes(a, b []migrate.Index) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Unique != b[i].Unique ||
			strings.Join(a[i].Columns, ",") != strings.Join(b[i].Columns, ",") {
			return false
		}
	}
	return true
}

// errNotOpen is what the methods of a nil or zero DB, Table or Tx return:
// ErrClosed, as such a value has no database either.
var errNotOpen = fmt.Errorf("%w (never opened: use Open or New, and Register)", ErrClosed)

// usable returns nil for an open DB, ErrClosed after Close, and errNotOpen
// (which is ErrClosed too) for a nil or zero DB.
func (db *DB) usable() error {
	switch {
	case db == nil || db.sql == nil || db.bun == nil:
		return errNotOpen
	case db.closed.Load():
		return ErrClosed
	}
	return nil
}

// usable is DB.usable for the table's DB, and errNotOpen for a nil or zero
// Table.
func (t *Table[T]) usable() error {
	if t == nil || t.st == nil {
		return errNotOpen
	}
	return t.db.usable()
}

// Name returns the table's SQL name (unquoted); "" for a zero Table.
func (t *Table[T]) Name() string {
	if t == nil || t.st == nil {
		return ""
	}
	return t.st.name
}

// Columns returns the model's SQL column names in declaration order; nil
// for a zero Table.
func (t *Table[T]) Columns() []string {
	if t == nil || t.st == nil {
		return nil
	}
	out := make([]string, len(t.st.st.Fields))
	for i, f := range t.st.st.Fields {
		out[i] = f.Name
	}
	return out
}

// DB returns the database the table belongs to; nil for a zero Table.
func (t *Table[T]) DB() *DB {
	if t == nil {
		return nil
	}
	return t.db
}

// WithTx returns a handle that runs operations in tx. Tables registered
// before RunInTx are already ready inside it. On a nil Table it returns
// nil, whose operations return ErrClosed.
func (t *Table[T]) WithTx(tx *Tx) *Table[T] {
	if t == nil {
		return nil
	}
	c := *t
	if tx != nil {
		c.q, c.tx = tx.q, tx
	}
	return &c
}

func (t *Table[T]) querier() querier {
	if t.q != nil {
		return t.q
	}
	return t.db.sql
}

// EnsureTable makes the table ready now: it checks it and, with
// auto-migration, creates or migrates it. It is the explicit form of what
// every operation does on first use; after success it costs an atomic load.
// It checks even under WithSkipTableChecks, and does nothing under
// WithExistingSchemaMode.
func (t *Table[T]) EnsureTable(ctx context.Context) error {
	if err := t.usable(); err != nil {
		return err
	}
	if t.st.ens.Ready() || t.db.cfg.existingSchema {
		return nil
	}
	return t.db.run(ctx, t.st)
}

// Ready returns nil once the table is ready for use, ensuring it on first
// use exactly as every operation does. Call it before running raw
// statements on the table through DB.ExecContext or DB.QueryContext.
func (t *Table[T]) Ready(ctx context.Context) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.db.ready(ctx, t.st)
}

// ready is the check every operation makes: the fast path is one atomic
// load (plus a counter).
func (db *DB) ready(ctx context.Context, st *tableState) error {
	if st.ens.Ready() {
		db.stats.fastHits.Add(1)
		return nil
	}
	db.stats.slowCalls.Add(1)
	if db.cfg.existingSchema {
		st.ens.MarkReady()
		return nil
	}
	if db.cfg.skipChecks {
		// Taken as ready but not marked so: EnsureTable still checks.
		return nil
	}
	return db.run(ctx, st)
}

// ensureConnRetries bounds how often a first-use run is repeated after
// meeting a dead connection: more than a statement's retries, since a run
// is several statements, each of which may meet one while a server
// terminates connections.
const ensureConnRetries = 10

// run ensures the table through the shared, deduplicated, backed-off run.
func (db *DB) run(ctx context.Context, st *tableState) error {
	err := st.ens.Ensure(ctx, func(ctx context.Context) (err error) {
		db.stats.runs.Add(1)
		ctx, run := db.startEnsure(ctx, st.name)
		migrated := false
		defer func() { db.endEnsure(ctx, run, st.name, migrated, err) }()
		migrated, err = db.ensureOnce(ctx, st)
		// A pooled connection found dead (the server restarted or
		// terminated it) failed the run without doing anything wrong: run
		// again on another, as BEGIN and reads do. A run is safe to repeat:
		// it checks again, and migrates under the cross-process lock.
		for attempt := 0; err != nil && attempt < ensureConnRetries && ctx.Err() == nil && sqlcore.ConnLost(err); attempt++ {
			db.retried(ctx, "ensure "+st.name, attempt+1, err)
			migrated, err = db.ensureOnce(ctx, st)
		}
		if err != nil {
			db.stats.failures.Add(1)
		}
		return err
	})
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return err // this caller gave up; the run itself may still succeed
	}
	return fmt.Errorf("%w: table %q: %w", ErrEnsureFailed, st.name, inner{err})
}

// ensureOnce checks the table and, with auto-migration, migrates it,
// reporting whether it executed DDL.
func (db *DB) ensureOnce(ctx context.Context, st *tableState) (bool, error) {
	if !db.cfg.autoMigrate {
		plan, err := db.mig.Plan(ctx, st.model)
		if err != nil {
			return false, err
		}
		if !plan.Exists {
			return false, ErrTableMissing
		}
		var missing []string
		for _, s := range plan.Additive() {
			if s.Kind == migrate.AddColumn {
				missing = append(missing, s.Name)
			}
		}
		if len(missing) > 0 {
			return false, fmt.Errorf("%w: missing columns %s", ErrSchemaMismatch, strings.Join(missing, ", "))
		}
		if d := breaking(plan.Steps); d != "" {
			return false, fmt.Errorf("%w: %s", ErrSchemaMismatch, d)
		}
		return false, nil
	}
	var res *migrate.Result
	var err error
	switch st.surveyed.Swap(surveyNone) {
	case surveyCurrent: // a survey just checked it
		return false, nil
	case surveyStale: // a survey found it missing or changed: migrate
		res, err = db.mig.Apply(ctx, st.model, db.cfg.force)
	default:
		res, err = db.mig.Ensure(ctx, st.model, db.cfg.force)
	}
	if errors.Is(err, migrate.ErrDestructive) {
		return false, fmt.Errorf("%w: %w", ErrDestructiveChange, err) // forced, but the dialect cannot
	}
	if err != nil {
		return false, err
	}
	migrated := len(res.Applied) > 0
	if migrated {
		db.stats.migrations.Add(1)
	}
	if d := breaking(res.Skipped); d != "" {
		return migrated, fmt.Errorf("%w: %s", ErrDestructiveChange, d)
	}
	return migrated, nil
}

// breaking describes the steps that break the model's statements (see
// migrate.Step.Breaks), or returns "" if there are none. Steps that do not
// break the model, such as dropping an extra nullable column, pass: the
// migrator logs them when it skips them.
func breaking(steps []migrate.Step) string {
	var d []string
	for _, s := range steps {
		if !s.Breaks {
			continue
		}
		hint := "WithForceDestructive applies it"
		if s.SQL == "" {
			hint = "not supported on this dialect"
		}
		d = append(d, fmt.Sprintf("%s %s (%s; %s)", s.Kind, s.Name, s.Note, hint))
	}
	return strings.Join(d, "; ")
}
