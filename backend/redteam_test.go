package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// oneTurn is an import's next yielding turn once, then io.EOF.
func oneTurn(turn memory.Turn) func() (memory.PreparedTurn, error) {
	done := false
	return func() (memory.PreparedTurn, error) {
		if done {
			return memory.PreparedTurn{}, io.EOF
		}
		done = true
		return memory.PreparedTurn{Turn: turn}, nil
	}
}

// TestImportRacingDeleteUser: an import into a session DeleteUser is
// deleting, on another server, either is refused with a typed error or,
// having begun after DeleteUser returned, starts a new session; it never
// leaves the erased user's session recreated, unowned, with the import's
// words, by an import begun before DeleteUser returned.
func TestImportRacingDeleteUser(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		a, b := twoServers(t, d)
		bad := 0
		for r := range 25 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			tenant, user := fmt.Sprintf("ti%d", r), fmt.Sprintf("u%d", r)
			key := memory.SessionKey(tenant, "s")
			require.NoError(t, a.CreateSession(ctx, key, memory.SessionInfo{ID: "s", User: user}))
			require.NoError(t, a.SaveTurn(ctx, key, raceTurn("o1")))

			var wg sync.WaitGroup
			var ierr, derr error
			var deleteEnd, importBegan time.Time
			start := make(chan struct{})
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				_, _, derr = a.DeleteSessions(ctx, tenant, &user, time.Time{}, 100)
				deleteEnd = time.Now()
			}()
			go func() {
				defer wg.Done()
				<-start
				importBegan = time.Now()
				ierr = b.Import(ctx, key, memory.SessionInfo{ID: "s"}, oneTurn(raceTurn("n1")))
			}()
			close(start)
			wg.Wait()
			cancel()
			require.NoError(t, derr, "round %d", r)
			got := historyOf(t, a, key)
			switch {
			case ierr != nil:
				require.True(t, errors.Is(ierr, memory.ErrSessionDeleted) || errors.Is(ierr, memory.ErrSessionOwned),
					"round %d: import returned %v; want nil, ErrSessionDeleted or ErrSessionOwned", r, ierr)
				require.Empty(t, got, "round %d: the import failed, yet the session holds %q", r, got)
			case slices.Equal(got, []string{"n1/2"}):
				if importBegan.Before(deleteEnd.Add(-beganSlack)) {
					bad++
					t.Logf("round %d: an import begun %v before DeleteUser returned left its turn in a new session", r, deleteEnd.Sub(importBegan))
				}
			default:
				t.Errorf("round %d: the import returned nil and the history is %q", r, got)
			}
		}
		require.Zero(t, bad, "imports begun before DeleteUser returned survived it")
	})
}
