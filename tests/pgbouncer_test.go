package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// pgBouncerExecModes are the pgx query exec modes (the URL parameter
// default_query_exec_mode) that work behind PgBouncer in transaction
// pooling mode. pgx's default, cache_statement, does not: it prepares named
// statements on one server connection and runs them on whichever the
// client's next transaction gets (prepared statement "stmtcache_…" already
// exists, or does not exist). Nor does describe_exec: it describes an
// unnamed statement in one round trip and runs it in the next, maybe on
// another server connection. The README recommends exec.
var pgBouncerExecModes = []string{"exec", "simple_protocol", "cache_describe"}

// TestPgBouncerTransactionPooling runs turnkeep behind PgBouncer in
// transaction pooling mode, with only a documented URL parameter changed:
// from a fresh schema (first-use migrations through PgBouncer), two app
// servers save, load and clear turns of 4 sessions from 8 goroutines while
// PgBouncer shares PgBouncerPoolSize server connections between them.
// Every operation must succeed; afterwards every cached window must equal a
// read-through on a direct connection, each session's TurnCount must equal
// the turns acknowledged since its last clear, and the tables must hold
// every acknowledged turn once and whole.
func TestPgBouncerTransactionPooling(t *testing.T) {
	for _, mode := range pgBouncerExecModes {
		t.Run(mode, func(t *testing.T) {
			bouncer, direct := dbtest.PgBouncerURL(t)
			if errs := pgBouncerWorkload(t, withQueryExecMode(t, bouncer, mode), direct); len(errs) > 0 {
				for _, err := range errs {
					t.Errorf("through pgbouncer: %v", err)
				}
			}
		})
	}
}

