package backend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// clearProbe, put in the context of a ClearSession, is run by probeHook once
// the clear's first data statement has returned (the lock upsert; in the
// old logic, the DELETE of the session row).
type clearProbe struct {
	fired      atomic.Bool
	afterFirst func()
}

type clearProbeKey struct{}

// probeHook runs the clearProbe of a statement's context.
type probeHook struct{}

var _ bun.QueryHook = probeHook{}

func (probeHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (probeHook) AfterQuery(ctx context.Context, ev *bun.QueryEvent) {
	p, ok := ctx.Value(clearProbeKey{}).(*clearProbe)
	if !ok || dbtest.Classify(ev.Query) != dbtest.KindData || !p.fired.CompareAndSwap(false, true) {
		return
	}
	p.afterFirst()
}

// clearFunc is a ClearSession: the backend's, or the previous release's.
type clearFunc func(ctx context.Context, b *DataFlowBackend, sessionID string) error

func realClear(ctx context.Context, b *DataFlowBackend, sessionID string) error {
	return b.ClearSession(ctx, sessionID)
}

// oldClear is ClearSession as the previous release wrote it (git
// af8f09f): the session row first, then the messages, with no lock taken
// on a row that does not exist yet. Kept here to show the race test
// catches its bug on PostgreSQL.
func oldClear(ctx context.Context, b *DataFlowBackend, sessionID string) error {
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		if _, err := b.sessions.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"id": sessionID}); err != nil {
			return err
		}
		_, err := b.messages.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"session_id": sessionID})
		return err
	}, b.sessions, b.messages)
	if err != nil {
		return fmt.Errorf("backend: clear session: %w", err)
	}
	return nil
}

