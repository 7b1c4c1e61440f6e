package memory_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/memory"
)

// recordingBackend counts the calls that reach a real in-memory store and
// can fail them on demand.
type recordingBackend struct {
	*backend.InMemoryBackend
	saves, loads, clears, infos atomic.Int64

	mu                         sync.Mutex // protects the errors
	saveErr, loadErr, clearErr error
}

func newRecordingBackend() *recordingBackend {
	return &recordingBackend{InMemoryBackend: backend.NewInMemoryBackend()}
}

func (b *recordingBackend) fail(save, load, clear error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.saveErr, b.loadErr, b.clearErr = save, load, clear
}

func (b *recordingBackend) errs() (save, load, clear error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.saveErr, b.loadErr, b.clearErr
}

func (b *recordingBackend) SaveTurn(ctx context.Context, id string, t memory.Turn) error {
	_, err := b.StoreTurn(ctx, id, t)
	return err
}

// StoreTurn shadows the in-memory backend's, so that memory's TurnStorer
// path is recorded and fails on demand too.
func (b *recordingBackend) StoreTurn(ctx context.Context, id string, t memory.Turn) (bool, error) {
	b.saves.Add(1)
	if err, _, _ := b.errs(); err != nil {
		return false, err
	}
	return b.InMemoryBackend.StoreTurn(ctx, id, t)
}

// saveOnly hides a backend's StoreTurn, so memory cannot tell a stored turn
// from a known ID and must fall back on what its cache knows.
type saveOnly struct{ memory.Backend }

func (b *recordingBackend) LoadWindow(ctx context.Context, id string, n int) (memory.Window, error) {
	b.loads.Add(1)
	if _, err, _ := b.errs(); err != nil {
		return memory.Window{}, err
	}
	return b.InMemoryBackend.LoadWindow(ctx, id, n)
}

func (b *recordingBackend) ClearSession(ctx context.Context, id string) error {
	b.clears.Add(1)
	if _, _, err := b.errs(); err != nil {
		return err
	}
	return b.InMemoryBackend.ClearSession(ctx, id)
}

func (b *recordingBackend) SessionInfo(ctx context.Context, id string) (memory.SessionInfo, error) {
	b.infos.Add(1)
	return b.InMemoryBackend.SessionInfo(ctx, id)
}

func (b *recordingBackend) calls() int64 {
	return b.saves.Load() + b.loads.Load() + b.clears.Load() + b.infos.Load()
}

func newPersistent(t testing.TB, b memory.Backend, opts ...memory.Option) *memory.PersistentBufferMemory {
	t.Helper()
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	require.NoError(t, err)
	return m
}

// readThrough is what the backend holds: the reference the cache must equal.
func readThrough(t testing.TB, b memory.Backend, sessionID string, maxTurns int) memory.Window {
	t.Helper()
	w, err := b.LoadWindow(context.Background(), sessionID, maxTurns)
	require.NoError(t, err)
	return w
}
