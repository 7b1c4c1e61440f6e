package langchaingo_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // registers "sqlite"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// envPostgres names the variable holding the PostgreSQL URL for tests.
const envPostgres = "TURNKEEP_POSTGRES_URL"

// A store is a kind of backend the tests run on.
type store struct {
	name    string
	backend func(t *testing.T) driver.Backend
}

var stores = []store{
	{"inmemory", func(*testing.T) driver.Backend { return backend.NewInMemoryBackend() }},
	{"sqlite", func(t *testing.T) driver.Backend {
		return dataFlow(t, "sqlite:///"+filepath.Join(t.TempDir(), "test.db"))
	}},
	{"pg", func(t *testing.T) driver.Backend { return dataFlow(t, postgresURL(t)) }},
}

// eachStore runs fn as a subtest on every store; without envPostgres the
// PostgreSQL subtest is skipped with a message naming it.
func eachStore(t *testing.T, fn func(t *testing.T, b driver.Backend)) {
	t.Helper()
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { fn(t, s.backend(t)) })
	}
}

// newMemory returns a PersistentBufferMemory over b.
func newMemory(t *testing.T, b driver.Backend, opts ...memory.Option) *memory.PersistentBufferMemory {
	t.Helper()
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func dataFlow(t *testing.T, rawURL string) *backend.DataFlowBackend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := dataflow.Open(ctx, rawURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	b, err := backend.NewDataFlowBackend(db)
	require.NoError(t, err)
	return b
}

// postgresURL creates a schema with a random name, returns the envPostgres
// URL with search_path set to it, and drops it at cleanup. It skips the
// test when envPostgres is not set.
func postgresURL(t *testing.T) string {
	t.Helper()
	base := os.Getenv(envPostgres)
	if base == "" {
		t.Skipf("PostgreSQL tests skipped: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", envPostgres)
	}
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	schema := "tk_lc_" + hex.EncodeToString(rb[:])
	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// recordingBackend records the turn limit of every Load.
type recordingBackend struct {
	driver.Backend
	mu       sync.Mutex // protects maxTurns
	maxTurns []int
}

func (b *recordingBackend) Load(ctx context.Context, sessionID string, q driver.WindowQuery) (memory.Window, driver.Version, error) {
	b.mu.Lock()
	b.maxTurns = append(b.maxTurns, q.MaxTurns)
	b.mu.Unlock()
	return b.Backend.Load(ctx, sessionID, q)
}

// loads returns the turn limits of the loads since the last call.
func (b *recordingBackend) loads() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.maxTurns
	b.maxTurns = nil
	return l
}

// allTurns loads every turn of the session.
func allTurns(t *testing.T, m memory.Memory, sessionID string) memory.Window {
	t.Helper()
	w, err := m.LoadContext(context.Background(), sessionID, memory.LoadMaxTurns(1000), memory.LoadTokenBudget(0))
	require.NoError(t, err)
	return w
}
