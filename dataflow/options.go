package dataflow

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/uptrace/bun"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/turnkeep/turnkeep/internal/cache"
	"github.com/turnkeep/turnkeep/internal/optx"
	"github.com/turnkeep/turnkeep/migrate"
)

// Defaults for the options.
const (
	DefaultBusyTimeout   = 10 * time.Second
	DefaultEnsureTimeout = cache.DefaultTimeout
	DefaultMinBackoff    = cache.DefaultMinBackoff
	DefaultMaxBackoff    = cache.DefaultMaxBackoff
	DefaultMaxOpenConns  = 32 // PostgreSQL pool size for Open

	// DefaultCheckpointEvery is the WAL size, in pages, at which Open's
	// background checkpoint of a SQLite file starts (SQLite's own
	// automatic threshold).
	DefaultCheckpointEvery = 1000
)

// Option configures a DB. Options follow one rule in every turnkeep
// package: a nil Option, or one given a nil or out-of-range value, is an
// error wrapping ErrInvalidOption.
type Option func(*config) error

type config struct {
	autoMigrate    bool
	existingSchema bool
	skipChecks     bool
	force          bool
	hooks          []bun.QueryHook
	logger         *slog.Logger
	syncFull       bool
	busyTimeout    time.Duration
	ensureTimeout  time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
	maxOpenConns   int
	historyTable   string

	slowThreshold  time.Duration
	tracerProvider trace.TracerProvider // nil: otel's global one
	meterProvider  metric.MeterProvider // nil: otel's global one

	checkpointEvery int      // WAL pages; 0: SQLite checkpoints in COMMIT
	openOnly        []string // the Open-only options given, which New refuses
}

func newConfig(opts []Option) (config, error) {
	c := config{
		autoMigrate:   true,
		logger:        slog.New(slog.DiscardHandler),
		busyTimeout:   DefaultBusyTimeout,
		ensureTimeout: DefaultEnsureTimeout,
		minBackoff:    DefaultMinBackoff,
		maxBackoff:    DefaultMaxBackoff,
		maxOpenConns:  DefaultMaxOpenConns,
		historyTable:  migrate.DefaultHistoryTable,

		checkpointEvery: DefaultCheckpointEvery,
	}
	if err := optx.Apply(&c, opts); err != nil {
		return config{}, err
	}
	return c, nil
}

// WithAutoMigrate turns automatic migration on (the default) or off. Off
// means no DDL ever: first use of a table checks that it exists and has the
// model's columns, and returns ErrTableMissing or ErrSchemaMismatch if not.
func WithAutoMigrate(on bool) Option {
	return func(c *config) error { c.autoMigrate = on; return nil }
}

// WithExistingSchemaMode trusts the schema outright: no checks, no DDL, not
// even from EnsureTable. For databases migrated by other means.
func WithExistingSchemaMode(on bool) Option {
	return func(c *config) error { c.existingSchema = on; return nil }
}

// WithSkipTableChecks skips the first-use check of operations: a table is
// taken as ready until EnsureTable is called explicitly, which still checks
// and (with auto-migration) migrates.
func WithSkipTableChecks(on bool) Option {
	return func(c *config) error { c.skipChecks = on; return nil }
}

// WithForceDestructive lets migrations run destructive steps (dropping
// columns the model no longer has, changing types). Off by default.
func WithForceDestructive(on bool) Option {
	return func(c *config) error { c.force = on; return nil }
}

// WithQueryHook adds a hook that sees every statement the engine runs:
// operations, raw statements, catalog queries and DDL.
func WithQueryHook(h bun.QueryHook) Option {
	return func(c *config) error {
		if h == nil {
			return fmt.Errorf("%w: nil query hook", ErrInvalidOption)
		}
		c.hooks = append(c.hooks, h)
		return nil
	}
}