// newRaceEnv opens a fresh database of dialect d with probeHook and a
// backend on it, its tables already created.
func newRaceEnv(t *testing.T, d dbtest.Dialect) *DataFlowBackend {
	t.Helper()
	db, err := dataflow.Open(context.Background(), d.URL(t), dataflow.WithQueryHook(probeHook{}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	require.NoError(t, b.ClearSession(context.Background(), "warm-up"))
	return b
}

// storedSession is what the tables hold for one session.
type storedSession struct {
	row       bool  // the session row exists
	turnCount int64 // its turn_count
	messages  []storedMessage
}

type storedMessage struct {
	seq    int64
	pos    int32
	turnID string
}

// readStored reads the session's rows from the tables themselves.
func readStored(t *testing.T, b *DataFlowBackend, sessionID string) storedSession {
	t.Helper()
	ctx := context.Background()
	var s storedSession
	rows, err := b.DB().QueryContext(ctx, b.db.Rebind(`SELECT turn_count FROM `+SessionsTable+` WHERE id = ?`), sessionID)
	require.NoError(t, err)
	for rows.Next() {
		require.False(t, s.row, "two session rows for %s", sessionID)
		require.NoError(t, rows.Scan(&s.turnCount))
		s.row = true
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	rows, err = b.DB().QueryContext(ctx, b.db.Rebind(`SELECT seq, pos, turn_id FROM `+MessagesTable+` WHERE session_id = ? ORDER BY seq, pos`), sessionID)
	require.NoError(t, err)
	for rows.Next() {
		var m storedMessage
		require.NoError(t, rows.Scan(&m.seq, &m.pos, &m.turnID))
		s.messages = append(s.messages, m)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	return s
}

// kept reports whether s is exactly one stored turn, turnID.
func (s storedSession) kept(turnID string) bool {
	want := []storedMessage{{1, 0, turnID}, {1, 1, turnID}}
	return s.row && s.turnCount == 1 && fmt.Sprint(s.messages) == fmt.Sprint(want)
}

// gone reports whether nothing of the session is stored.
func (s storedSession) gone() bool { return !s.row && len(s.messages) == 0 }

// inconsistency describes how s is neither gone nor exactly the turn, or
// returns "".
func (s storedSession) inconsistency(turnID string) string {
	switch {
	case s.gone() || s.kept(turnID):
		return ""
	case s.row && len(s.messages) == 0:
		return fmt.Sprintf("session row (turn_count %d) without messages: an acknowledged turn lost", s.turnCount)
	case !s.row:
		return fmt.Sprintf("%d messages without a session row", len(s.messages))
	default:
		return fmt.Sprintf("turn_count %d with messages %v", s.turnCount, s.messages)
	}
}

// checkRaceRound checks the state one round of a save racing a clear left
// behind, and that LoadWindow agrees with it; it returns the inconsistency
// found ("" for none) and whether the turn was kept.
func checkRaceRound(t *testing.T, b *DataFlowBackend, sessionID, turnID string) (string, bool) {
	t.Helper()
	s := readStored(t, b, sessionID)
	if bad := s.inconsistency(turnID); bad != "" {
		return bad, false
	}
	w, err := readWindow(context.Background(), b, sessionID, 10)
	require.NoError(t, err)
	if s.kept(turnID) {
		assert.Equal(t, 1, w.TurnCount, "%s: LoadWindow turn count; the tables hold one turn", sessionID)
		if assert.Len(t, w.Turns, 1, "%s: LoadWindow turns", sessionID) {
			assert.Equal(t, turnID, w.Turns[0].ID)
			assert.Equal(t, "user says", w.Turns[0].User)
			assert.Equal(t, "agent says", w.Turns[0].Agent)
		}
		return "", true
	}
	assert.Equal(t, driver.Window{}, w, "%s: LoadWindow of a cleared session", sessionID)
	return "", false
}

// raceRound starts a SaveTurn and a clear of a new session together and
// waits for both; stagger varies which one starts first. The clear sleeps
// for pause after its first statement, widening the window in which the
// save can run between its statements.
func raceRound(t *testing.T, b *DataFlowBackend, clear clearFunc, sessionID, turnID string, stagger int, pause time.Duration) (saveErr, clearErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang fails, not stalls
	defer cancel()
	probe := &clearProbe{afterFirst: func() { time.Sleep(pause) }}
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-start
		if stagger == 1 {
			time.Sleep(time.Millisecond)
		}
		saveErr = storeTurn(ctx, b, sessionID, driver.Turn{ID: turnID, User: "user says", Agent: "agent says"})
	}()
	go func() {
		defer wg.Done()
		<-start
		if stagger == 2 {
			time.Sleep(time.Millisecond)
		}
		clearErr = clear(context.WithValue(ctx, clearProbeKey{}, probe), b, sessionID)
	}()
	close(start)
	wg.Wait()
	require.True(t, probe.fired.Load(), "the probe never ran: does the hook see the clear's context?")
	return saveErr, clearErr
}

// A ClearSession racing the first SaveTurn of a session leaves either
// nothing or exactly the saved turn: never a session row whose turn is
// gone (the previous release on PostgreSQL lost an acknowledged turn so),
// nor messages without their session row.
func TestDataFlowBackendClearRacesFirstSave(t *testing.T) {
	const rounds = 300
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b := newRaceEnv(t, d)
		var kept, cleared int
		for i := range rounds {
			id, turnID := fmt.Sprintf("race-%03d", i), fmt.Sprintf("turn-%03d", i)
			saveErr, clearErr := raceRound(t, b, realClear, id, turnID, i%3, 3*time.Millisecond)
			require.NoError(t, saveErr, "round %d: SaveTurn", i)
			require.NoError(t, clearErr, "round %d: ClearSession", i)
			bad, k := checkRaceRound(t, b, id, turnID)
			require.Empty(t, bad, "round %d: SaveTurn returned nil, and the tables hold: %s", i, bad)
			if k {
				kept++
			} else {
				cleared++
			}
		}
		t.Logf("%d rounds: the turn kept (clear first) %d, cleared (save first) %d", rounds, kept, cleared)
		// Both orders must have happened, or the test raced nothing.
		assert.Positive(t, kept, "no round ran the clear before the save")
		assert.Positive(t, cleared, "no round ran the save before the clear")
	})
}

// The schedule that lost a turn in the previous release, forced: the clear
// runs its first statement, then waits while the first save of the session
// runs. With the old logic on PostgreSQL the save commits in between, and
// the clear's second statement deletes its messages but not its session
// row: every round breaks. With the lock ClearSession takes now, the save
// waits for the clear, on both dialects, and is kept. On SQLite BEGIN
// IMMEDIATE serializes the two, so even the old logic cannot break.
func TestDataFlowBackendClearFirstSaveSchedule(t *testing.T) {
	const rounds = 5
	for _, tc := range []struct {
		name  string
		clear clearFunc
	}{
		{"ClearSession", realClear},
		{"previous release", oldClear},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
				wantBroken := tc.name == "previous release" && d.Name == "pg"
				// When the save must wait for the clear, the clear gives it
				// a while to finish anyway, which it must not. When it can
				// run through, the clear waits for it to finish.
				wait := 100 * time.Millisecond
				if wantBroken {
					wait = 10 * time.Second
				}
				b := newRaceEnv(t, d)
				for i := range rounds {
					id, turnID := fmt.Sprintf("sched-%d", i), fmt.Sprintf("turn-%d", i)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					clearStarted, saveDone := make(chan struct{}), make(chan struct{})
					var savedFirst atomic.Bool
					var once sync.Once
					release := func() { once.Do(func() { close(clearStarted) }) }
					probe := &clearProbe{afterFirst: func() {
						release()
						select {
						case <-saveDone:
							savedFirst.Store(true)
						case <-time.After(wait):
						}
					}}
					var saveErr error
					go func() {
						defer close(saveDone)
						<-clearStarted
						saveErr = storeTurn(ctx, b, id, driver.Turn{ID: turnID, User: "user says", Agent: "agent says"})
					}()
					clearErr := tc.clear(context.WithValue(ctx, clearProbeKey{}, probe), b, id)
					release() // should the clear fail before its probe
					<-saveDone
					cancel()
					require.NoError(t, clearErr, "round %d: clear", i)
					require.NoError(t, saveErr, "round %d: SaveTurn", i)
					bad, kept := checkRaceRound(t, b, id, turnID)
					if wantBroken {
						require.True(t, savedFirst.Load(), "round %d: the save did not commit within the clear", i)
						assert.Equal(t, "session row (turn_count 1) without messages: an acknowledged turn lost", bad,
							"round %d: the previous release's clear did not lose the turn", i)
						continue
					}
					assert.False(t, savedFirst.Load(), "round %d: the save committed inside the clear's transaction", i)
					assert.Empty(t, bad, "round %d: the tables hold: %s", i, bad)
					assert.True(t, kept, "round %d: the save ran after the clear, yet its turn is gone", i)
				}
			})
		})
	}
}
