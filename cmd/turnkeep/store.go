package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	_ "github.com/go-sql-driver/mysql" // mysql://
	_ "github.com/jackc/pgx/v5/stdlib" // postgres://
	_ "modernc.org/sqlite"             // sqlite://

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

// A store is an open database: the engine, the backend and a memory
// confined to the tenant.
type store struct {
	db  *dataflow.DB
	b   *backend.DataFlowBackend
	mem *memory.PersistentBufferMemory
}

// schemaMode says whether opening a database may change its schema.
type schemaMode int

const (
	readOnlySchema schemaMode = iota // no DDL; a missing SQLite file is not created
	migrateSchema                    // additive migrations at first use, as the library does
)

// open opens rawURL for tenant. With readOnlySchema, a SQLite file that
// does not exist is errNotFound (nothing is created) and the engine runs
// with auto-migration off. memOpts are added to the memory's options.
func open(ctx context.Context, rawURL, tenant string, mode schemaMode, memOpts ...memory.Option) (*store, error) {
	if rawURL == "" {
		return nil, usagef("", "no database: pass --db URL or set TURNKEEP_DB_URL")
	}
	if err := memory.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	var opts []dataflow.Option
	if mode == readOnlySchema {
		opts = append(opts, dataflow.WithAutoMigrate(false))
		if path, ok := sqlitePath(rawURL); ok {
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: no SQLite database at %s", errNotFound, path)
			}
		}
	}
	db, err := dataflow.Open(ctx, rawURL, opts...)
	if err != nil {
		if errors.Is(err, dataflow.ErrInvalidURL) {
			return nil, err
		}
		return nil, dbErr(fmt.Errorf("open database: %w", err))
	}
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	// The command reads each window once: no cache.
	m, err := memory.NewPersistentBufferMemory(b, append([]memory.Option{memory.WithCacheTTL(0)}, memOpts...)...)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &store{db: db, b: b, mem: m.ForTenant(tenant)}, nil
}

func (s *store) Close() error {
	s.mem.Close()
	return s.db.Close()
}

// sqlitePath returns the file a sqlite:// URL names, if it names one.
func sqlitePath(raw string) (string, bool) {
	rest, ok := strings.CutPrefix(raw, "sqlite://")
	if !ok || !strings.HasPrefix(rest, "/") || strings.ContainsAny(rest, "?#") {
		return "", false
	}
	p, err := url.PathUnescape(rest[1:])
	if err != nil || p == "" || p == ":memory:" {
		return "", false
	}
	return p, true
}
