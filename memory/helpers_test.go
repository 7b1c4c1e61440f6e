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
// can fail them on demand. It is a memory.VersionedBackend: every method
// through which memory may reach the store is shadowed here, so none of them
// bypasses the counting or the injected errors.
//
// loads counts the reads that returned a whole window (LoadWindow, and
// LoadWindowIfChanged with changed == true, or failed); checks counts the
// LoadWindowIfChanged calls that only confirmed a known version
// (changed == false), which is what a coherent cache hit costs.
type recordingBackend struct {
	*backend.InMemoryBackend
	saves, loads, checks, clears, infos atomic.Int64

	mu                         sync.Mutex // protects the errors
	saveErr, loadErr, clearErr error
}

var _ memory.VersionedBackend = (*recordingBackend)(nil)

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
	_, err := b.SaveTurnVersioned(ctx, id, memory.PreparedTurn{Turn: t})
	return err
}

// StoreTurn shadows the in-memory backend's, so that memory's TurnStorer
// path is recorded and fails on demand too.
func (b *recordingBackend) StoreTurn(ctx context.Context, id string, t memory.Turn) (bool, error) {
	s, err := b.SaveTurnVersioned(ctx, id, memory.PreparedTurn{Turn: t})
	return s.Stored, err
}

// SaveTurnVersioned shadows the in-memory backend's, so that memory's
// VersionedBackend path is recorded and fails on demand too.
func (b *recordingBackend) SaveTurnVersioned(ctx context.Context, id string, t memory.PreparedTurn) (memory.Saved, error) {
	b.saves.Add(1)
	if err, _, _ := b.errs(); err != nil {
		return memory.Saved{}, err
	}
	return b.InMemoryBackend.SaveTurnVersioned(ctx, id, t)
}

func (b *recordingBackend) LoadWindow(ctx context.Context, id string, n int) (memory.Window, error) {
	b.loads.Add(1)
	if _, err, _ := b.errs(); err != nil {
		return memory.Window{}, err
	}
	return b.InMemoryBackend.LoadWindow(ctx, id, n)
}

// LoadWindowIfChanged shadows the in-memory backend's: a call that only
// confirmed the known version counts as a check, any other as a load.
func (b *recordingBackend) LoadWindowIfChanged(ctx context.Context, id string, n int, known memory.Version) (memory.Window, memory.Version, bool, error) {
	if _, err, _ := b.errs(); err != nil {
		b.loads.Add(1)
		return memory.Window{}, 0, false, err
	}
	w, v, changed, err := b.InMemoryBackend.LoadWindowIfChanged(ctx, id, n, known)
	if err == nil && !changed {
		b.checks.Add(1)
	} else {
		b.loads.Add(1)
	}
	return w, v, changed, err
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
	return b.saves.Load() + b.loads.Load() + b.checks.Load() + b.clears.Load() + b.infos.Load()
}

// saveOnly hides a backend's StoreTurn and its versioned methods, so memory
// cannot tell a stored turn from a known ID, nor whether a session changed.
type saveOnly struct{ memory.Backend }

// unversioned hides a backend's versioned methods but keeps StoreTurn:
// memory knows whether a save stored its turn, never whether a session
// changed.
type unversioned struct {
	memory.Backend
	memory.TurnStorer
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