// WithLogger sets the logger (default: discard). At Info: each first-use
// run of a table that succeeded (table, whether it migrated, duration)
// and each migration applied. At Warn: a failed run, a destructive change
// skipped, a statement, BEGIN or run repeated after a dead pooled
// connection, a failed background checkpoint, and a statement slower than
// WithSlowThreshold (its SQL text, never its values). At Error: a COMMIT
// whose outcome is unknown (ErrOutcomeUnknown). A nil l is an error.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithSlowThreshold makes every statement (and first-use run) that takes
// d or longer log a Warn line (WithLogger) with its SQL text and duration.
// The default, 0, logs none; d < 0 is an error.
func WithSlowThreshold(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: slow threshold must not be negative, got %v", ErrInvalidOption, d)
		}
		c.slowThreshold = d
		return nil
	}
}

// WithTracerProvider makes the DB record a span of every statement
// (SpanStatement), as a child of the span in its context, and of every
// first-use run (SpanEnsure), with tp. The default is otel's global
// provider when the DB is made: set it before, with otel.SetTracerProvider.
// While that is still otel's default, or tp is a no-op, no span is started
// and statements cost nothing more. A nil tp is an error.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return fmt.Errorf("%w: nil tracer provider", ErrInvalidOption)
		}
		c.tracerProvider = tp
		return nil
	}
}

// WithMeterProvider makes the DB record its metrics (the Stats counters
// and the latency of first-use runs; see MetricEnsureRuns) with mp. The
// default is otel's global provider when the DB is made, as for
// WithTracerProvider. A nil mp is an error.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return fmt.Errorf("%w: nil meter provider", ErrInvalidOption)
		}
		c.meterProvider = mp
		return nil
	}
}

// WithSynchronousFull makes Open use PRAGMA synchronous=FULL on SQLite
// files (default NORMAL, which in WAL mode may lose the last commits on
// power loss but never corrupts; FULL survives power loss too). Open-only:
// New returns ErrInvalidOption.
func WithSynchronousFull(on bool) Option {
	return func(c *config) error {
		c.syncFull = on
		c.openOnly = append(c.openOnly, "WithSynchronousFull")
		return nil
	}
}

// WithBusyTimeout sets how long SQLite waits for a lock before failing
// (default DefaultBusyTimeout). Open-only: New returns ErrInvalidOption.
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: negative busy timeout", ErrInvalidOption)
		}
		c.busyTimeout = d
		c.openOnly = append(c.openOnly, "WithBusyTimeout")
		return nil
	}
}

// WithEnsureTimeout bounds one shared first-use run (default
// DefaultEnsureTimeout). The run does not depend on any caller's context.
func WithEnsureTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: ensure timeout must be positive", ErrInvalidOption)
		}
		c.ensureTimeout = d
		return nil
	}
}

// WithEnsureBackoff sets the wait after a failed first-use run, doubling up
// to max, during which calls fail fast with the last error instead of
// retrying.
func WithEnsureBackoff(minWait, maxWait time.Duration) Option {
	return func(c *config) error {
		if minWait <= 0 || maxWait < minWait {
			return fmt.Errorf("%w: backoff needs 0 < min <= max", ErrInvalidOption)
		}
		c.minBackoff, c.maxBackoff = minWait, maxWait
		return nil
	}
}

// WithMaxOpenConns sets the PostgreSQL pool size for Open (Open-only: New
// returns ErrInvalidOption; default
// DefaultMaxOpenConns). SQLite files use the database/sql default; the
// shared in-memory database always uses one connection.
func WithMaxOpenConns(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max open conns must be at least 1", ErrInvalidOption)
		}
		c.maxOpenConns = n
		c.openOnly = append(c.openOnly, "WithMaxOpenConns")
		return nil
	}
}

