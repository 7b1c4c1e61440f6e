package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// planNode is a node of a PostgreSQL plan in JSON.
type planNode struct {
	Type  string     `json:"Node Type"`
	Loops int        `json:"Actual Loops"`
	Plans []planNode `json:"Plans"`
}

// find returns the first node of the type, depth first, or nil.
func (n *planNode) find(typ string) *planNode {
	if n.Type == typ {
		return n
	}
	for i := range n.Plans {
		if f := n.Plans[i].find(typ); f != nil {
			return f
		}
	}
	return nil
}

// A PostgreSQL search of a tenant or an owner reads the scope's newest
// messages first, and when searchCandidates of them hold the words, it
// answers from those and never runs the GIN bitmap scan, which reads a
// word's whole posting list (postgresStore.searchStmt). A word with fewer
// matches there is found by the GIN scan. Both find only the scope's
// messages, each holding every word.
func TestPGSearchRecentFirst(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		if d.Name != "pg" {
			t.Skip("PostgreSQL's search statement")
		}
		ctx := context.Background()
		b, _ := newEnv(t, d)
		const common, rare, turns = "ubiquitous", "zephyrine", searchCandidates/2 + 20
		require.NoError(t, b.CreateSession(ctx, driver.SessionKey("acme", "owned"), driver.SessionInfo{ID: "owned", User: "ada"}))
		for _, key := range []string{driver.SessionKey("acme", "owned"), driver.SessionKey("acme", "b"), driver.SessionKey("other", "c")} {
			for i := range turns {
				user := fmt.Sprintf("question %d %s", i, common)
				if i%50 == 7 {
					user += " " + rare
				}
				require.NoError(t, storeTurn(ctx, b, key, driver.Turn{User: user, Agent: "answer " + common + " " + key}))
			}
		}
		// The "other" tenant's session was saved last: a scope's read of
		// its newest sessions must still not reach it.
		ginRan := func(q driver.SearchQuery, tenant string) bool {
			t.Helper()
			terms, err := driver.QueryTerms(q.Text)
			require.NoError(t, err)
			args := append(b.store.searchArgs(tenant, terms, q, turns), searchCandidates) // through: every turn of a scoped session
			plan, _ := explainStmt(t, b, b.store.searchStmt(q), args)
			var doc []struct{ Plan planNode }
			require.NoError(t, json.Unmarshal([]byte(plan), &doc))
			app := doc[0].Plan.find("Append")
			require.NotNil(t, app, "no UNION ALL in the plan: %s", plan)
			require.GreaterOrEqual(t, len(app.Plans), 2, "the UNION ALL's branches: %s", plan)
			// The branches after the first read the GIN index (a
			// sequential scan, in a table this small).
			ran := false
			for _, p := range app.Plans[1:] {
				ran = ran || p.Loops > 0
			}
			return ran
		}
		for _, q := range []driver.SearchQuery{{Text: common}, {Text: common, User: "ada"}, {Text: common, SessionID: "b"}} {
			assert.False(t, ginRan(q, "acme"), "%+v: %d matches among the newest rows, but the GIN scan ran", q, 2*turns)
		}
		for _, q := range []driver.SearchQuery{{Text: rare}, {Text: rare + " " + common}, {Text: rare, User: "ada"}, {Text: rare, SessionID: "b"}} {
			assert.True(t, ginRan(q, "acme"), "%+v: a rare word, and the GIN scan did not run", q)
		}

		for _, tc := range []struct {
			q    driver.SearchQuery
			want int
		}{
			{driver.SearchQuery{Text: common, Limit: 50}, 50},
			{driver.SearchQuery{Text: common, User: "ada", Limit: 50}, 50},
			{driver.SearchQuery{Text: rare, Limit: 50}, 2 * (turns/50 + 1)},
			{driver.SearchQuery{Text: rare, User: "ada", Limit: 50}, turns/50 + 1},
			{driver.SearchQuery{Text: common + " nowhere", Limit: 50}, 0},
			{driver.SearchQuery{Text: common, SessionID: "b", Limit: 50}, 50},
			{driver.SearchQuery{Text: rare, SessionID: "b", Limit: 50}, turns/50 + 1},
			// A limit past the candidates: the recent read fills it, and
			// where it cannot (480 matches), the GIN scan finds them all.
			{driver.SearchQuery{Text: common, Limit: 300}, 300},
			{driver.SearchQuery{Text: common, Limit: 1000}, 4 * turns},
			{driver.SearchQuery{Text: common, SessionID: "b", Limit: 1000}, 2 * turns},
		} {
			hits, err := b.Search(ctx, "acme", tc.q)
			require.NoError(t, err)
			assert.Lenf(t, hits, tc.want, "%+v", tc.q)
			for _, h := range hits {
				assert.NotEqual(t, "c", h.SessionID, "a hit of another tenant")
				if tc.q.User != "" {
					assert.Equal(t, "owned", h.SessionID, "a hit of another owner")
				}
				if tc.q.SessionID != "" {
					assert.Equal(t, tc.q.SessionID, h.SessionID, "a hit of another session")
				}
				for _, w := range strings.Fields(tc.q.Text) {
					assert.Contains(t, h.Message.Content, w)
				}
			}
		}
	})
}
