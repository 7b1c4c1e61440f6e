package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// rejectContent makes the database itself refuse to store a message with
// this content, with a trigger.
const rejectContent = "the database refuses this"

func createRejectTrigger(t *testing.T, b *DataFlowBackend) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, b.sessions.EnsureTable(ctx)) // the tables are created on first use
	require.NoError(t, b.messages.EnsureTable(ctx))
	stmts := []string{`CREATE TRIGGER tk_reject BEFORE INSERT ON ` + MessagesTable + `
WHEN NEW.content = '` + rejectContent + `'
BEGIN SELECT RAISE(ABORT, 'rejected by test trigger'); END`}
	if b.db.Dialect() == "pg" {
		stmts = []string{
			`CREATE FUNCTION tk_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.content = '` + rejectContent + `' THEN RAISE EXCEPTION 'rejected by test trigger'; END IF;
	RETURN NEW;
END $$`,
			`CREATE TRIGGER tk_reject BEFORE INSERT ON ` + MessagesTable + ` FOR EACH ROW EXECUTE FUNCTION tk_reject()`,
		}
	}
	if b.db.Dialect() == "mysql" {
		stmts = []string{`CREATE TRIGGER tk_reject BEFORE INSERT ON ` + MessagesTable + ` FOR EACH ROW
BEGIN
	IF NEW.content = '` + rejectContent + `' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'rejected by test trigger'; END IF;
END`}
	}
	for _, s := range stmts {
		_, err := b.db.ExecContext(ctx, s)
		require.NoError(t, err)
	}
}