// WithCheckpointEvery sets when Open checkpoints a SQLite file: once the
// WAL holds pages pages that are not yet in the database file (default
// DefaultCheckpointEvery). Open turns SQLite's automatic checkpoint off on
// its connections, so that no COMMIT pays for copying the WAL into the
// database file, and a goroutine of the DB checkpoints in the background
// on a connection of its own (PASSIVE, which never blocks readers or
// writers, then RESTART when the WAL did not start over, and TRUNCATE when
// a long reader made the file grow); Close stops it and folds the WAL into
// the database file. Under sustained writes the WAL file stays within
// 8×pages pages (for pages >= DefaultCheckpointEvery; smaller thresholds
// mainly add checkpoints) while no reader holds a snapshot for long; a reader
// that does pins what was written after its snapshot, and the file shrinks
// back once it ends. Durability is unchanged. These checkpoints are not
// statements of the engine's operations: query hooks do not see them.
//
// 0 restores SQLite's automatic checkpoint (wal_autocheckpoint=1000, run
// inside the COMMIT that crosses it); a negative value is invalid. It has
// no effect on in-memory databases and PostgreSQL. It is Open-only: New,
// which cannot configure the caller's connections, returns
// ErrInvalidOption when given it.
func WithCheckpointEvery(pages int) Option {
	return func(c *config) error {
		if pages < 0 {
			return fmt.Errorf("%w: negative checkpoint threshold", ErrInvalidOption)
		}
		c.checkpointEvery = pages
		c.openOnly = append(c.openOnly, "WithCheckpointEvery")
		return nil
	}
}

// WithHistoryTable names the migration history table (default
// migrate.DefaultHistoryTable).
func WithHistoryTable(name string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("%w: empty history table name", ErrInvalidOption)
		}
		c.historyTable = name
		return nil
	}
}

// ModelOption configures a registered model; a nil one is ErrInvalidOption,
// as for Option.
type ModelOption func(*modelConfig) error

type modelConfig struct {
	indexes      []migrate.Index
	withoutRowID bool
	dropped      []string // WithDroppedIndex
}

// WithoutRowID makes SQLite store the table's rows in primary-key order
// (CREATE TABLE … WITHOUT ROWID): a range of the key, such as one
// session's newest messages, then reads adjacent pages however the writes
// interleaved. The model needs a primary key. PostgreSQL ignores it; it
// applies when the table is created.
func WithoutRowID() ModelOption {
	return func(m *modelConfig) error {
		m.withoutRowID = true
		return nil
	}
}

// WithIndex asks for an index on the given SQL columns. Index names share
// one namespace per schema on PostgreSQL: prefix them with the table name.
func WithIndex(name string, columns ...string) ModelOption {
	return index(name, false, columns)
}

// WithPartialIndex asks for an index on the given SQL columns of the rows
// where holds true for (a condition on the table's columns, without
// parameters), on the engines with partial indexes (SQLite, PostgreSQL);
// on the others (MySQL) the index holds every row. A write of a row the
// condition excludes writes no entry, so an index of rare rows costs the
// other rows' writes nothing.
func WithPartialIndex(name, where string, columns ...string) ModelOption {
	return func(m *modelConfig) error {
		if name == "" || where == "" || len(columns) == 0 {
			return fmt.Errorf("%w: a partial index needs a name, a condition and at least one column", ErrInvalidOption)
		}
		m.indexes = append(m.indexes, migrate.Index{Name: name, Columns: append([]string(nil), columns...), Where: where})
		return nil
	}
}

// WithUniqueIndex asks for a unique index on the given SQL columns.
func WithUniqueIndex(name string, columns ...string) ModelOption {
	return index(name, true, columns)
}

// WithPartialUniqueIndex asks for a unique index on the given SQL columns
// of the rows where holds true for, as WithPartialIndex does: the columns
// are unique among those rows only. MySQL has no partial index; there the
// index holds every row, which makes it stricter, so a model that
// registers one should only do so on the engines that honour where.
func WithPartialUniqueIndex(name, where string, columns ...string) ModelOption {
	return func(m *modelConfig) error {
		if name == "" || where == "" || len(columns) == 0 {
			return fmt.Errorf("%w: a partial index needs a name, a condition and at least one column", ErrInvalidOption)
		}
		m.indexes = append(m.indexes, migrate.Index{Name: name, Columns: append([]string(nil), columns...), Unique: true, Where: where})
		return nil
	}
}

func index(name string, unique bool, columns []string) ModelOption {
	return func(m *modelConfig) error {
		if name == "" || len(columns) == 0 {
			return fmt.Errorf("%w: an index needs a name and at least one column", ErrInvalidOption)
		}
		m.indexes = append(m.indexes, migrate.Index{Name: name, Columns: append([]string(nil), columns...), Unique: unique})
		return nil
	}
}
