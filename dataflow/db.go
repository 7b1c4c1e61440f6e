package dataflow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
	"go.opentelemetry.io/otel/attribute"

	"github.com/turnkeep/turnkeep/internal/otelx"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
	"github.com/turnkeep/turnkeep/migrate"
)

// DB is a database with registered models. It is safe for concurrent use.
type DB struct {
	bun     *bun.DB // carries the configured query hooks
	sql     *sql.DB
	d       sqlcore.Dialect
	cfg     config
	mig     *migrate.Migrator
	ownsDB  bool
	maxIdle int     // the idle pool size Open set on PostgreSQL, bounding retries; 0 otherwise
	file    *dbFile // the SQLite file Open opened; nil for memory and for New
	// txImmediate: the SQLite driver begins transactions with BEGIN
	// IMMEDIATE, as Open's connection string tells it; false for New.
	txImmediate bool
	ckpt        *checkpointer // background checkpoints of file; nil if none
	closed      atomic.Bool
	stats       counters
	tel         *otelx.Recorder // nil: nothing to record beyond stats
	// prepared holds the statements Stmt prepared, closed with the DB.
	prepared stmtRegistry

	mu        sync.Mutex // protects tables and tablesGen
	tables    map[string]*tableState
	tablesGen uint64         // bumped by every Register that adds a table
	allReady  atomic.Bool    // every registered table is ready; reset by Register
	models    sqlcore.Models // the bun tables of models, and the ones bun could not build
}

// Stats are counters of the engine's table ensurer since the DB was made.
type Stats struct {
	EnsureCalls       uint64 // every readiness check an operation made
	FastPathHits      uint64 // checks answered by the atomic fast path
	EnsureRuns        uint64 // first-use runs (check, and migration if needed)
	MigrationsApplied uint64 // runs that executed DDL
	Failures          uint64 // runs that failed
	Retries           uint64 // statements, BEGINs and runs repeated after finding their pooled connection dead
}

type counters struct {
	fastHits, slowCalls, runs, migrations, failures, retries atomic.Uint64
}

// New wraps a *bun.DB the caller already has, on SQLite, PostgreSQL or
// MySQL (whose DSN should set parseTime and loc=UTC, as Open does). The
// caller keeps ownership: Close does not close it. Hooks given with
// WithQueryHook are added to a copy of db, not to db itself, and see every
// statement; hooks already on db see only what runs through bun (the
// migrations), since operations bind real parameters and bypass bun's
// formatter. Connection settings (WAL, busy timeout, pool size,
// secure_delete) are the caller's; Open sets them. On SQLite, transactions still begin with
// BEGIN IMMEDIATE, but with no file path New cannot notice the database
// file being deleted or replaced (see ErrDatabaseReplaced).
func New(db *bun.DB, opts ...Option) (*DB, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: db must not be nil", ErrInvalidArgument)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if len(cfg.openOnly) > 0 {
		// They configure connections, which New's caller made.
		return nil, fmt.Errorf("%w: %s: Open-only (New uses the caller's connections as they are)", ErrInvalidOption, strings.Join(cfg.openOnly, ", "))
	}
	return newDB(db, cfg, false)
}

func newDB(bdb *bun.DB, cfg config, owns bool) (*DB, error) {
	d, ok := sqlcore.Detect(bdb)
	if !ok {
		return nil, fmt.Errorf("%w: dialect %s (want sqlite, pg or mysql)", ErrInvalidArgument, bdb.Dialect().Name())
	}
	db := &DB{
		sql:    bdb.DB,
		d:      d,
		ownsDB: owns,
		tables: make(map[string]*tableState),
	}
	tel, err := newTelemetry(cfg, db.Stats)
	if err != nil {
		return nil, fmt.Errorf("%w: telemetry: %w", ErrInvalidOption, err)
	}
	if tel != nil {
		// First, so that the other hooks see the statement's span in
		// their context.
		system := attribute.String("db.system.name", d.System())
		cfg.hooks = append([]bun.QueryHook{statementHook{rec: tel, system: system}}, cfg.hooks...)
	}
	for _, h := range cfg.hooks {
		bdb = bdb.WithQueryHook(h)
	}
	mig, err := migrate.New(bdb, migrate.WithHistoryTable(cfg.historyTable), migrate.WithLogger(cfg.logger))
	if err != nil {
		_ = tel.Close()
		return nil, err
	}
	db.bun, db.cfg, db.mig, db.tel = bdb, cfg, mig, tel
	return db, nil
}

// Bun returns the underlying *bun.DB, with the configured query hooks.
// Statements run through it bypass the table ensurer.
func (db *DB) Bun() *bun.DB {
	if db == nil {
		return nil
	}
	return db.bun
}

// Migrator returns the migrator the engine uses, for dry runs (Plan) and
// history.
func (db *DB) Migrator() *migrate.Migrator {
	if db == nil {
		return nil
	}
	return db.mig
}

// Dialect returns "sqlite", "pg" or "mysql".
func (db *DB) Dialect() string {
	if db == nil || db.bun == nil {
		return ""
	}
	return db.d.Name()
}