// withQueryExecMode returns raw with pgx's default_query_exec_mode set.
func withQueryExecMode(t testing.TB, raw, mode string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	q := u.Query()
	q.Set("default_query_exec_mode", mode)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgBouncerWorkload runs the workload of TestPgBouncerTransactionPooling
// at url, checks the result against direct, and returns the distinct
// errors of the operations (at most 10). It fails t for every wrong result.
func pgBouncerWorkload(t *testing.T, url, direct string) []error {
	const (
		goroutines, ops = 8, 50
		sessions        = 4
		maxTurns        = 5
	)
	// Two app servers, each with a connection pool larger than PgBouncer's.
	dbA, dbB := openDB(t, url), openDB(t, url)
	cachedA := memoryOn(t, dbA, memory.WithMaxTurns(maxTurns))
	cachedB := memoryOn(t, dbB, memory.WithMaxTurns(maxTurns))
	uncached := memoryOn(t, dbB, memory.WithMaxTurns(maxTurns), memory.WithCacheTTL(0))
	savers := []*memory.PersistentBufferMemory{cachedA, cachedB}
	loaders := []*memory.PersistentBufferMemory{cachedA, cachedB, uncached}

	// Saves of a session hold its lock shared, clears exclusive, so that
	// acked counts the turns stored since the session's last clear.
	var (
		locks [sessions]sync.RWMutex
		acked [sessions]atomic.Int64
	)
	var (
		errMu sync.Mutex // protects errs
		errs  = map[string]error{}
	)
	var saves, loads, clears, failures atomic.Int64
	fail := func(err error) {
		failures.Add(1)
		errMu.Lock()
		defer errMu.Unlock()
		if len(errs) < 10 {
			errs[err.Error()] = err
		}
	}

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			for i := range ops {
				s := (g + i) % sessions
				session := fmt.Sprintf("pgb-%d", s)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				switch r := rng.IntN(10); {
				case r < 6:
					locks[s].RLock()
					id := fmt.Sprintf("g%d-%03d", g, i)
					if err := savers[g%2].SaveTurn(ctx, session, idTurn(id)); err != nil {
						fail(fmt.Errorf("SaveTurn(%q, %q): %w", session, id, err))
					} else {
						acked[s].Add(1)
						saves.Add(1)
					}
					locks[s].RUnlock()
				case r < 9:
					w, err := loaders[rng.IntN(len(loaders))].LoadContext(ctx, session)
					if err != nil {
						fail(fmt.Errorf("LoadContext(%q): %w", session, err))
					} else {
						checkWindow(t, session, w)
						loads.Add(1)
					}
				default:
					locks[s].Lock()
					if err := savers[g%2].Clear(ctx, session); err != nil {
						fail(fmt.Errorf("Clear(%q): %w", session, err))
					} else {
						acked[s].Store(0)
						clears.Add(1)
					}
					locks[s].Unlock()
				}
				cancel()
			}
		}()
	}
	if !waitTimeout(&wg, 2*time.Minute) {
		t.Fatalf("%d goroutines × %d operations through pgbouncer did not end within 2 minutes", goroutines, ops)
	}
	t.Logf("%d saves, %d loads, %d clears acknowledged; %d operations failed", saves.Load(), loads.Load(), clears.Load(), failures.Load())

	// Every window, after the fact: a coherent hit on the cached memories
	// (the database may have moved on under them), a read-through on a
	// direct connection, and the tables read with the driver alone.
	ctx := context.Background()
	directDB := openDB(t, direct)
	store := readStore(t, direct)
	for s := range sessions {
		session := fmt.Sprintf("pgb-%d", s)
		want := int(acked[s].Load())
		for name, m := range map[string]*memory.PersistentBufferMemory{"app A": cachedA, "app B": cachedB, "uncached": uncached} {
			w, err := m.LoadContext(ctx, session)
			if err != nil {
				fail(fmt.Errorf("LoadContext(%q) after the run: %w", session, err))
				continue
			}
			if w.TurnCount != want {
				t.Errorf("%s: session %q TurnCount %d; want %d acknowledged since its last clear", name, session, w.TurnCount, want)
			}
			compareWithReadThrough(t, m, directDB, session, memory.WithMaxTurns(maxTurns))
		}
		if got := len(store.turns[session]); got != want {
			t.Errorf("session %q: %d turns stored; want %d acknowledged since its last clear", session, got, want)
		}
	}
	// PgBouncer keeps at most PgBouncerPoolSize server connections, so more
	// client connections than that must have shared them.
	if n := dbA.Bun().DB.Stats().OpenConnections + dbB.Bun().DB.Stats().OpenConnections; n <= dbtest.PgBouncerPoolSize {
		t.Errorf("the app servers opened %d connections to PgBouncer; want more than its %d server connections, or none were shared", n, dbtest.PgBouncerPoolSize)
	}
	if st := cachedA.Stats(); st.Hits == 0 || st.Misses == 0 {
		t.Errorf("app A cache stats %+v: want both hits and misses, or the test did not cover both", st)
	}
	if saves.Load() == 0 || loads.Load() == 0 {
		t.Errorf("%d saves and %d loads acknowledged: the test proved nothing", saves.Load(), loads.Load())
	}
	out := make([]error, 0, len(errs))
	for _, err := range errs {
		out = append(out, err)
	}
	return out
}

// BenchmarkQueryExecModes measures what the query exec modes that work
// behind PgBouncer cost against pgx's default, on a direct connection (so
// the difference is the protocol, not the pooler): a load that reads the
// window (cache disabled), a coherent cache hit (one small round trip) and
// a save. It lives beside the PgBouncer test it informs rather than in a
// *_bench_test.go file.
//
//	TURNKEEP_POSTGRES_URL=postgres://… go test ./tests -run XXX -bench QueryExecModes -benchtime 2000x -count 3
func BenchmarkQueryExecModes(b *testing.B) {
	modes := append([]string{"cache_statement"}, pgBouncerExecModes...) // pgx's default first: the baseline
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			url := withQueryExecMode(b, dbtest.PostgresURL(b), mode)
			db := openDB(b, url)
			read := memoryOn(b, db, memory.WithMaxTurns(benchWindow), memory.WithCacheTTL(0))
			cached := memoryOn(b, db, memory.WithMaxTurns(benchWindow))
			ctx := context.Background()
			for i := range benchTurnsStored {
				saveTurn(b, read, "bench", idTurn(fmt.Sprintf("t%03d", i)))
			}
			b.Run("load-read", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := read.LoadContext(ctx, "bench"); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("load-hit", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := cached.LoadContext(ctx, "bench"); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("save", func(b *testing.B) {
				b.ReportAllocs()
				n := 0
				for b.Loop() {
					n++
					if err := cached.SaveTurn(ctx, "save", idTurn(fmt.Sprintf("s%06d", n))); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
