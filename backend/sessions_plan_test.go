package backend

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// Issue 10, listing: one indexed query per page, its plan shown, at a few
// thousand sessions always and at 100,000 per tenant with TURNKEEP_SCALE=1:
//
//	TURNKEEP_SCALE=1 go test ./backend -run TestListSessionsPlan -v
//
// (tests/sessions_bench_test.go measures what a page costs where it falls.)

// listOwners own a tenant's listed sessions in turn, so that each owns a
// tenth of them.
var listOwners = []string{"ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo"}

// listEpoch is the update time of the first listed session; listUpdated
// spreads the others over about 71 minutes.
var listEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// listUpdated is session i's update time: distinct for every i (a
// multiplication by an odd number is a bijection modulo 2^32), whole
// microseconds as a save stores them, and in an order that is not the
// order the rows were written in, as sessions written long ago are
// updated again.
func listUpdated(i int) time.Time {
	return listEpoch.Add(time.Duration(uint32(i)*2654435761) * time.Microsecond)
}

// fillListing stores sessions first to first+n-1 of tenant, shaped as
// saves leave them (owner, title, counts, counted), in bulk.
func fillListing(t testing.TB, b *DataFlowBackend, tenant string, first, n int) {
	t.Helper()
	ctx := context.Background()
	const chunk = 5_000
	for s := first; s < first+n; s += chunk {
		rows := make([]SessionRow, 0, chunk)
		for i := s; i < min(s+chunk, first+n); i++ {
			rows = append(rows, SessionRow{
				ID: driver.SessionKey(tenant, fmt.Sprintf("s-%07d", i)), Tenant: tenant,
				UserID: listOwners[i%len(listOwners)], Title: fmt.Sprintf("chat number %d", i),
				TurnCount: 10, Version: 1, Tokens: 200, Counted: 1,
				CreatedAt: listEpoch, UpdatedAt: listUpdated(i),
			})
		}
		err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			return b.sessions.WithTx(tx).BulkCreate(ctx, rows)
		}, b.sessions)
		require.NoError(t, err)
	}
}

// analyze refreshes the planner's statistics, as a maintained database
// has them.
func analyze(t testing.TB, b *DataFlowBackend) {
	t.Helper()
	q := "ANALYZE"
	switch b.db.Dialect() {
	case "pg":
		q = "VACUUM (ANALYZE) " + SessionsTable
	case "mysql":
		q = "ANALYZE TABLE " + SessionsTable
	}
	_, err := b.db.ExecContext(context.Background(), q)
	require.NoError(t, err)
}

// listShape is one of ListSessions' statements: with or without an owner,
// first page or after a cursor.
type listShape struct {
	name  string
	user  string
	after bool
}

var listShapes = []listShape{
	{"tenant first page", "", false},
	{"tenant after cursor", "", true},
	{"owner first page", "bob", false},
	{"owner after cursor", "bob", true},
}

// walkListing pages through the listing of q with pages of limit, checks
// that it is every session of the query once, newest first, and returns
// the cursors after each page and the sessions in order.
func walkListing(t testing.TB, b *DataFlowBackend, tenant string, q driver.SessionQuery, want int) (cursors []string, listed []driver.SessionInfo) {
	t.Helper()
	ctx := context.Background()
	for {
		p, err := b.ListSessions(ctx, tenant, q)
		require.NoError(t, err)
		listed = append(listed, p.Sessions...)
		if p.Next == "" {
			break
		}
		require.Len(t, p.Sessions, q.Limit, "a page before the last is full")
		cursors = append(cursors, p.Next)
		q.After = p.Next
	}
	require.Len(t, listed, want, "sessions listed")
	for i := 1; i < len(listed); i++ {
		prev, cur := listed[i-1], listed[i]
		if !cur.UpdatedAt.Before(prev.UpdatedAt) {
			require.Failf(t, "not newest first", "session %d (%s, %v) after %s (%v)", i, cur.ID, cur.UpdatedAt, prev.ID, prev.UpdatedAt)
		}
		if q.User != "" {
			require.Equal(t, q.User, cur.User)
		}
	}
	return cursors, listed
}

// explainList returns the plan of the list statement named name with
// args, one line per plan node.
func explainList(t testing.TB, b *DataFlowBackend, name string, args ...any) string {
	t.Helper()
	st := b.stmt(name, func() *dataflow.Stmt {
		require.FailNow(t, "no statement "+name+": run ListSessions in that shape first")
		return nil
	})
	return strings.Join(explainQuery(t, b, planPrefix(b), st.String(), args...), "\n")
}

