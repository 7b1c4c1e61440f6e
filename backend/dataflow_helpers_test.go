package backend

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// recorder is a query hook that records every statement the engine runs.
// Armed with onBefore, it can also replace the context of a statement.
type recorder struct {
	mu       sync.Mutex // protects queries and onBefore
	queries  []string
	onBefore func(ctx context.Context, query string) context.Context
}

var _ bun.QueryHook = (*recorder)(nil)

func (r *recorder) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	r.mu.Lock()
	r.queries = append(r.queries, ev.Query)
	f := r.onBefore
	r.mu.Unlock()
	if f != nil {
		return f(ctx, ev.Query)
	}
	return ctx
}

func (r *recorder) AfterQuery(context.Context, *bun.QueryEvent) {}

// take returns the statements recorded since the last take and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queries
	r.queries = nil
	return q
}

func (r *recorder) arm(f func(ctx context.Context, query string) context.Context) {
	r.mu.Lock()
	r.onBefore = f
	r.mu.Unlock()
}

// Statement kinds, by what a statement touches.
const (
	kindTx      = dbtest.KindTx
	kindCatalog = dbtest.KindCatalog
	kindDDL     = dbtest.KindDDL
	kindHistory = dbtest.KindHistory
	kindData    = dbtest.KindData
)

// byKind groups statements by classify.
func byKind(qs []string) map[dbtest.Kind][]string {
	m := make(map[dbtest.Kind][]string)
	for _, q := range qs {
		k := dbtest.Classify(q)
		m[k] = append(m[k], q)
	}
	return m
}

// openDB opens url with a recorder hook.
func openDB(t testing.TB, url string) (*dataflow.DB, *recorder) {
	t.Helper()
	rec := &recorder{}
	db, err := dataflow.Open(context.Background(), url, dataflow.WithQueryHook(rec))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db, rec
}

// newEnv opens a fresh database of dialect d and a backend on it.
func newEnv(t testing.TB, d dbtest.Dialect, opts ...Option) (*DataFlowBackend, *recorder) {
	t.Helper()
	db, rec := openDB(t, d.URL(t))
	b, err := NewDataFlowBackend(db, opts...)
	require.NoError(t, err)
	return b, rec
}

func newMemory(t *testing.T, b driver.Backend, opts ...memory.Option) *memory.PersistentBufferMemory {
	t.Helper()
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	require.NoError(t, err)
	return m
}

// countRows counts the rows of table, optionally those of one session.
func countRows(t *testing.T, db *dataflow.DB, table string) int {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT count(*) FROM `+table)
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next(), "count(*) returned no row: %v", rows.Err())
	var n int
	require.NoError(t, rows.Scan(&n))
	require.NoError(t, rows.Close())
	return n
}

// tableCounts returns the row counts of the sessions and messages tables.
func tableCounts(t *testing.T, b *DataFlowBackend) [2]int {
	t.Helper()
	return [2]int{countRows(t, b.db, SessionsTable), countRows(t, b.db, MessagesTable)}
}

// seqs returns the turn sequence numbers of the session's user messages, in
// key order.
func seqs(t *testing.T, b *DataFlowBackend, sessionID string) []int64 {
	t.Helper()
	rows, err := b.db.QueryContext(context.Background(),
		b.db.Rebind(`SELECT seq FROM `+MessagesTable+` WHERE session_id = ? AND pos = 0 ORDER BY seq`), sessionID)
	require.NoError(t, err)
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var s int64
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// prepared is what PrepareTurn makes of turn: what a read must return.
func prepared(t *testing.T, turn driver.Turn) driver.Turn {
	t.Helper()
	p, _, err := driver.PrepareTurn(turn, time.Now(), 0)
	require.NoError(t, err)
	return p
}

func loadWindow(t *testing.T, b driver.Backend, sessionID string, maxTurns int) driver.Window {
	t.Helper()
	w, _, err := b.Load(context.Background(), sessionID, driver.WindowQuery{MaxTurns: maxTurns, Known: driver.UnknownVersion})
	require.NoError(t, err)
	return w
}

func loadContext(t *testing.T, m memory.Memory, sessionID string) driver.Window {
	t.Helper()
	w, err := m.LoadContext(context.Background(), sessionID)
	require.NoError(t, err)
	return w
}

func users(w driver.Window) []string {
	var out []string
	for _, t := range w.Turns {
		out = append(out, t.User)
	}
	return out
}

// wantWindow is the driver.Window of turns out of count stored, its Tokens
// summed from the turns'.
func wantWindow(turns []driver.Turn, count int) driver.Window {
	w := driver.Window{Turns: withSeq(turns, count-len(turns)+1), TurnCount: count}
	for _, t := range turns {
		w.Tokens += t.Tokens()
	}
	return w
}

// withSeq returns a copy of turns numbered from first on, as loaded turns
// carry their Seq.
func withSeq(turns []driver.Turn, first int) []driver.Turn {
	if turns == nil {
		return nil
	}
	out := slices.Clone(turns)
	for i := range out {
		out[i].Seq = first + i
	}
	return out
}