// A SaveTurn whose first or second statement fails stores nothing, returns
// the error, and leaves the cached window as it was; the connection and
// the session keep working afterwards.
func TestDataFlowBackendSaveTurnAtomic(t *testing.T) {
	const maxTurns = 3
	type failure struct {
		name    string
		target  string // statement prefix the failure hits
		mode    string // "cancel caller", "cancel statement" or "trigger"
		wantErr error  // nil: any error
	}
	failures := []failure{
		{"caller canceled at message insert", "INSERT INTO " + MessagesTable, "cancel caller", context.Canceled},
		{"caller canceled at session upsert", "INSERT INTO " + SessionsTable, "cancel caller", context.Canceled},
		{"statement canceled at message insert", "INSERT INTO " + MessagesTable, "cancel statement", context.Canceled},
		{"statement canceled at session upsert", "INSERT INTO " + SessionsTable, "cancel statement", context.Canceled},
		{"database rejects the agent message", "", "trigger", nil},
	}
	sessions := []struct {
		name     string
		existing int // turns the session holds before the failure
	}{
		{"existing session", 5},
		{"new session", 0},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, rec := newEnv(t, d)
		createRejectTrigger(t, b)
		for _, f := range failures {
			for _, sc := range sessions {
				for _, via := range []string{"backend", "memory"} {
					t.Run(f.name+"/"+sc.name+"/"+via, func(t *testing.T) {
						bg := context.Background()
						sid := strings.ReplaceAll(f.name+"/"+sc.name+"/"+via, " ", "-")
						m := newMemory(t, b, memory.WithMaxTurns(maxTurns), memory.WithCacheTTL(time.Hour))
						for i := range sc.existing {
							require.NoError(t, m.SaveTurn(bg, sid, driver.Turn{User: fmt.Sprint("u", i), Agent: fmt.Sprint("a", i)}))
						}
						cached := loadContext(t, m, sid) // cached from here on
						require.Equal(t, sc.existing, cached.TurnCount)
						counts := tableCounts(t, b)
						info, infoErr := b.SessionInfo(bg, sid)

						ctx, cancel := context.WithCancel(bg)
						defer cancel()
						var fired atomic.Int32
						target := f.target
						if d.Name == "pg" && target != "" {
							// On PostgreSQL the whole save is one statement:
							// both failures hit it.
							target = "WITH o AS"
						}
						if d.Name == "mysql" && target != "" {
							// On MySQL the whole save is one text that
							// begins and commits its own transaction: both
							// failures hit it.
							target = "SET @tk_seq = NULL"
						}
						rec.arm(func(sctx context.Context, q string) context.Context {
							if target == "" || !strings.HasPrefix(q, target) {
								return sctx
							}
							fired.Add(1)
							if f.mode == "cancel caller" {
								cancel()
								return sctx
							}
							c, cancelStmt := context.WithCancel(sctx)
							cancelStmt()
							return c
						})
						turn := driver.Turn{User: "never stored", Agent: "never stored either", Metadata: map[string]any{"k": "v"}}
						if via == "backend" {
							// Through memory the ID stays generated: a cached
							// window would append such a turn without a read.
							turn.ID = "doomed"
						}
						if f.mode == "trigger" {
							turn.Agent = rejectContent
						}
						var err error
						if via == "backend" {
							err = storeTurn(ctx, b, sid, turn)
						} else {
							err = m.SaveTurn(ctx, sid, turn)
						}
						rec.arm(nil)

						require.Error(t, err, "SaveTurn reported success for a turn that was not stored")
						if f.wantErr != nil {
							assert.ErrorIs(t, err, f.wantErr)
						} else {
							assert.Contains(t, err.Error(), "rejected by test trigger")
						}
						if f.mode != "trigger" {
							assert.EqualValues(t, 1, fired.Load(), "the failure was injected %d times", fired.Load())
						}

						assert.Equal(t, counts, tableCounts(t, b), "row counts (sessions, messages) changed")
						assert.Equal(t, sc.existing, countMessages(t, b, sid)/2, "turns stored for the session")
						gotInfo, gotInfoErr := b.SessionInfo(bg, sid)
						if sc.existing == 0 {
							assert.ErrorIs(t, infoErr, driver.ErrSessionNotFound)
							assert.ErrorIs(t, gotInfoErr, driver.ErrSessionNotFound, "the failed save created the session row")
						} else {
							require.NoError(t, gotInfoErr)
							assert.Equal(t, info, gotInfo, "the session row changed")
						}
						assert.Equal(t, cached, loadContext(t, m, sid), "the cached window changed")
						assert.Equal(t, cached, loadWindow(t, b, sid, maxTurns), "the stored window changed")
						fresh := newMemory(t, b, memory.WithMaxTurns(maxTurns))
						assert.Equal(t, cached, loadContext(t, fresh, sid), "a fresh read-through differs")

						// The same turn saves fine afterwards, once, as the newest.
						turn.Agent = "stored at last"
						require.NoError(t, m.SaveTurn(bg, sid, turn))
						w := loadContext(t, m, sid)
						assert.Equal(t, sc.existing+1, w.TurnCount)
						last := w.Turns[len(w.Turns)-1]
						assert.Equal(t, "never stored", last.User)
						assert.Equal(t, "stored at last", last.Agent)
						assert.Equal(t, loadWindow(t, b, sid, maxTurns), w, "cached window differs from read-through")
						wantSeqs := make([]int64, sc.existing+1)
						for i := range wantSeqs {
							wantSeqs[i] = int64(i + 1)
						}
						assert.Equal(t, wantSeqs, seqs(t, b, sid), "turn sequence has a gap")
					})
				}
			}
		}

		// Failures must not leave a pooled connection inside a transaction:
		// many saves in a row still work, and no stale lock blocks a writer.
		t.Run("connections are clean afterwards", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := range 20 {
				require.NoError(t, storeTurn(ctx, b, "after", driver.Turn{User: fmt.Sprint(i)}))
			}
			assert.Equal(t, 20, loadWindow(t, b, "after", 1).TurnCount)
		})
	})
}

// A failed save on a session whose window a concurrent reader is about to
// cache: the reader never sees the refused turn.
func TestDataFlowBackendFailedSaveNeverVisible(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		createRejectTrigger(t, b)
		m := newMemory(t, b, memory.WithMaxTurns(5), memory.WithCacheTTL(time.Hour))
		require.NoError(t, m.SaveTurn(ctx, "s", driver.Turn{User: "ok"}))
		for i := range 10 {
			err := m.SaveTurn(ctx, "s", driver.Turn{User: fmt.Sprint("bad", i), Agent: rejectContent})
			require.Error(t, err)
			require.False(t, errors.Is(err, driver.ErrInvalidTurn), "the database, not validation, refused it: %v", err)
			if i%3 == 0 {
				m.InvalidateCache("s")
			}
			w := loadContext(t, m, "s")
			require.Equal(t, 1, w.TurnCount)
			require.Equal(t, []string{"ok"}, users(w))
		}
	})
}
