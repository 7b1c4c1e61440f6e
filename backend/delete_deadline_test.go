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
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// stallHook makes the n-th delete of messages of a context it marks wait
// until that context ends: a deadline that expires mid-run.
type stallHook struct {
	at      atomic.Int64 // the delete to stall (1 = the first); 0: none
	deletes atomic.Int64
	stalled atomic.Bool
}

type stallKey struct{}

var _ bun.QueryHook = (*stallHook)(nil)

func (h *stallHook) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	if ctx.Value(stallKey{}) == nil || !strings.HasPrefix(ev.Query, "DELETE FROM "+MessagesTable) {
		return ctx
	}
	if h.deletes.Add(1) == h.at.Load() {
		h.stalled.Store(true)
		<-ctx.Done()
	}
	return ctx
}

func (*stallHook) AfterQuery(context.Context, *bun.QueryEvent) {}

// A DeleteUser or Expire cut off by its deadline mid-run returns what its
// committed batches deleted with an error, leaves every session whole or
// gone, and a second run deletes the rest (issue 16, item 5). The memory's
// DeleteUser and Expire return the backend's report with its error.
func TestDeleteCutOffByDeadline(t *testing.T) {
	// Batches of 5 rather than driver.DeleteBatch, so that a batch is
	// quick under -race and the deadline short.
	const sessions, batch = 13, 5 // three batches
	for _, op := range []string{"deleteuser", "expire"} {
		t.Run(op, func(t *testing.T) {
			dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
				ctx := context.Background()
				hook := &stallHook{}
				db, err := dataflow.Open(ctx, d.URL(t), dataflow.WithQueryHook(hook))
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, db.Close()) })
				b, err := NewDataFlowBackend(db)
				require.NoError(t, err)
				m := newMemory(t, b).ForTenant("cut")
				for i := range sessions {
					id := fmt.Sprintf("s%03d", i)
					require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: id, User: "ada"}))
					require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{ID: "t1", User: "q", Agent: "a"}))
					require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{ID: "t2", User: "q2", Agent: "a2"}))
				}
				run := func(ctx context.Context) (driver.DeleteReport, error) {
					var r driver.DeleteReport
					var err error
					if op == "expire" {
						r, _, err = b.DeleteSessions(ctx, "cut", nil, time.Now().Add(time.Hour), batch)
					} else {
						user := "ada"
						r, _, err = b.DeleteSessions(ctx, "cut", &user, time.Time{}, batch)
					}
					return r, err
				}

				hook.at.Store(2) // the second batch's delete waits out the deadline
				const deadline = time.Second
				cut, cancel := context.WithTimeout(context.WithValue(ctx, stallKey{}, true), deadline)
				began := time.Now()
				first, err := run(cut)
				cancel()
				took := time.Since(began)
				require.True(t, hook.stalled.Load(), "the run reached its second batch")
				require.Error(t, err, "a run cut off by its deadline returns an error")
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.Less(t, took, deadline+time.Second, "it returned soon after its deadline")
				assert.Equal(t, driver.DeleteReport{Sessions: batch, Messages: 4 * batch}, first,
					"the report counts the batch committed before the deadline")

				// Every session is whole or gone; the tables agree.
				left := 0
				for i := range sessions {
					id := fmt.Sprintf("s%03d", i)
					info, err := m.SessionInfo(ctx, id)
					if errors.Is(err, driver.ErrSessionNotFound) {
						continue
					}
					require.NoError(t, err)
					left++
					assert.Equal(t, 2, info.TurnCount, "%s is whole", id)
					assert.Len(t, wholeHistory(t, m, id), 2, "%s is whole", id)
				}
				assert.Equal(t, sessions-first.Sessions, left, "sessions left are those not reported")
				assertNoOrphans(t, b)

				if op == "deleteuser" {
					// Until it is run again, a save into a session it
					// deleted is refused: the erasure is not finished.
					err := m.SaveTurn(ctx, "s000", driver.Turn{ID: "t3", User: "too", Agent: "soon"})
					require.ErrorIs(t, err, driver.ErrSessionDeleted)
				}

				// Running it again finishes the job.
				hook.at.Store(0)
				second, err := run(ctx)
				require.NoError(t, err)
				assert.Equal(t, driver.DeleteReport{Sessions: left, Messages: 4 * left}, second)
				p, err := m.ListSessions(ctx, driver.SessionQuery{})
				require.NoError(t, err)
				assert.Empty(t, p.Sessions)
				assertNoOrphans(t, b)

				// After it returned, a save starts a new, unowned session.
				require.NoError(t, m.SaveTurn(ctx, "s000", driver.Turn{ID: "t3", User: "new", Agent: "session"}))
				info, err := m.SessionInfo(ctx, "s000")
				require.NoError(t, err)
				assert.Equal(t, "", info.User)
				assert.Equal(t, 1, info.TurnCount)
			})
		})
	}
}
