package tests

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// coherentTurns is the size of the session BenchmarkCoherentLoad loads: all
// of it fits the default window.
const coherentTurns = memory.DefaultMaxTurns

// BenchmarkCoherentLoad loads a session of 10 realistic turns three ways,
// side by side on each dialect: "coherent-hit", the default cache with the
// window cached, confirmed by one statement that returns only the session
// row; "read-through", no cache (WithCacheTTL(0)); and "stale-hit",
// WithStaleReads(time.Hour), which skips the database. Besides time and
// allocations it reports, measured outside the timer, the statements
// (round trips) per load and the bytes of the column values they return:
//
//	TURNKEEP_POSTGRES_URL=postgres://… go test ./tests -run '^$' -bench BenchmarkCoherentLoad -benchtime 2000x -count 3
func BenchmarkCoherentLoad(b *testing.B) {
	modes := []struct {
		name string
		opts []memory.Option
		// reads says what the load statement, if any, must ask for: the
		// whole window (known version driver.UnknownVersion) or not.
		reads bool
	}{
		{name: "coherent-hit"},
		{name: "read-through", opts: []memory.Option{memory.WithCacheTTL(0)}, reads: true},
		{name: "stale-hit", opts: []memory.Option{memory.WithStaleReads(time.Hour)}},
	}
	const session = "coherent"
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			url := d.URL(b)
			seed := newMemory(b, url)
			for i := range coherentTurns {
				saveTurn(b, seed, session, realisticTurn(i))
			}
			for _, mode := range modes {
				b.Run(mode.name, func(b *testing.B) {
					db := openDB(b, url)
					m := memoryOn(b, db, mode.opts...)
					loadCoherent(b, m, session) // caches the window, where it caches
					b.ReportAllocs()
					for b.Loop() {
						loadCoherent(b, m, session)
					}

					// Outside the timer, on a handle of its own with a
					// recording hook, so the timed loop runs without hooks.
					const probes = 100
					rec := &queryRecorder{}
					hm := memoryOn(b, openDB(b, url, dataflow.WithQueryHook(rec)), mode.opts...)
					loadCoherent(b, hm, session)
					rec.reset()
					for range probes {
						loadCoherent(b, hm, session)
					}
					stmts := rec.reset()
					bytes := 0
					for _, q := range stmts {
						if len(q.args) != 3 {
							b.Fatalf("%s: unexpected statement %q", mode.name, q.query)
						}
						// The load statement's first argument is the known
						// version minus one (backend/dataflow.go, load).
						if known, _ := q.args[0].(int64); (known == int64(driver.UnknownVersion)-1) != mode.reads {
							b.Fatalf("%s: load statement with known version %d + 1; want a read of the window: %v", mode.name, known, mode.reads)
						}
						bytes += rowBytes(b, db, q)
					}
					b.ReportMetric(float64(len(stmts))/probes, "roundtrips/op")
					b.ReportMetric(float64(bytes)/probes, "rowbytes/op")
				})
			}
		})
	}
}

// realisticTurn is turn i of a chat: two messages of about 200 bytes and
// small metadata.
func realisticTurn(i int) memory.Turn {
	text := func(prefix string) string {
		s := fmt.Sprintf("%s %d: ", prefix, i) + strings.Repeat("the quick brown fox jumps over the lazy dog, ", 5)
		return s[:200]
	}
	return memory.Turn{
		ID:       fmt.Sprintf("turn-%02d", i),
		User:     text("Question"),
		Agent:    text("Answer"),
		Metadata: map[string]any{"model": "small-chat", "tokens": 57 + i, "lang": "en"},
	}
}

func loadCoherent(b *testing.B, m *memory.PersistentBufferMemory, session string) {
	w, err := m.LoadContext(context.Background(), session)
	if err != nil || len(w.Turns) != coherentTurns || w.TurnCount != coherentTurns {
		b.Fatalf("LoadContext: %d turns of %d, %v; want %d of %d", len(w.Turns), w.TurnCount, err, coherentTurns, coherentTurns)
	}
}

// rowBytes runs q again and returns the summed length of every column value
// of every row it returns, as the driver hands them over (numbers and times
// in text form).
func rowBytes(b *testing.B, db *dataflow.DB, q recordedQuery) int {
	rows, err := db.QueryContext(context.Background(), q.query, q.args...)
	if err != nil {
		b.Fatalf("rerun %q: %v", q.query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		b.Fatal(err)
	}
	vals := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range vals {
		dest[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			b.Fatal(err)
		}
		for _, v := range vals {
			n += len(v)
		}
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return n
}

// recordedQuery is a statement as a query hook saw it.
type recordedQuery struct {
	query string
	args  []any
}

// queryRecorder is a bun.QueryHook keeping every statement with its
// arguments. It is safe for concurrent use.
type queryRecorder struct {
	mu      sync.Mutex // protects queries
	queries []recordedQuery
}

var _ bun.QueryHook = (*queryRecorder)(nil)

func (r *queryRecorder) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, recordedQuery{query: ev.Query, args: slices.Clone(ev.QueryArgs)})
	return ctx
}

func (r *queryRecorder) AfterQuery(context.Context, *bun.QueryEvent) {}

// reset forgets the statements and returns them.
func (r *queryRecorder) reset() []recordedQuery {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queries
	r.queries = nil
	return q
}
