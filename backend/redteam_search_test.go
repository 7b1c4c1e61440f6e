package backend

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// TestCancelledSearchesThenClose: many searches cut off by their
// deadlines at once leave no statement running on the pool soon after,
// and Close afterwards neither hangs nor leaves a search's goroutine
// behind.
func TestCancelledSearchesThenClose(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		before := runtime.NumGoroutine()
		db, err := dataflow.Open(ctx, d.URL(t))
		require.NoError(t, err)
		closed := false
		t.Cleanup(func() {
			if !closed {
				_ = db.Close()
			}
		})
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		require.NoError(t, storeTurn(ctx, b, driver.SessionKey("cjk", "boot"), driver.Turn{User: "boot"}))
		_, err = b.Search(ctx, "cjk", driver.SearchQuery{Text: "boot", Limit: 20})
		require.NoError(t, err)
		loadCJK(t, b, "cjk", 400)
		q := string(cjkPool[:driver.MaxSearchTerms])

		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, time.Duration(i%4)*time.Millisecond)
				defer cancel()
				_, err := b.Search(ctx, "cjk", driver.SearchQuery{Text: q, Limit: 20})
				if err != nil {
					require.ErrorIs(t, err, context.DeadlineExceeded)
				}
			})
		}
		wg.Wait()
		waitIdle(t, b)
		// A search after the cut-off ones still gets a connection.
		ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = b.Search(ctx2, "cjk", driver.SearchQuery{Text: "boot", Limit: 20})
		cancel()
		require.NoError(t, err)

		done := make(chan error, 1)
		go func() { done <- db.Close() }()
		select {
		case err := <-done:
			closed = true
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Close hung after cancelled searches")
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		require.LessOrEqual(t, runtime.NumGoroutine(), before+2, "goroutines left after Close")
	})
}
