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

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// oneTurn is an import's next yielding turn once, then io.EOF.
func oneTurn(turn driver.Turn) func() (driver.PreparedTurn, error) {
	done := false
	return func() (driver.PreparedTurn, error) {
		if done {
			return driver.PreparedTurn{}, io.EOF
		}
		done = true
		return driver.PreparedTurn{Turn: turn}, nil
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
		var landed landings
		for r := range 25 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			tenant, user := fmt.Sprintf("ti%d", r), fmt.Sprintf("u%d", r)
			key := driver.SessionKey(tenant, "s")
			require.NoError(t, a.CreateSession(ctx, key, driver.SessionInfo{ID: "s", User: user}))
			require.NoError(t, storeTurn(ctx, a, key, raceTurn("o1")))

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
				ierr = b.Import(ctx, key, driver.SessionInfo{ID: "s"}, oneTurn(raceTurn("n1")))
			}()
			close(start)
			wg.Wait()
			cancel()
			require.NoError(t, derr, "round %d", r)
			got := historyOf(t, a, key)
			switch {
			case ierr != nil:
				require.True(t, errors.Is(ierr, driver.ErrSessionDeleted) || errors.Is(ierr, driver.ErrSessionOwned),
					"round %d: import returned %v; want nil, ErrSessionDeleted or ErrSessionOwned", r, ierr)
				require.Empty(t, got, "round %d: the import failed, yet the session holds %q", r, got)
			case slices.Equal(got, []string{"n1/2"}):
				if importBegan.Before(deleteEnd.Add(-beganSlack)) {
					landed.add(t, r, deleteEnd.Sub(importBegan)) // an import's turn in a new session
				}
			default:
				t.Errorf("round %d: the import returned nil and the history is %q", r, got)
			}
		}
		require.False(t, landed.broken(), "imports begun before DeleteUser returned survived it: %+v", landed)
	})
}

// turnsOf is an import's next yielding turns in order, then io.EOF.
func turnsOf(turns ...driver.Turn) func() (driver.PreparedTurn, error) {
	i := 0
	return func() (driver.PreparedTurn, error) {
		if i == len(turns) {
			return driver.PreparedTurn{}, io.EOF
		}
		i++
		return driver.PreparedTurn{Turn: turns[i-1]}, nil
	}
}

// TestImportSameFileFromTwoServers: two servers importing the same file
// into the same new session at once both succeed, and the session holds
// each turn once.
func TestImportSameFileFromTwoServers(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		a, b := twoServers(t, d)
		ts := time.Now().UTC().Truncate(time.Second)
		file := func() func() (driver.PreparedTurn, error) {
			var turns []driver.Turn
			for _, id := range []string{"t1", "t2", "t3"} {
				turn := raceTurn(id)
				turn.Timestamp = ts
				turns = append(turns, turn)
			}
			return turnsOf(turns...)
		}
		for r := range 15 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			key := driver.SessionKey(fmt.Sprintf("tf%d", r), "s")
			info := driver.SessionInfo{ID: "s", User: "u", Title: "same"}
			var wg sync.WaitGroup
			var errA, errB error
			wg.Go(func() { errA = a.Import(ctx, key, info, file()) })
			wg.Go(func() { errB = b.Import(ctx, key, info, file()) })
			wg.Wait()
			cancel()
			require.NoError(t, errA, "round %d", r)
			require.NoError(t, errB, "round %d", r)
			require.Equal(t, []string{"t1/2", "t2/2", "t3/2"}, historyOf(t, a, key), "round %d", r)
		}
	})
}

// TestImportHeaderRacingDeleteUser: an import of a file with a title and
// no turns, begun before a DeleteUser of the session returned, does not
// recreate the erased session, unowned, holding that title: it is
// refused with a typed error or began after DeleteUser returned.
func TestImportHeaderRacingDeleteUser(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		a, b := twoServers(t, d)
		var landed landings
		for r := range 25 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			tenant, user := fmt.Sprintf("th%d", r), fmt.Sprintf("u%d", r)
			key := driver.SessionKey(tenant, "s")
			require.NoError(t, a.CreateSession(ctx, key, driver.SessionInfo{ID: "s", User: user}))
			require.NoError(t, storeTurn(ctx, a, key, raceTurn("o1")))

			var wg sync.WaitGroup
			var ierr, derr error
			var deleteEnd, importBegan time.Time
			start := make(chan struct{})
			wg.Go(func() {
				<-start
				_, _, derr = a.DeleteSessions(ctx, tenant, &user, time.Time{}, 100)
				deleteEnd = time.Now()
			})
			wg.Go(func() {
				<-start
				importBegan = time.Now()
				ierr = b.Import(ctx, key, driver.SessionInfo{ID: "s", Title: "the erased user's words"}, turnsOf())
			})
			close(start)
			wg.Wait()
			cancel()
			require.NoError(t, derr, "round %d", r)
			info, err := a.SessionInfo(context.Background(), key)
			if ierr != nil {
				require.True(t, errors.Is(ierr, driver.ErrSessionDeleted) || errors.Is(ierr, driver.ErrSessionOwned),
					"round %d: import returned %v", r, ierr)
				require.ErrorIs(t, err, driver.ErrSessionNotFound, "round %d: the import failed, yet the session is %+v", r, info)
				continue
			}
			if err == nil && info.Title != "" && importBegan.Before(deleteEnd.Add(-beganSlack)) {
				landed.add(t, r, deleteEnd.Sub(importBegan)) // its title in a new session
			}
		}
		require.False(t, landed.broken(), "imports begun before DeleteUser returned left the erased user's words: %+v", landed)
	})
}

// TestCreateUnownedRacingDeleteUser: CreateSession without an owner but
// with a title, begun before a DeleteUser of the session returned, does
// not recreate the erased session holding that title.
func TestCreateUnownedRacingDeleteUser(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		a, b := twoServers(t, d)
		var landed landings
		for r := range 25 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			tenant, user := fmt.Sprintf("tc%d", r), fmt.Sprintf("u%d", r)
			key := driver.SessionKey(tenant, "s")
			require.NoError(t, a.CreateSession(ctx, key, driver.SessionInfo{ID: "s", User: user}))
			require.NoError(t, storeTurn(ctx, a, key, raceTurn("o1")))
			var wg sync.WaitGroup
			var cerr, derr error
			var deleteEnd, began time.Time
			start := make(chan struct{})
			wg.Go(func() {
				<-start
				_, _, derr = a.DeleteSessions(ctx, tenant, &user, time.Time{}, 100)
				deleteEnd = time.Now()
			})
			wg.Go(func() {
				<-start
				began = time.Now()
				cerr = b.CreateSession(ctx, key, driver.SessionInfo{ID: "s", Title: "the erased user's words"})
			})
			close(start)
			wg.Wait()
			cancel()
			require.NoError(t, derr, "round %d", r)
			info, err := a.SessionInfo(context.Background(), key)
			if cerr == nil && err == nil && info.Title != "" && began.Before(deleteEnd.Add(-beganSlack)) {
				landed.add(t, r, deleteEnd.Sub(began))
			}
		}
		require.False(t, landed.broken(), "creates begun before DeleteUser returned left the title: %+v", landed)
	})
}
