package backend

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
)

// Every backend's Search reads a query's limit alike (driver.SearchLimit):
// none is driver.DefaultSearchLimit hits, a limit is at most that many,
// and one below 0 or over driver.MaxListLimit is driver.ErrInvalidQuery.
// Before, a query with no limit found nothing on the MySQL family and in
// process, and every candidate (up to 200) on SQLite and PostgreSQL.
func TestSearchDefaultLimit(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		s := b.(driver.SessionStore)
		const turns = driver.DefaultSearchLimit + 5
		for i := range turns {
			require.NoError(t, storeTurn(ctx, b, "walrus", driver.Turn{
				ID: fmt.Sprintf("t%d", i), User: fmt.Sprintf("where is walrus %d", i), Agent: "on the ice",
			}))
		}
		hits, err := s.Search(ctx, "", driver.SearchQuery{Text: "walrus"})
		require.NoError(t, err)
		assert.Len(t, hits, driver.DefaultSearchLimit, "no limit")
		hits, err = s.Search(ctx, "", driver.SearchQuery{Text: "walrus", SessionID: "walrus"})
		require.NoError(t, err)
		assert.Len(t, hits, driver.DefaultSearchLimit, "no limit, scoped")
		hits, err = s.Search(ctx, "", driver.SearchQuery{Text: "walrus", Limit: 3})
		require.NoError(t, err)
		assert.Len(t, hits, 3, "limit 3")
		for _, limit := range []int{-1, driver.MaxListLimit + 1} {
			_, err := s.Search(ctx, "", driver.SearchQuery{Text: "walrus", Limit: limit})
			assert.ErrorIs(t, err, driver.ErrInvalidQuery, "limit %d", limit)
		}
	})
}
