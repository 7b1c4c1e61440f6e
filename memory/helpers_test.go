package memory_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// recordingBackend counts the calls that reach a real in-memory store and
// can fail them on demand. It is a driver.Backend: every method through
// which memory may reach the store is shadowed here, so none of them
// bypasses the counting or the injected errors.
//
// loads counts the reads that returned a whole window (Load of a version
// other than the known one, or failed); checks counts the Load calls that
// only confirmed a known version (the window left empty), which is what a
// coherent cache hit costs. Appends fail with the save error.
type recordingBackend struct {
	*backend.InMemoryBackend
	saves, appends, loads, checks, clears, infos atomic.Int64

	mu                         sync.Mutex // protects the errors
	saveErr, loadErr, clearErr error
}

var _ driver.Backend = (*recordingBackend)(nil)

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

// SaveTurn shadows the in-memory backend's, so that a test's own saves
// through it are recorded and fail on demand too.
func (b *recordingBackend) SaveTurn(ctx context.Context, id string, t memory.Turn) error {
	_, err := b.Save(ctx, id, driver.PreparedTurn{Turn: t})
	return err
}

// Save shadows the in-memory backend's, so that memory's saves are
// recorded and fail on demand.
func (b *recordingBackend) Save(ctx context.Context, id string, t driver.PreparedTurn) (driver.Saved, error) {
	b.saves.Add(1)
	if err, _, _ := b.errs(); err != nil {
		return driver.Saved{}, err
	}
	return b.InMemoryBackend.Save(ctx, id, t)
}

// Append shadows the in-memory backend's, so that memory's appends are
// recorded and fail on demand (with the save error).
func (b *recordingBackend) Append(ctx context.Context, id, turnID string, msgs []driver.PreparedMessage) (driver.Saved, error) {
	b.appends.Add(1)
	if err, _, _ := b.errs(); err != nil {
		return driver.Saved{}, err
	}
	return b.InMemoryBackend.Append(ctx, id, turnID, msgs)
}

// LoadWindow shadows the in-memory backend's: it is a recorded Load.
func (b *recordingBackend) LoadWindow(ctx context.Context, id string, n int) (memory.Window, error) {
	w, _, err := b.Load(ctx, id, driver.WindowQuery{MaxTurns: n, Known: driver.UnknownVersion})
	return w, err
}

// Load shadows the in-memory backend's: a call that only confirmed the
// known version counts as a check, any other as a load.
func (b *recordingBackend) Load(ctx context.Context, id string, q driver.WindowQuery) (memory.Window, driver.Version, error) {
	if _, err, _ := b.errs(); err != nil {
		b.loads.Add(1)
		return memory.Window{}, 0, err
	}
	w, v, err := b.InMemoryBackend.Load(ctx, id, q)
	if err == nil && v == q.Known {
		b.checks.Add(1)
	} else {
		b.loads.Add(1)
	}
	return w, v, err
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
	return b.saves.Load() + b.appends.Load() + b.loads.Load() + b.checks.Load() + b.clears.Load() + b.infos.Load()
}

// unversioned is a backend that does not version its sessions: it reports
// driver.UnknownVersion for every state, so memory knows whether a save
// stored its turn, never whether a session changed. Every Load reads the
// whole window.
type unversioned struct{ driver.Backend }

func (u unversioned) Save(ctx context.Context, id string, t driver.PreparedTurn) (driver.Saved, error) {
	s, err := u.Backend.Save(ctx, id, t)
	if s.Stored {
		s.Version = driver.UnknownVersion
	}
	return s, err
}

func (u unversioned) Append(ctx context.Context, id, turnID string, msgs []driver.PreparedMessage) (driver.Saved, error) {
	s, err := u.Backend.Append(ctx, id, turnID, msgs)
	if s.Stored {
		s.Version = driver.UnknownVersion
	}
	return s, err
}

func (u unversioned) Load(ctx context.Context, id string, q driver.WindowQuery) (memory.Window, driver.Version, error) {
	q.Known = driver.UnknownVersion
	w, _, err := u.Backend.Load(ctx, id, q)
	if err != nil {
		return memory.Window{}, 0, err
	}
	return w, driver.UnknownVersion, nil
}

// saveOnly is unversioned, and its saves say nothing of what they did: a
// save reports its turn stored even when the session held its ID, so
// memory cannot tell a stored turn from a known ID either.
type saveOnly struct{ unversioned }

func newSaveOnly(b driver.Backend) saveOnly { return saveOnly{unversioned{b}} }

func (s saveOnly) Save(ctx context.Context, id string, t driver.PreparedTurn) (driver.Saved, error) {
	if _, err := s.Backend.Save(ctx, id, t); err != nil {
		return driver.Saved{}, err
	}
	return driver.Saved{Stored: true, Version: driver.UnknownVersion}, nil
}

func newPersistent(t testing.TB, b driver.Backend, opts ...memory.Option) *memory.PersistentBufferMemory {
	t.Helper()
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	require.NoError(t, err)
	return m
}

// readThrough is what the backend holds: the reference the cache must equal.
func readThrough(t testing.TB, b driver.Backend, sessionID string, maxTurns int) memory.Window {
	t.Helper()
	w, _, err := b.Load(context.Background(), sessionID, driver.WindowQuery{MaxTurns: maxTurns, Known: driver.UnknownVersion})
	require.NoError(t, err)
	return w
}
