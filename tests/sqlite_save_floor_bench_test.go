package tests

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// BenchmarkSQLiteSaveFloor times a SQLite save against langchaingo's two
// auto-commit inserts on the same driver (modernc.org/sqlite), the bar of
// issue 17 ("SaveTurn ≤ 1.0x langchaingo's two inserts on the same
// pure-Go driver"), and splits the gap by guarantee. Every side stores the
// same turns (walTurn: about 120 and 400 bytes of varied words) in a
// database of its own, prefilled with walSessions sessions of walTurns
// turns, to the same random sessions, in alternating rounds:
//
//   - langchaingo: its table and its two auto-commit INSERTs (two commits;
//     not atomic, not idempotent, no count, no listing, no search);
//   - langchaingo, one transaction: the same two INSERTs in one
//     transaction, what an atomic turn alone changes;
//   - turnkeep: SaveTurn with default options (search on), and with
//     WithSearchIndex(false);
//   - the append-ordered layout (TestWALLayouts, the measured way to the
//     fewest pages) as a ladder, one guarantee added per rung:
//     1. its rows appended at the table's end, numbered by the session
//     row's upsert (count, tokens, updated_at), with the sequence index
//     of turn heads that the windows seek;
//     2. + idempotent turn IDs and unique message IDs (a unique index of
//     turn heads by turn ID; app-given message IDs, none here);
//     3. + the exact listing (tenant, updated_at, id) that keyset listing
//     reads;
//     4. + search: the FTS5 index caught up past a watermark rowid every
//     128 saves (256 messages, as the backend's catch-up), the catch-up
//     timed with the saves. This is the whole layout, every guarantee
//     turnkeep's save keeps;
//   - rungs 2t, 3t and 4t: rungs 2 to 4 with the turn-ID index led by the
//     turn ID, (turn_id, session_id), and turn IDs that grow with time, so
//     that its entries append at the index's end instead of going into
//     the session's leaf;
//   - the same layout with the listing keyed by an hour bucket (issue 17's
//     lead), which gives up the listing's bound on a page's cost.
//
// The raw sides send their SQL text, as langchaingo does (no prepared
// statements), on one connection with SQLite's default checkpoints; the
// backend prepares its statements and checkpoints its own way. It
// reports each side's median time per save and the median, least and
// largest of its per-round ratios to langchaingo's:
//
//	go test ./tests -run '^$' -bench BenchmarkSQLiteSaveFloor -benchtime 1x -v
//
// The pages each rung writes are TestWALLayouts' (TURNKEEP_LAYOUTS=1).
func BenchmarkSQLiteSaveFloor(b *testing.B) {
	const (
		rounds, round = 9, 1000
		catchUpEvery  = 128 // saves of 2 messages: the backend's 256 messages
	)
	ctx := context.Background()
	type side struct {
		name string
		save func(s int) error
	}
	var sides []side
	// raw is a side on layout l: its own database, prefilled by its save,
	// each save a transaction.
	raw := func(name string, l walLayout) {
		db := protoOpen(b, filepath.Join(b.TempDir(), "floor.db"), l, true)
		next, k := protoBuild(ctx, b, db, l)
		saves := 0
		sides = append(sides, side{name: name, save: func(s int) error {
			seq := next[s]
			next[s]++
			k++
			saves++
			err := protoSave(ctx, db, l, s, seq, protoAt(k))
			if err == nil && l.catchUp != nil && saves%catchUpEvery == 0 {
				err = protoTx(ctx, db, func(tx *sql.Tx) error { _, err := l.catchUp(ctx, tx); return err })
			}
			return err
		}})
	}
	raw("langchaingo", langchaingoLayout(true))
	raw("langchaingo, one transaction", langchaingoLayout(false))
	for _, search := range []bool{true, false} {
		be := openFloorBackend(b, filepath.Join(b.TempDir(), "turnkeep.db"), search)
		next := walBuild(ctx, b, be.file, be.b, search)
		name := "turnkeep"
		if !search {
			name = "turnkeep, search off"
		}
		sides = append(sides, side{name: name, save: func(s int) error {
			seq := next[s]
			next[s]++
			return be.mem.SaveTurn(ctx, walSessionID(s), walTurn(s, seq))
		}})
	}
	for _, l := range appendLadder() {
		raw(rungName(l), l)
	}
	raw("hour listing", appendOrdered(appendHourListing))

	order := walSaveOrder(rounds * round)
	var times, ratios [][]float64
	for b.Loop() {
		times, ratios = dbtest.Rounds(rounds, len(sides), func(i, r int) float64 {
			start := time.Now()
			for _, s := range order[r*round : (r+1)*round] {
				if err := sides[i].save(s); err != nil {
					b.Fatalf("%s: %v", sides[i].name, err)
				}
			}
			return float64(time.Since(start).Microseconds()) / round
		})
	}
	names := make([]string, len(sides))
	for i, s := range sides {
		names[i] = s.name
	}
	out := dbtest.ReportRounds(b, names, times, ratios, nil)
	b.Logf("medians of %d rounds of %d saves:%s\nrungs: %s", rounds, round, out, ladderNames())
}

// rungName is the benchmark's name of a rung of appendLadder: "rung 2t"
// for "ladder 2t: …".
func rungName(l walLayout) string {
	n, _, _ := strings.Cut(strings.TrimPrefix(l.name, "ladder "), ":")
	return "rung " + n
}

// ladderNames names the rungs of appendLadder, for the benchmark's log.
func ladderNames() string {
	var names []string
	for _, l := range appendLadder() {
		names = append(names, l.name)
	}
	return strings.Join(names, "; ")
}

// langchaingoLayout is langchaingo's SQLite history as a layout: its table
// and its two INSERTs, each its own auto-commit transaction (as
// langchaingo runs them), or both in the save's transaction.
func langchaingoLayout(autocommit bool) walLayout {
	name := "peer: langchaingo's table, its two inserts in one transaction"
	if autocommit {
		name = "peer: langchaingo's table, its two auto-commit inserts"
	}
	return walLayout{name: name, ddl: []string{sqliteLangchaingoSchema}, autocommit: autocommit,
		save: func(ctx context.Context, tx protoExec, s int, seq int64, _ string) error {
			msgs := protoTurn(s, seq)
			if _, err := tx.ExecContext(ctx, sqliteLangchaingoInsert, walSessionID(s), msgs[0], peerTypeHuman); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, sqliteLangchaingoInsert, walSessionID(s), msgs[1], peerTypeAI)
			return err
		}}
}

// floorBackend is turnkeep on a database file, as an app opens it: default
// options, search on or off.
type floorBackend struct {
	file string
	b    *backend.DataFlowBackend
	mem  *memory.PersistentBufferMemory
}

func openFloorBackend(tb testing.TB, file string, search bool) floorBackend {
	tb.Helper()
	b := openFileBackend(tb, file, search)
	mem, err := memory.NewPersistentBufferMemory(b)
	if err != nil {
		tb.Fatal(err)
	}
	return floorBackend{file: file, b: b, mem: mem}
}
