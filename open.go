package turnkeep

import (
	"context"
	"fmt"
	"strings"

	_ "github.com/go-sql-driver/mysql" // registers "mysql": likewise for mysql://
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx": Open's postgres:// URLs need no import in the program
	_ "modernc.org/sqlite"             // registers "sqlite": likewise for sqlite://

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/closehook"
	"github.com/turnkeep/turnkeep/memory"
)

// Errors Open returns, for a program that imports only turnkeep and
// memory. Each is the same value as the sentinel of the package named, so
// errors.Is matches either.
var (
	// ErrInvalidOption is returned by Open for a nil Option, or for an
	// option of Memory, Backend or Engine that is nil or has an invalid
	// value. It is memory.ErrInvalidOption; an invalid Engine option wraps
	// dataflow.ErrInvalidOption as well.
	ErrInvalidOption = memory.ErrInvalidOption
	// ErrInvalidURL is returned by Open for a URL it cannot parse or whose
	// scheme it does not know. It is dataflow.ErrInvalidURL.
	ErrInvalidURL = dataflow.ErrInvalidURL
)

// An Option configures Open. Memory, Backend and Engine make them; the
// options of each are added to those given before.
type Option func(*config)

// config is what the options of Open gathered.
type config struct {
	memory  []memory.Option
	backend []backend.Option
	engine  []dataflow.Option
}

// Memory passes opts to memory.NewPersistentBufferMemory: the window
// (memory.WithMaxTurns, memory.WithTokenBudget), the cache, token
// counting, logs and telemetry.
func Memory(opts ...memory.Option) Option {
	return func(c *config) { c.memory = append(c.memory, opts...) }
}

// Backend passes opts to backend.NewDataFlowBackend, for example
// backend.WithSearchIndex.
func Backend(opts ...backend.Option) Option {
	return func(c *config) { c.backend = append(c.backend, opts...) }
}

// Engine passes opts to dataflow.Open: the connection pool
// (dataflow.WithMaxOpenConns), SQLite's busy timeout, query hooks, the
// schema flags, logs and telemetry of the database engine.
func Engine(opts ...dataflow.Option) Option {
	return func(c *config) { c.engine = append(c.engine, opts...) }
}

// The steps of Open, variables so that a test can make one fail.
var (
	openDB     = dataflow.Open
	newBackend = backend.NewDataFlowBackend
	newMemory  = func(b *backend.DataFlowBackend, opts ...memory.Option) (*memory.PersistentBufferMemory, error) {
		return memory.NewPersistentBufferMemory(b, opts...)
	}
)

// Open opens the database at url (sqlite:///relative.db,
// sqlite:////absolute.db, postgres://… or postgresql://…, mysql://… for
// MariaDB and Galera; see package dataflow), with its drivers registered, and returns a memory whose
// Close releases everything Open made: the memory, its backend and the
// database. Tables are made or checked on first use, as with the three
// constructors.
//
// Every option is checked before the database is touched: a nil or
// invalid one returns an error wrapping ErrInvalidOption and creates
// nothing, not even an empty SQLite file. An unknown or malformed url
// returns an error wrapping ErrInvalidURL. If a later step fails, what
// Open had opened is closed before it returns. A password in url never
// appears in an error.
func Open(ctx context.Context, url string, opts ...Option) (*memory.PersistentBufferMemory, error) {
	var c config
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i)
		}
		opt(&c)
	}
	if err := checkOptions(ctx, c); err != nil {
		return nil, wrap(err)
	}
	db, err := openDB(ctx, url, c.engine...)
	if err != nil {
		return nil, wrap(err)
	}
	b, err := newBackend(db, c.backend...)
	if err != nil {
		return nil, closeAfter(db, err)
	}
	m, err := newMemory(b, c.memory...)
	if err != nil {
		return nil, closeAfter(db, err)
	}
	closehook.Set(m, db.Close) // the backend holds nothing to release but db
	return m, nil
}

// checkOptions builds a memory with c's Memory and Backend options on
// throw-away stores, so that an invalid option is found before Open
// touches the database. Engine options need no such run: dataflow.Open
// checks them before it opens anything.
func checkOptions(ctx context.Context, c config) error {
	if len(c.memory) == 0 && len(c.backend) == 0 {
		return nil
	}
	if len(c.backend) == 0 {
		m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), c.memory...)
		if err != nil {
			return err
		}
		return m.Close()
	}
	scratch, err := dataflow.Open(ctx, ":memory:") // one connection in process memory; no file
	if err != nil {
		return fmt.Errorf("check options: %w", err)
	}
	defer scratch.Close()
	b, err := backend.NewDataFlowBackend(scratch, c.backend...)
	if err != nil {
		return err
	}
	m, err := memory.NewPersistentBufferMemory(b, c.memory...)
	if err != nil {
		return err
	}
	return m.Close()
}

// wrap names the package once: errors of options already begin with
// "turnkeep: " (ErrInvalidOption is one value in every package).
func wrap(err error) error {
	if strings.HasPrefix(err.Error(), "turnkeep: ") {
		return err
	}
	return fmt.Errorf("turnkeep: %w", err)
}

// closeAfter closes db after the step that failed with err, and returns
// err, with the error of the close if there is one.
func closeAfter(db *dataflow.DB, err error) error {
	err = wrap(err)
	if cerr := db.Close(); cerr != nil {
		return fmt.Errorf("%w (closing the database: %w)", err, cerr)
	}
	return err
}
