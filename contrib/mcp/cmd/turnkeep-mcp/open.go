package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime/debug"
	"strings"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/migrate"
	"github.com/turnkeep/turnkeep/summarize"
)

// errMigrate is the answer for a database whose schema is not what this
// release reads: the command never changes it.
var errMigrate = errors.New("the database needs migrating: run 'turnkeep migrate up' (turnkeep-mcp never changes the schema)")

// open opens rawURL with auto-migration off and checks that nothing would
// migrate: every table, the search index and the data upgrades up to date.
// The memory reads each window once (no cache: another process writes) and
// reads summaries, so get_history can show them; it summarizes only turns
// that a save_note pushed out of the window, as the app's memory would.
func open(ctx context.Context, rawURL string) (*memory.PersistentBufferMemory, error) {
	if path, ok := sqlitePath(rawURL); ok {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no SQLite database at %s: %w", path, errMigrate)
		}
	}
	if err := checkSchema(ctx, rawURL); err != nil {
		return nil, err
	}
	mem, err := turnkeep.Open(ctx, rawURL,
		turnkeep.Engine(dataflow.WithAutoMigrate(false)),
		turnkeep.Memory(memory.WithCacheTTL(0), memory.WithSummarizer(summarize.NewExtractive(nil), 500)))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return mem, nil
}

// checkSchema opens rawURL once more, read only, and plans what `turnkeep
// migrate up` would do: any step is errMigrate.
func checkSchema(ctx context.Context, rawURL string) error {
	db, err := dataflow.Open(ctx, rawURL, dataflow.WithAutoMigrate(false))
	if errors.Is(err, dataflow.ErrInvalidURL) {
		return &usageError{err.Error()}
	}
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		return err
	}
	mig := db.Migrator()
	for _, m := range b.Models() {
		st, err := mig.Check(ctx, m)
		if err != nil {
			return schemaErr(err)
		}
		if st == migrate.UpToDate {
			continue
		}
		p, err := mig.Plan(ctx, m)
		if err != nil {
			return schemaErr(err)
		}
		if !p.Exists || !p.Empty() {
			return fmt.Errorf("table %s is %v: %w", p.Table, st, errMigrate)
		}
	}
	p, err := b.SearchIndexPlan(ctx)
	if err != nil {
		return schemaErr(err)
	}
	if !p.Empty() {
		return fmt.Errorf("the search index %s is missing: %w", p.Table, errMigrate)
	}
	for _, u := range b.Upgrades() {
		p, err := mig.UpgradePlan(ctx, u)
		if err != nil {
			return schemaErr(err)
		}
		if !p.Empty() {
			return fmt.Errorf("data upgrade %s is pending: %w", p.Table, errMigrate)
		}
	}
	return nil
}

func schemaErr(err error) error {
	if errors.Is(err, dataflow.ErrTableMissing) || errors.Is(err, dataflow.ErrSchemaMismatch) {
		return fmt.Errorf("%v: %w", err, errMigrate)
	}
	return fmt.Errorf("check schema: %w", err)
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

// version is the module's version as built, "devel" from a checkout.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
