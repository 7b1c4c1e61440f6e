package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
)

// Nobody takes a session by guessing its ID: CreateSession on an unowned
// session that holds turns is ErrSessionExists, and taking it is an
// explicit ClaimSession.
func TestCreateSessionDoesNotClaim(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("acme")
		require.NoError(t, m.SaveTurn(ctx, "support-ticket-42", driver.Turn{User: "my card number is 4242", Agent: "noted"}))

		err := m.CreateSession(ctx, driver.SessionInfo{ID: "support-ticket-42", User: "mallory", Title: "mine now"})
		require.ErrorIs(t, err, driver.ErrSessionExists)
		require.NotErrorIs(t, err, driver.ErrSessionOwned)
		info, err := m.SessionInfo(ctx, "support-ticket-42")
		require.NoError(t, err)
		assert.Equal(t, "", info.User, "still unowned")
		assert.Equal(t, "", info.Title, "nothing changed")
		p, err := m.ListSessions(ctx, driver.SessionQuery{User: "mallory"})
		require.NoError(t, err)
		assert.Empty(t, p.Sessions, "mallory lists nothing")

		// An unowned session with no turns takes the owner, as a new one.
		require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "empty", Title: "made unowned"}))
		require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "empty", User: "ada", Title: "ada's"}))
		info, err = m.SessionInfo(ctx, "empty")
		require.NoError(t, err)
		assert.Equal(t, "ada", info.User)
		require.ErrorIs(t, m.CreateSession(ctx, driver.SessionInfo{ID: "empty", User: "mallory"}), driver.ErrSessionOwned)

		// Without a user too: nobody retitles an unowned session that
		// holds turns (only ClaimSession takes it), and it stays unowned.
		require.ErrorIs(t, m.CreateSession(ctx, driver.SessionInfo{ID: "support-ticket-42", Title: "ticket"}), driver.ErrSessionExists)
		info, err = m.SessionInfo(ctx, "support-ticket-42")
		require.NoError(t, err)
		assert.Equal(t, "", info.Title)
		assert.Equal(t, "", info.User)
	})
}

// ClaimSession takes an unowned session, with its turns, for a user;
// another's session is ErrSessionOwned, a missing one ErrSessionNotFound,
// and the claim is confined to the memory's tenant.
func TestClaimSession(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		root := newMemory(t, b)
		m := root.ForTenant("acme")
		require.NoError(t, m.SaveTurn(ctx, "s", driver.Turn{User: "hello", Agent: "hi"}))
		require.NoError(t, root.SaveTurn(ctx, "s", driver.Turn{User: "default tenant's", Agent: "ok"}))

		require.NoError(t, m.ClaimSession(ctx, "s", "ada"))
		info, err := m.SessionInfo(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, "ada", info.User)
		assert.Equal(t, 1, info.TurnCount, "the claim keeps the turns")
		info, err = root.SessionInfo(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, "", info.User, "the default tenant's s is another session")

		require.NoError(t, m.ClaimSession(ctx, "s", "ada"), "claiming one's own session is no change")
		require.ErrorIs(t, m.ClaimSession(ctx, "s", "mallory"), driver.ErrSessionOwned)
		require.ErrorIs(t, m.ClaimSession(ctx, "nope", "ada"), driver.ErrSessionNotFound)
		require.ErrorIs(t, m.ClaimSession(ctx, "s", ""), driver.ErrInvalidUser)
		require.ErrorIs(t, m.ClaimSession(ctx, "", "ada"), driver.ErrInvalidSessionID)
		info, err = m.SessionInfo(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, "ada", info.User)
		p, err := m.ListSessions(ctx, driver.SessionQuery{User: "ada"})
		require.NoError(t, err)
		assert.Equal(t, []string{"s"}, sessionIDsOf(p))
	})
}

// Of claims racing for one session exactly one wins; every other is
// ErrSessionOwned, and the owner is the winner.
func TestClaimSessionRace(t *testing.T) {
	const (
		rounds   = 20
		claimers = 6
	)
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("race")
		for r := range rounds {
			id := fmt.Sprintf("s%d", r)
			require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{User: "x"}))
			var (
				wins, owned atomic.Int64
				winner      atomic.Value
				wg          sync.WaitGroup
				start       = make(chan struct{})
			)
			for c := range claimers {
				wg.Go(func() {
					<-start
					user := fmt.Sprintf("user%d", c)
					switch err := m.ClaimSession(ctx, id, user); {
					case err == nil:
						wins.Add(1)
						winner.Store(user)
					case errors.Is(err, driver.ErrSessionOwned):
						owned.Add(1)
					default:
						t.Errorf("claim by %s: %v", user, err)
					}
				})
			}
			close(start)
			wg.Wait()
			require.Equal(t, int64(1), wins.Load(), "round %d: exactly one claim wins", r)
			require.Equal(t, int64(claimers-1), owned.Load(), "round %d: every other is ErrSessionOwned", r)
			info, err := m.SessionInfo(ctx, id)
			require.NoError(t, err)
			require.Equal(t, winner.Load(), info.User, "round %d", r)
		}
	})
}
