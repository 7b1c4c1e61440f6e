package tests

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
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// The statement counts of the performance contract. After warm-up:
//
//   - SaveTurn runs saveStatements[dialect] statements besides
//     BEGIN/COMMIT. On SQLite: the session upsert returning the new turn
//     count and one INSERT of the turn's messages, in one transaction, all
//     local calls; a trigger queues the messages for the search index,
//     which catches up in batches (after searchCatchUpAfter messages, far
//     more than this scenario saves, or at a search). On PostgreSQL: one
//     statement doing it all (the search text is a column of the message
//     rows), one round trip, no explicit transaction. On MySQL: one text
//     of several statements that begins, writes and commits its own
//     transaction and reads the result, one round trip.
//   - LoadContext runs loadStatements, whether it hits the cache or not:
//     one SELECT of the session row and, on a miss, the window's messages.
//   - None of them runs a catalog, DDL or migration-history statement.
const loadStatements = 1

var saveStatements = map[string]int{"sqlite": 2, "pg": 1, "mysql": 1}

const (
	seedTurns    = 30              // the seed's acceptance test: 30 saves, then 30 loads
	seedPhase    = 5 * time.Second // its bar for each phase
	maxHitAllocs = 2               // allocations of a cache hit that skips the database (WithStaleReads)
)

// A stmtClass is a kind of statement the counter tells apart.
type stmtClass int

const (
	stmtData    stmtClass = iota // reads and writes of the models' tables
	stmtTx                       // BEGIN (also BEGIN IMMEDIATE), COMMIT, ROLLBACK, savepoints
	stmtCatalog                  // sqlite_master, PRAGMA, pg_catalog and information_schema, advisory locks
	stmtDDL                      // CREATE, ALTER, DROP
	stmtHistory                  // the migration history table
	numStmtClasses
)

var stmtClassNames = [numStmtClasses]string{"data", "tx", "catalog", "ddl", "history"}

func (c stmtClass) String() string { return stmtClassNames[c] }

func classify(query string) stmtClass {
	switch dbtest.Classify(query) {
	case dbtest.KindTx:
		return stmtTx
	case dbtest.KindDDL:
		return stmtDDL
	case dbtest.KindHistory:
		return stmtHistory
	case dbtest.KindCatalog:
		return stmtCatalog
	}
	return stmtData
}

// stmtCounts are statement counts by class.
type stmtCounts [numStmtClasses]int

func (c stmtCounts) sub(o stmtCounts) stmtCounts {
	for i := range c {
		c[i] -= o[i]
	}
	return c
}

func (c stmtCounts) total() int {
	n := 0
	for _, k := range c {
		n += k
	}
	return n
}

func (c stmtCounts) String() string {
	var b strings.Builder
	for i, n := range c {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", stmtClass(i), n)
	}
	return b.String()
}

// stmtCounter is a bun.QueryHook counting every statement the engine runs,
// by class. It is safe for concurrent use.
type stmtCounter struct {
	mu     sync.Mutex // protects counts and log
	counts stmtCounts
	log    []string // the statements since the last reset, for failure messages
}

var _ bun.QueryHook = (*stmtCounter)(nil)

func (c *stmtCounter) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[classify(ev.Query)]++
	c.log = append(c.log, ev.Query)
	return ctx
}

func (c *stmtCounter) AfterQuery(context.Context, *bun.QueryEvent) {}

func (c *stmtCounter) snapshot() stmtCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts
}

// reset zeroes the counts and returns what they were, with the statements.
func (c *stmtCounter) reset() (stmtCounts, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	counts, log := c.counts, c.log
	c.counts, c.log = stmtCounts{}, nil
	return counts, log
}

