package dataflow_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// stmt is one statement a recorder saw.
type stmt struct {
	Query string
	Args  []any
	Err   error
}

func (s stmt) String() string { return s.Query }

// recorder is a bun.QueryHook that keeps every statement except
// transaction control (BEGIN, COMMIT, ROLLBACK), which the statement budget
// does not count.
type recorder struct {
	mu    sync.Mutex // protects stmts
	stmts []stmt
}

var _ bun.QueryHook = (*recorder)(nil)

func (r *recorder) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (r *recorder) AfterQuery(_ context.Context, ev *bun.QueryEvent) {
	if dbtest.IsTxControl(ev.Query) {
		return
	}
	r.mu.Lock()
	r.stmts = append(r.stmts, stmt{Query: ev.Query, Args: append([]any(nil), ev.QueryArgs...), Err: ev.Err})
	r.mu.Unlock()
}

// reset forgets what was recorded so far.
func (r *recorder) reset() {
	r.mu.Lock()
	r.stmts = nil
	r.mu.Unlock()
}

// all returns a copy of the recorded statements.
func (r *recorder) all() []stmt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stmt(nil), r.stmts...)
}

// counts classifies the recorded statements.
func (r *recorder) counts() counts { return classify(r.all()) }

// createTables counts CREATE TABLE statements for table (not the history
// table's).
func (r *recorder) createTables(table string) int {
	n := 0
	for _, s := range r.all() {
		if isCreateTable(s.Query, table) {
			n++
		}
	}
	return n
}

// counts is how many statements of each kind ran. A statement can be of
// more than one kind (the first-use catalog query names the history table).
type counts struct {
	Total, Catalog, History, DDL int
	Stmts                        []stmt
}

func (c counts) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "total=%d catalog=%d history=%d ddl=%d", c.Total, c.Catalog, c.History, c.DDL)
	for _, s := range c.Stmts {
		b.WriteString("\n\t" + s.Query)
	}
	return b.String()
}

func classify(stmts []stmt) counts {
	c := counts{Total: len(stmts), Stmts: stmts}
	for _, s := range stmts {
		if dbtest.IsCatalog(s.Query) {
			c.Catalog++
		}
		if dbtest.IsHistory(s.Query) {
			c.History++
		}
		if dbtest.IsDDL(s.Query) {
			c.DDL++
		}
	}
	return c
}

func isCreateTable(q, table string) bool {
	return strings.HasPrefix(strings.ToUpper(strings.TrimSpace(q)), "CREATE TABLE") &&
		(strings.Contains(q, `"`+table+`"`) || strings.Contains(q, "`"+table+"`"))
}

// open opens url with opts and closes the DB when the test ends.
func open(t testing.TB, url string, opts ...dataflow.Option) *dataflow.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := dataflow.Open(ctx, url, opts...)
	require.NoError(t, err, "open")
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openRec opens url with a recorder hook added to opts.
func openRec(t testing.TB, url string, opts ...dataflow.Option) (*dataflow.DB, *recorder) {
	t.Helper()
	rec := &recorder{}
	db := open(t, url, append([]dataflow.Option{dataflow.WithQueryHook(rec)}, opts...)...)
	return db, rec
}

// register registers T and fails the test on error.
func register[T any](t testing.TB, db *dataflow.DB, opts ...dataflow.ModelOption) *dataflow.Table[T] {
	t.Helper()
	tbl, err := dataflow.Register[T](db, opts...)
	require.NoError(t, err, "register")
	return tbl
}

// testCtx is a context that ends with the test or after d, whichever is
// first, so a hang fails the test instead of the whole run.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// user is the general-purpose model of the suite.
type user struct {
	bun.BaseModel `bun:"table:users"`

	ID      int64          `bun:"id,pk,autoincrement"`
	Name    string         `bun:"name,notnull"`
	Age     int            `bun:"age"`
	Nick    *string        `bun:"nick"`
	Score   float64        `bun:"score"`
	Created time.Time      `bun:"created,notnull"`
	Meta    map[string]any `bun:"meta"`
}

// names returns the names of us, in order.
func names(us []user) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Name
	}
	return out
}