// TestListSessionsPlan lists a tenant's sessions, its own and an owner's,
// first page and after a cursor, among another tenant's: each page is one
// statement, and its plan a backward range scan of the owner or tenant
// index, bounded by the cursor, with no full scan and no sort.
func TestListSessionsPlan(t *testing.T) {
	sizes := []int{3_000}
	if os.Getenv("TURNKEEP_SCALE") == "1" {
		sizes = append(sizes, 100_000)
	}
	const tenant, other, limit = "acme", "other", 50
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, rec := newEnv(t, d)
		// The backend makes the table and its indexes.
		_, err := b.ListSessions(ctx, tenant, driver.SessionQuery{Limit: limit})
		require.NoError(t, err)
		filled := 0
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%d-sessions", n), func(t *testing.T) {
				start := time.Now()
				fillListing(t, b, tenant, filled, n-filled)
				fillListing(t, b, other, filled/4, (n-filled)/4)
				filled = n
				analyze(t, b)
				t.Logf("%s: %d sessions of %q and %d of %q loaded and analyzed in %v",
					d.Name, n, tenant, n/4, other, time.Since(start).Round(time.Millisecond))

				// Every session once, newest first; an owner's are exactly
				// a tenth.
				tenantCursors, listed := walkListing(t, b, tenant, driver.SessionQuery{Limit: limit}, n)
				ownerCursors, _ := walkListing(t, b, tenant, driver.SessionQuery{User: "bob", Limit: limit}, n/len(listOwners))

				// One statement per page, wherever it falls.
				for _, c := range []struct {
					name string
					q    driver.SessionQuery
				}{
					{"first page", driver.SessionQuery{Limit: limit}},
					{"middle page", driver.SessionQuery{Limit: limit, After: tenantCursors[len(tenantCursors)/2]}},
					{"last page", driver.SessionQuery{Limit: limit, After: tenantCursors[len(tenantCursors)-1]}},
					{"owner first page", driver.SessionQuery{User: "bob", Limit: limit}},
					{"owner middle page", driver.SessionQuery{User: "bob", Limit: limit, After: ownerCursors[len(ownerCursors)/2]}},
					{"owner last page", driver.SessionQuery{User: "bob", Limit: limit, After: ownerCursors[len(ownerCursors)-1]}},
				} {
					rec.take()
					p, err := b.ListSessions(ctx, tenant, c.q)
					require.NoError(t, err)
					require.NotEmpty(t, p.Sessions, c.name)
					kinds := byKind(rec.take())
					assert.Empty(t, kinds[kindCatalog], "%s: catalog statements", c.name)
					assert.Empty(t, kinds[kindDDL], "%s: DDL statements", c.name)
					assert.Empty(t, kinds[kindTx], "%s: transaction statements", c.name)
					if assert.Len(t, kinds[kindData], 1, "%s: statements %q", c.name, kinds[kindData]) {
						assert.Regexp(t, `^SELECT .* FROM "?turnkeep_sessions"? WHERE tenant = `, oneLine(kinds[kindData][0]), c.name)
					}
				}

				// The plans, with the arguments a page binds: the cursor
				// of the middle page.
				mid := listed[len(listed)/2]
				at := time.UnixMicro(mid.UpdatedAt.UnixMicro()).UTC()
				key := driver.SessionKey(tenant, mid.ID)
				for _, s := range listShapes {
					t.Run(s.name, func(t *testing.T) {
						args := []any{tenant}
						if s.user != "" {
							args = append(args, s.user)
						}
						if s.after {
							args = append(args, at, key)
						}
						args = append(args, limit+1)
						plan := explainList(t, b, fmt.Sprintf("list/%t/%t", s.user != "", s.after), args...)
						t.Logf("plan:\n%s", plan)
						index := SessionsTable + "_tenant_idx"
						if s.user != "" {
							index = ownerIdx
						}
						if d.Name == "pg" {
							assertPGListPlan(t, plan, index, s.user != "", s.after)
						} else if d.Name == "mysql" {
							assertMySQLListPlan(t, plan, index)
						} else {
							assertSQLiteListPlan(t, plan, index, s.user != "", s.after)
						}
					})
				}
			})
		}
	})
}

// assertSQLiteListPlan checks a SQLite plan: one search of index bounded
// by the tenant (owner) and the cursor, in the index's order.
func assertSQLiteListPlan(t *testing.T, plan, index string, user, after bool) {
	t.Helper()
	cond := `tenant=\?`
	if user {
		cond += ` AND user_id=\?`
	}
	if after {
		cond += ` AND \(updated_at,id\)<\(\?,\?\)`
	}
	assert.Regexp(t, regexp.MustCompile(`(?m)^SEARCH turnkeep_sessions USING INDEX `+index+` \(`+cond+`\)$`), plan,
		"a range of %s bounded by the tenant (owner, cursor)", index)
	assert.NotRegexp(t, `(?m)^SCAN `, plan, "a full scan")
	assert.NotContains(t, plan, "TEMP B-TREE", "a sort")
	assert.Equal(t, 1, len(strings.Split(plan, "\n")), "one step")
}

// assertPGListPlan checks a PostgreSQL plan: a limit over a backward scan
// of index, its condition the tenant (owner) and the cursor.
func assertPGListPlan(t *testing.T, plan, index string, user, after bool) {
	t.Helper()
	lines := strings.Split(plan, "\n")
	assert.Regexp(t, `^Limit\b`, lines[0], "a limit on top")
	i := indexOf(lines, regexp.MustCompile(`Index Scan Backward using `+index+` on turnkeep_sessions\b`))
	if assert.GreaterOrEqual(t, i, 0, "a backward scan of %s", index) && assert.Less(t, i+1, len(lines)) {
		// The arguments are sent as literals (pgx's exec mode), so the
		// plan is the one a page runs; the condition is checked by column.
		cond := lines[i+1]
		assert.Contains(t, cond, "Index Cond: ", "the scan is bounded")
		assert.Contains(t, cond, "(tenant)::text = ", "the scan is bounded by the tenant")
		assert.Equal(t, user, strings.Contains(cond, "(user_id)::text = "), "the scan is bounded by the owner: %t", user)
		assert.Equal(t, after, strings.Contains(cond, "(ROW(updated_at, (id)::text) < ROW("), "the scan is bounded by the cursor: %t", after)
	}
	assert.NotContains(t, plan, "Seq Scan", "a full scan")
	assert.NotRegexp(t, `\bSort\b`, plan, "a sort")
	assert.NotContains(t, plan, "Bitmap", "a bitmap scan (needs a sort to order rows)")
	assert.NotContains(t, plan, "Filter:", "rows read and thrown away")
}
