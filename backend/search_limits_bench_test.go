package backend

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// BenchmarkSearchTerms is the figure behind driver.MaxSearchTerms
// (docs/search-limits.md): a tenant-wide search's time against its number
// of distinct terms, over CJK messages whose characters follow a Zipf
// distribution (loadCJK), for the k commonest characters ("common", which
// occur in most messages) and k characters drawn evenly ("random"); SQLite
// always, PostgreSQL when TURNKEEP_POSTGRES_URL is set. 4,000 messages by
// default, 120,000 with TURNKEEP_SCALE=1:
//
//	go test -run '^$' -bench BenchmarkSearchTerms -benchtime 5x ./backend
func BenchmarkSearchTerms(b *testing.B) {
	msgs := 4000
	if os.Getenv("TURNKEEP_SCALE") != "" {
		msgs = 120000
	}
	urls := map[string]string{"sqlite": dbtest.SQLiteURL(b)}
	if os.Getenv("TURNKEEP_POSTGRES_URL") != "" {
		urls["pg"] = dbtest.PostgresURL(b)
	}
	for _, dialect := range []string{"sqlite", "pg"} {
		url, ok := urls[dialect]
		if !ok {
			continue
		}
		ctx := context.Background()
		db, err := dataflow.Open(ctx, url)
		require.NoError(b, err)
		b.Cleanup(func() { db.Close() })
		be, err := NewDataFlowBackend(db)
		require.NoError(b, err)
		m, err := memory.NewPersistentBufferMemory(be, memory.WithCacheTTL(0))
		require.NoError(b, err)
		b.Cleanup(func() { m.Close() })
		m = m.ForTenant("bench")
		require.NoError(b, m.SaveTurn(ctx, "boot", driver.Turn{User: "boot"})) // the tables
		_, err = m.Search(ctx, driver.SearchQuery{Text: "boot"})               // and the search index
		require.NoError(b, err)
		loadCJK(b, be, "bench", msgs)
		for _, k := range []int{8, 16, 32, 64, 128} {
			for _, kind := range []string{"common", "random"} {
				var q strings.Builder
				for i := range k {
					r := cjkPool[i] // the commonest first
					if kind == "random" {
						r = cjkPool[(i*977+131)%len(cjkPool)]
					}
					q.WriteRune(r)
				}
				terms, err := driver.QueryTerms(q.String())
				require.NoError(b, err)
				require.Len(b, terms, k)
				b.Run(fmt.Sprintf("%s/terms=%d/%s", dialect, k, kind), func(b *testing.B) {
					var hits int
					for b.Loop() {
						got, err := m.Search(ctx, driver.SearchQuery{Text: q.String()})
						require.NoError(b, err)
						hits = len(got)
					}
					b.ReportMetric(float64(hits), "hits")
				})
			}
		}
	}
}