func TestPerfClassify(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  stmtClass
	}{
		{"BEGIN", stmtTx},
		{"BEGIN IMMEDIATE", stmtTx},
		{"  commit", stmtTx},
		{"ROLLBACK", stmtTx},
		{`CREATE TABLE "turnkeep_sessions" (id varchar(255))`, stmtDDL},
		{`CREATE UNIQUE INDEX x ON t (a)`, stmtDDL},
		{`ALTER TABLE t ADD COLUMN c text`, stmtDDL},
		{`SELECT name FROM sqlite_master WHERE type = 'table'`, stmtCatalog},
		{`SELECT name FROM pragma_table_info(?)`, stmtCatalog},
		{`SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace`, stmtCatalog},
		{`SELECT indexname FROM pg_indexes WHERE tablename = $1`, stmtCatalog},
		{`SELECT column_name FROM information_schema.columns`, stmtCatalog},
		{`SELECT pg_advisory_xact_lock(hashtext($1))`, stmtCatalog},
		{`SELECT checksum FROM turnkeep_migrations WHERE table_name = ?`, stmtHistory},
		{`INSERT INTO turnkeep_sessions (id) VALUES (?) RETURNING turn_count`, stmtData},
		{`SELECT (SELECT turn_count FROM turnkeep_sessions WHERE id = ?), m.seq FROM turnkeep_messages m`, stmtData},
	} {
		if got := classify(tc.query); got != tc.want {
			t.Errorf("classify(%q): got %v; want %v", tc.query, got, tc.want)
		}
	}
}

