package tests

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// The PostgreSQL figures of docs/performance-postgres.md, each beside its
// peer or its own baseline in one run. They skip without
// TURNKEEP_POSTGRES_URL.

// openPGTurnkeep opens a backend on a fresh schema (no statistics ever
// gathered: autovacuum may be off, and nothing runs ANALYZE), with the
// search index, and with synchronous_commit=off when async.
func openPGTurnkeep(tb testing.TB, async, search bool) *backend.DataFlowBackend {
	tb.Helper()
	ctx := context.Background()
	url := dbtest.PostgresURL(tb)
	if async {
		url = withParam(tb, url, "synchronous_commit", "off")
	}
	db, err := dataflow.Open(ctx, url)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	b, err := backend.NewDataFlowBackend(db, backend.WithSearchIndex(search))
	if err != nil {
		tb.Fatalf("new backend: %v", err)
	}
	if err := storeTurn(ctx, b, "warm-up", memory.Turn{User: "a", Agent: "b"}); err != nil { // creates the tables
		tb.Fatalf("warm-up: %v", err)
	}
	if err := b.EnsureSearchIndex(ctx); err != nil {
		tb.Fatalf("search index: %v", err)
	}
	return b
}

// BenchmarkPGGrowth is one session growing: a save and a cache-miss load
// (newest 10 turns) of a session of 100 turns beside the same of a session
// of 10,000 turns, in one fresh database, with synchronous_commit=off so
// that fsync does not hide the server's work. "never-analyzed" gathers no
// statistics (as right after a deploy; goal: at10k ≤ 2x at100);
// "analyzed-small" runs ANALYZE once, when the table holds only the small
// session, as autovacuum may have just after a deploy, so that the
// planner knows nothing of the large one (the case where a save's turn
// lookup read the whole session). Goal ≤ 1.3x with statistics. Run a
// fixed count, so that the sessions stay near their sizes:
//
//	go test -run '^$' -bench 'BenchmarkPGGrowth' -benchtime 300x -count 3 ./tests/
func BenchmarkPGGrowth(b *testing.B) {
	for _, analyze := range []bool{false, true} {
		name := "never-analyzed"
		if analyze {
			name = "analyzed-small"
		}
		b.Run(name, func(b *testing.B) { benchGrowth(b, analyze) })
	}
}

func benchGrowth(b *testing.B, analyze bool) {
	ctx := context.Background()
	be := openPGTurnkeep(b, true, true)
	sizes := []struct {
		name  string
		turns int
	}{{"at100", 100}, {"at10k", 10_000}}
	for _, s := range sizes {
		for i := range s.turns {
			if err := storeTurn(ctx, be, s.name, memory.Turn{User: peerUser, Agent: peerAgent}); err != nil {
				b.Fatalf("fill %s turn %d: %v", s.name, i, err)
			}
		}
		if analyze && s.name == "at100" {
			if _, err := be.DB().ExecContext(ctx, "ANALYZE "+backend.MessagesTable); err != nil {
				b.Fatal(err)
			}
		}
	}
	reader, err := memory.NewPersistentBufferMemory(be, memory.WithCacheTTL(0))
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range sizes {
		b.Run("save/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := storeTurn(ctx, be, s.name, memory.Turn{User: peerUser, Agent: peerAgent}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, s := range sizes {
		b.Run("load/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w, err := reader.LoadContext(ctx, s.name)
				if err != nil {
					b.Fatal(err)
				}
				if len(w.Turns) != peerWindow {
					b.Fatalf("loaded %d turns; want %d", len(w.Turns), peerWindow)
				}
			}
		})
	}
}

// BenchmarkPGThroughput16 is the save throughput of 16 writers (each on
// sessions of its own, durable commits) with the search index beside
// without it (WithSearchIndex(false): no GIN index), in alternating
// rounds on two fresh databases. It reports each side's median saves/s
// and the median of the per-round ratios (goal ≥ 0.9):
//
//	go test -run '^$' -bench 'BenchmarkPGThroughput16' -benchtime 1x ./tests/
func BenchmarkPGThroughput16(b *testing.B) {
	const (
		writers = 16
		rounds  = 7
		perRun  = 40 // saves per writer per round
	)
	ctx := context.Background()
	on, off := openPGTurnkeep(b, false, true), openPGTurnkeep(b, false, false)
	round := func(be *backend.DataFlowBackend, r int) float64 {
		var wg sync.WaitGroup
		var failed atomic.Value
		start := time.Now()
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perRun {
					id := fmt.Sprintf("w%02d-%d", w, i%4)
					if err := storeTurn(ctx, be, id, memory.Turn{User: peerUser, Agent: peerAgent}); err != nil {
						failed.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("round %d: %v", r, err)
		}
		return writers * perRun / time.Since(start).Seconds()
	}
	for b.Loop() {
		var onRate, offRate, ratio []float64
		for r := range rounds {
			var x, y float64
			if r%2 == 0 { // alternate which side goes first
				x, y = round(on, r), round(off, r)
			} else {
				y, x = round(off, r), round(on, r)
			}
			onRate, offRate, ratio = append(onRate, x), append(offRate, y), append(ratio, x/y)
		}
		b.ReportMetric(medianOf(onRate), "on-saves/s")
		b.ReportMetric(medianOf(offRate), "off-saves/s")
		b.ReportMetric(medianOf(ratio), "on/off")
	}
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPGPeerAddTurnAsync is BenchmarkPeerAddTurn's PostgreSQL pair
// in alternating rounds: "async" with synchronous_commit=off on both
// sides' connections, so that the server's work per save is compared,
// not fsyncs (goal: turnkeep ≤ 1.0x langchaingo), and "durable" with
// durable commits (goal ≤ 0.7x). On a shared machine single runs spread
// widely, so the two sides alternate in rounds of peerRound saves on
// prefilled databases, and it reports each side's median time per save
// and the median of the per-round ratios:
//
//	go test -run '^$' -bench 'BenchmarkPGPeerAddTurnAsync' -benchtime 1x ./tests/
func BenchmarkPGPeerAddTurnAsync(b *testing.B) {
	for _, async := range []bool{true, false} {
		name := "durable"
		if async {
			name = "async"
		}
		b.Run(name, func(b *testing.B) { benchPeerRounds(b, async) })
	}
}

func benchPeerRounds(b *testing.B, async bool) {
	const rounds, peerRound = 9, 300
	ctx := context.Background()
	ids := sessionIDs("peer", peerSessions)
	mode := func(url string) string {
		if async {
			return withParam(b, url, "synchronous_commit", "off")
		}
		return url
	}
	url := dbtest.PostgresURL(b)
	prefillTurnkeep(b, url, ids)
	tk := openTurnkeepPeer(b, mode(url), nil)
	lc := openPGLangchaingoURL(b, mode(dbtest.PostgresURL(b)), ids)
	round := func(s peerStore) float64 {
		start := time.Now()
		for i := range peerRound {
			if err := s.addTurn(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Microseconds()) / peerRound
	}
	for b.Loop() {
		var tkTimes, lcTimes, ratios []float64
		for r := range rounds {
			var x, y float64
			if r%2 == 0 {
				x, y = round(tk), round(lc)
			} else {
				y, x = round(lc), round(tk)
			}
			tkTimes, lcTimes, ratios = append(tkTimes, x), append(lcTimes, y), append(ratios, x/y)
		}
		b.ReportMetric(medianOf(tkTimes), "turnkeep-us/save")
		b.ReportMetric(medianOf(lcTimes), "langchaingo-us/save")
		b.ReportMetric(medianOf(ratios), "turnkeep/langchaingo")
	}
}