// Close makes every later operation return ErrClosed and, if Open made the
// database handle, closes it. Calling Close again returns nil.
//
// On a SQLite file, Close first folds the WAL into the database file. If
// that fails (a full disk; a file deleted or moved, which wraps
// ErrDatabaseReplaced), Close still closes everything and returns the
// cause. The WAL stays beside the path, and the next Open of the file
// recovers what it holds: Close loses nothing that was committed.
func (db *DB) Close() error {
	if db == nil || db.closed.Swap(true) {
		return nil
	}
	db.closeStmts()
	_ = db.tel.Close()
	if db.ownsDB {
		ckptErr := db.ckpt.close() // needs the pool: first
		if err := errors.Join(ckptErr, db.bun.Close()); err != nil {
			return fmt.Errorf("close: %w", err)
		}
	}
	return nil
}

// Stats returns a snapshot of the ensurer counters.
func (db *DB) Stats() Stats {
	if db == nil {
		return Stats{}
	}
	hits := db.stats.fastHits.Load()
	return Stats{
		EnsureCalls:       hits + db.stats.slowCalls.Load(),
		FastPathHits:      hits,
		EnsureRuns:        db.stats.runs.Load(),
		MigrationsApplied: db.stats.migrations.Load(),
		Failures:          db.stats.failures.Load(),
		Retries:           db.stats.retries.Load(),
	}
}

// Readier is a table that can be made ready: every *Table[T].
type Readier interface {
	Ready(ctx context.Context) error
}

// RunInTx runs fn in a transaction and commits it if fn returns nil, or
// rolls it back otherwise (also when the context ends or fn panics, which
// then re-panics). Tables are bound to the transaction with Table.WithTx.
//
// First-use schema work never runs inside the transaction: the tables
// given are made ready before it begins, and their errors (such as
// ErrTableMissing) returned; with no tables given, every registered table
// is made ready, best effort, so that one that cannot be fails only the
// operations that use it. Once ready, either costs an atomic load per
// table. On SQLite, a table that is first used inside a transaction it was
// not made ready for must be created on another connection, which waits
// for this transaction: pass it, or call EnsureTable first.
//
// On SQLite the transaction starts with BEGIN IMMEDIATE, so concurrent
// writers wait for each other (up to the busy timeout) instead of failing.
func (db *DB) RunInTx(ctx context.Context, fn func(ctx context.Context, tx *Tx) error, tables ...Readier) (err error) {
	if err := db.usable(); err != nil {
		return err
	}
	if len(tables) == 0 {
		if err := db.readyAll(ctx); err != nil {
			return err
		}
	}
	for _, t := range tables {
		if err := t.Ready(ctx); err != nil {
			return err
		}
	}
	return db.runTx(ctx, fn)
}

// runTx is RunInTx without making the registered tables ready: for an
// operation whose own table is ready, so that another table that cannot be
// ensured does not fail it.
func (db *DB) runTx(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) (err error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = tx.rollback(ctx)
		}
	}()
	if err := fn(ctx, tx); err != nil {
		done = true
		if rbErr := tx.rollback(ctx); rbErr != nil {
			return errors.Join(err, rbErr)
		}
		return err // as fn returned it
	}
	done = true
	if err := tx.commit(ctx); err != nil {
		db.logOutcomeUnknown(ctx, "commit", err)
		return err
	}
	db.ckpt.committed()
	return nil
}

// readyAll ensures every registered table, in name order; it fails only
// when ctx ends. Once all are ready it costs one atomic load.
func (db *DB) readyAll(ctx context.Context) error {
	if db.allReady.Load() {
		return nil
	}
	db.mu.Lock()
	gen := db.tablesGen
	states := make([]*tableState, 0, len(db.tables))
	for _, st := range db.tables {
		if !st.ens.Ready() {
			states = append(states, st)
		}
	}
	db.mu.Unlock()
	slices.SortFunc(states, func(a, b *tableState) int { return strings.Compare(a.name, b.name) })
	for _, st := range states {
		// Best effort: a table that cannot be made ready fails only the
		// operations that use it (at once, from its backoff), not every
		// transaction.
		if err := db.ready(ctx, st); err != nil && ctx.Err() != nil {
			return err
		}
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if gen != db.tablesGen {
		return nil // a table was registered meanwhile: check again next time
	}
	for _, st := range db.tables {
		if !st.ens.Ready() && !db.cfg.skipChecks && !db.cfg.existingSchema {
			return nil // not ready, nor taken as ready: try again next time
		}
	}
	db.allReady.Store(true)
	return nil
}

// SchemaChanges reports whether the DB may change the schema: false under
// WithAutoMigrate(false) or WithExistingSchemaMode(true). A client that
// keeps tables of its own beside registered ones (such as a search index)
// creates them only when it is true.
// A zero or closed DB changes nothing.
func (db *DB) SchemaChanges() bool {
	return db != nil && db.sql != nil && !db.Closed() && db.cfg.autoMigrate && !db.cfg.existingSchema
}

// EnsureBackoff returns the wait after a failed first-use run and its
// cap (WithEnsureBackoff), for steps of first use that a package above
// the DB runs itself, such as a backend's data upgrades.
func (db *DB) EnsureBackoff() (minWait, maxWait time.Duration) {
	if db == nil || db.cfg.minBackoff <= 0 || db.cfg.maxBackoff < db.cfg.minBackoff {
		return DefaultMinBackoff, DefaultMaxBackoff // a zero DB
	}
	return db.cfg.minBackoff, db.cfg.maxBackoff
}