// TestPerfSeedScenario runs the acceptance test of the system turnkeep
// replaces (30 SaveTurn into 30 sessions, then 30 LoadContext), asserts its
// loose time bar and, exactly, the statements each call runs, and logs each
// phase beside the same work done with plain bun.
func TestPerfSeedScenario(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := t.Context()
		var counter stmtCounter
		mem, be := openTurnkeep(t, d.URL(t), []dataflow.Option{dataflow.WithQueryHook(&counter)}, memory.WithMaxTurns(10))
		// A second memory over the same backend reads through on every
		// LoadContext, so phase 2 measures cache misses.
		reader, err := memory.NewPersistentBufferMemory(be, memory.WithMaxTurns(10), memory.WithCacheTTL(0))
		require.NoError(t, err)

		// Warm-up on a session of its own creates the tables.
		require.NoError(t, mem.SaveTurn(ctx, "warm-up", memory.Turn{User: "hello", Agent: "hi"}))
		w, err := reader.LoadContext(ctx, "warm-up")
		require.NoError(t, err)
		require.Equal(t, 1, w.TurnCount)
		warm, warmLog := counter.reset()
		t.Logf("warm-up: %v", warm)
		// The counter sees the schema work, so the zeros asserted below mean something.
		require.Positivef(t, warm[stmtDDL], "warm-up DDL statements: got 0; want some on a fresh database:\n%s", strings.Join(warmLog, "\n"))
		require.Positivef(t, warm[stmtCatalog], "warm-up catalog statements: got 0; want some on a fresh database:\n%s", strings.Join(warmLog, "\n"))

		ids := sessionIDs("seed-session", seedTurns)
		base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
		turns := make([]memory.Turn, seedTurns)
		for i := range turns {
			turns[i] = memory.Turn{
				User:      fmt.Sprintf("Hello, I am user %d", i),
				Agent:     fmt.Sprintf("Hi there, user %d", i),
				Timestamp: base.Add(time.Duration(i)*time.Second + 123456789), // sub-microsecond part is dropped
				Metadata:  map[string]any{"turn": float64(i), "source": "seed"},
			}
		}

		// Phase 1: 30 SaveTurn into 30 sessions.
		var perSave [seedTurns]stmtCounts
		start := time.Now()
		for i, id := range ids {
			before := counter.snapshot()
			require.NoError(t, mem.SaveTurn(ctx, id, turns[i]))
			perSave[i] = counter.snapshot().sub(before)
		}
		savePhase := time.Since(start)
		saves, saveLog := counter.reset()

		// Phase 2: 30 LoadContext, every one a cache miss.
		var perLoad [seedTurns]stmtCounts
		windows := make([]memory.Window, seedTurns)
		start = time.Now()
		for i, id := range ids {
			before := counter.snapshot()
			windows[i], err = reader.LoadContext(ctx, id)
			require.NoError(t, err)
			perLoad[i] = counter.snapshot().sub(before)
		}
		loadPhase := time.Since(start)
		loads, loadLog := counter.reset()

		t.Logf("one SaveTurn ran %v:\n%s", perSave[0], strings.Join(saveLog[:min(len(saveLog), perSave[0].total())], "\n"))
		t.Logf("one LoadContext (miss) ran %v:\n%s", perLoad[0], strings.Join(loadLog[:min(len(loadLog), perLoad[0].total())], "\n"))

		saveStatements := saveStatements[d.Name]
		for i := range ids {
			require.Equalf(t, saveStatements, perSave[i][stmtData], "SaveTurn %d: data statements: got %d; want %d", i, perSave[i][stmtData], saveStatements)
			require.Equalf(t, loadStatements, perLoad[i][stmtData], "LoadContext %d: data statements: got %d; want %d", i, perLoad[i][stmtData], loadStatements)
			require.Zerof(t, perLoad[i][stmtTx], "LoadContext %d: transaction statements: got %d; want 0", i, perLoad[i][stmtTx])

			w := windows[i]
			require.Equalf(t, 1, w.TurnCount, "session %s: TurnCount: got %d; want 1", ids[i], w.TurnCount)
			require.Lenf(t, w.Turns, 1, "session %s: turns", ids[i])
			got := w.Turns[0]
			require.Lenf(t, got.ID, 32, "session %s: generated turn ID %q", ids[i], got.ID)
			require.Equalf(t, turns[i].Timestamp.UTC().Truncate(time.Microsecond), got.Timestamp, "session %s: timestamp read back", ids[i])
			// The rest as PrepareTurn normalizes it (its messages included)
			// with the generated ID.
			in := turns[i]
			in.ID, in.Seq = got.ID, 1
			want, _, err := driver.PrepareTurn(in, time.Now(), 0)
			require.NoError(t, err)
			require.Equalf(t, want, got, "session %s: turn read back", ids[i])
		}
		require.Equalf(t, seedTurns*saveStatements, saves[stmtData], "phase 1 data statements: got %d; want %d", saves[stmtData], seedTurns*saveStatements)
		require.Equalf(t, seedTurns*loadStatements, loads[stmtData], "phase 2 data statements: got %d; want %d", loads[stmtData], seedTurns*loadStatements)
		// Each SaveTurn is one transaction that commits. SQLite shows its
		// BEGIN IMMEDIATE and COMMIT to the hook; on PostgreSQL it is one
		// statement, with no explicit transaction; on MySQL one text that
		// holds its START TRANSACTION and COMMIT.
		wantTx := []int{2 * seedTurns}
		if d.Name == "pg" || d.Name == "mysql" {
			wantTx = []int{0}
		}
		require.Containsf(t, wantTx, saves[stmtTx], "phase 1 transaction statements: got %d; want one of %v:\n%s", saves[stmtTx], wantTx, strings.Join(saveLog, "\n"))
		for _, q := range saveLog {
			// A ROLLBACK sent (MySQL's save text holds one only inside its
			// conditional commit, which rolls back a bump without its
			// messages).
			require.Falsef(t, strings.HasPrefix(strings.ToUpper(strings.TrimSpace(q)), "ROLLBACK"), "phase 1 rolled back:\n%s", strings.Join(saveLog, "\n"))
		}
		for _, ph := range []struct {
			name   string
			counts stmtCounts
			log    []string
		}{{"phase 1", saves, saveLog}, {"phase 2", loads, loadLog}} {
			for _, c := range []stmtClass{stmtCatalog, stmtDDL, stmtHistory} {
				require.Zerof(t, ph.counts[c], "%s: %v statements after warm-up: got %d; want 0:\n%s", ph.name, c, ph.counts[c], strings.Join(ph.log, "\n"))
			}
		}

		// Phase 3: cache hits confirm each window with the one load
		// statement (which then reads the session row alone) and return
		// the cached turns.
		for _, id := range ids {
			_, err := mem.LoadContext(ctx, id) // a miss fills the cache
			require.NoError(t, err)
		}
		counter.reset()
		hitsBefore := mem.Stats().Hits
		start = time.Now()
		for i, id := range ids {
			w, err := mem.LoadContext(ctx, id)
			require.NoError(t, err)
			require.Equalf(t, windows[i], w, "session %s: cached window", id)
		}
		hitPhase := time.Since(start)
		hits, hitLog := counter.reset()
		require.Equalf(t, hitsBefore+seedTurns, mem.Stats().Hits, "loads served from the cache")
		require.Equalf(t, seedTurns*loadStatements, hits[stmtData], "cache hits: data statements:\n%s", strings.Join(hitLog, "\n"))
		for _, c := range []stmtClass{stmtCatalog, stmtDDL, stmtHistory, stmtTx} {
			require.Zerof(t, hits[c], "cache hits: %v statements:\n%s", c, strings.Join(hitLog, "\n"))
		}
		// With WithStaleReads a hit runs no statement at all, and allocates
		// only the caller's copy of the window.
		stale, err := memory.NewPersistentBufferMemory(be, memory.WithMaxTurns(10), memory.WithStaleReads(time.Hour))
		require.NoError(t, err)
		_, err = stale.LoadContext(ctx, ids[0])
		require.NoError(t, err)
		counter.reset()
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := stale.LoadContext(ctx, ids[0]); err != nil {
				t.Error(err)
			}
		})
		staleHits, staleLog := counter.reset()
		require.Equalf(t, stmtCounts{}, staleHits, "stale-read cache hits ran statements:\n%s", strings.Join(staleLog, "\n"))
		require.LessOrEqualf(t, allocs, float64(maxHitAllocs), "allocations per cache hit: got %v; want at most %d", allocs, maxHitAllocs)

		// The same work with plain bun, on a fresh database of its own.
		raw := openRaw(t, d.URL(t))
		require.NoError(t, raw.save(ctx, "warm-up", memory.Turn{User: "hello", Agent: "hi"}))
		_, err = raw.load(ctx, "warm-up", 10)
		require.NoError(t, err)
		start = time.Now()
		for i, id := range ids {
			require.NoError(t, raw.save(ctx, id, turns[i]))
		}
		rawSave := time.Since(start)
		rows := make([][]windowRow, seedTurns)
		start = time.Now()
		for i, id := range ids {
			rows[i], err = raw.load(ctx, id, 10)
			require.NoError(t, err)
		}
		rawLoad := time.Since(start)
		for i, r := range rows {
			require.Lenf(t, r, 2, "bun baseline: session %s rows", ids[i])
			require.Equalf(t, int64(1), r[0].TurnCount, "bun baseline: session %s turn count", ids[i])
			require.Equalf(t, turns[i].User, r[0].Content, "bun baseline: session %s user message", ids[i])
			require.Equalf(t, turns[i].Agent, r[1].Content, "bun baseline: session %s agent message", ids[i])
		}

		ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
		t.Logf("%s phase 1, %d SaveTurn:             turnkeep %10v  bun %10v  ratio %.2f", d.Name, seedTurns, savePhase, rawSave, ratio(savePhase, rawSave))
		t.Logf("%s phase 2, %d LoadContext (miss):   turnkeep %10v  bun %10v  ratio %.2f", d.Name, seedTurns, loadPhase, rawLoad, ratio(loadPhase, rawLoad))
		t.Logf("%s phase 3, %d LoadContext (hit):    turnkeep %10v  (%.0f allocs each)", d.Name, seedTurns, hitPhase, allocs)
		require.Lessf(t, savePhase, seedPhase, "phase 1: got %v; want under %v", savePhase, seedPhase)
		require.Lessf(t, loadPhase, seedPhase, "phase 2: got %v; want under %v", loadPhase, seedPhase)
	})
}
