//go:build cgo

package sqlite3peer

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// BenchmarkColdStart is the core module's BenchmarkColdStart (issue 17,
// item 7) against langchaingo as it ships, on mattn/go-sqlite3 (cgo):
// each round starts a new process per side, which opens an existing
// database of peerSessions sessions of peerTurns turns and loads one
// session (turnkeep.Open and LoadContext; langchaingo's constructor, its
// CREATE TABLE IF NOT EXISTS, and its first Messages), timed inside the
// process. Between them runs langchaingo's schema and read on turnkeep's
// driver, modernc.org/sqlite, on the same file, which shows what the
// driver alone costs a new process. It reports each side's median wall
// and CPU time and the medians of the per-round ratios to langchaingo on
// mattn:
//
//	go test ./tests/sqlite3peer -run '^$' -bench BenchmarkColdStart -benchtime 21x -count 1
func BenchmarkColdStart(b *testing.B) {
	sides := coldSides(b)
	var times [][]dbtest.ColdTime
	for b.Loop() {
		times = append(times, dbtest.ColdRound(b, "TestColdStartChild", sides, len(times)))
	}
	reportColdStart(b, sides, times)
}

// TestColdStartChild is the process a round of BenchmarkColdStart starts;
// run alone, it skips.
func TestColdStartChild(t *testing.T) {
	dbtest.ColdChild(t, coldSides(nil))
}

// coldSession is the session each cold start loads.
const coldSession = "peer-007"

// coldSides returns the sides of the measurement; with tb (the parent)
// it first makes their databases and closes them.
func coldSides(tb testing.TB) []dbtest.ColdSide {
	sides := []dbtest.ColdSide{
		{Name: "turnkeep", Start: coldTurnkeep},
		{Name: "langchaingo-style-modernc", Start: func(ctx context.Context, path string) (func() error, error) {
			return coldLangchaingo(ctx, "sqlite", sqliteModerncDSN, path)
		}},
		{Name: "langchaingo-style", Start: func(ctx context.Context, path string) (func() error, error) {
			return coldLangchaingo(ctx, "sqlite3", sqliteLangchaingoDSN, path)
		}},
	}
	if tb == nil {
		return sides
	}
	dir := tb.TempDir()
	ids := make([]string, peerSessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("peer-%03d", i)
	}
	sides[0].Path = filepath.Join(dir, "turnkeep.db")
	prefillTurnkeep(tb, sides[0].Path, ids)
	// One langchaingo file, which either driver opens as it is.
	sides[1].Path = filepath.Join(dir, "langchaingo.db")
	sides[2].Path = sides[1].Path
	if err := prefillSQLiteLangchaingo(tb, sides[1].Path, ids).Close(); err != nil {
		tb.Fatal(err)
	}
	return sides
}

// prefillTurnkeep fills the database file path with peerTurns turns of
// every session of ids, turn by turn across sessions, and closes it.
func prefillTurnkeep(tb testing.TB, path string, ids []string) {
	tb.Helper()
	ctx := context.Background()
	db, err := dataflow.Open(ctx, "sqlite:///"+path)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		tb.Fatalf("new backend: %v", err)
	}
	m, err := memory.NewPersistentBufferMemory(b, memory.WithCacheTTL(0))
	if err != nil {
		tb.Fatalf("new memory: %v", err)
	}
	for range peerTurns {
		for _, id := range ids {
			if err := m.SaveTurn(ctx, id, memory.Turn{User: peerUser, Agent: peerAgent}); err != nil {
				tb.Fatalf("prefill %s: %v", id, err)
			}
		}
	}
}

// coldTurnkeep is turnkeep's open and first load, as a program does them.
func coldTurnkeep(ctx context.Context, path string) (func() error, error) {
	m, err := turnkeep.Open(ctx, "sqlite:///"+path)
	if err != nil {
		return nil, err
	}
	w, err := m.LoadContext(ctx, coldSession)
	if err == nil && len(w.Turns) != peerWindow {
		err = fmt.Errorf("first load: %d turns; want %d", len(w.Turns), peerWindow)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	return m.Close, nil
}

// sqliteModerncDSN opens a file with modernc.org/sqlite as
// sqliteLangchaingoDSN does with mattn's driver.
const sqliteModerncDSN = "file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)"

// coldLangchaingo is langchaingo's NewSqliteChatMessageHistory on an
// existing file (sql.Open through driver, then its schema's CREATE … IF
// NOT EXISTS) and its first Messages.
func coldLangchaingo(ctx context.Context, driver, dsn, path string) (func() error, error) {
	db, err := sql.Open(driver, fmt.Sprintf(dsn, path))
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, sqliteLangchaingoSchema); err != nil {
		db.Close()
		return nil, err
	}
	s := &sqliteLangchaingo{db: db, limit: 2 * peerWindow}
	n, err := s.load(ctx, coldSession)
	if err == nil && n != 2*peerWindow {
		err = fmt.Errorf("first read: %d messages; want %d", n, 2*peerWindow)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db.Close, nil
}

// reportColdStart reports the median wall and CPU time of each side, in
// µs, and the medians of the per-round ratios of each side to the last
// (langchaingo on mattn), and logs every round.
func reportColdStart(b *testing.B, sides []dbtest.ColdSide, times [][]dbtest.ColdTime) {
	b.Helper()
	last := len(sides) - 1
	wall, cpu := make([][]float64, len(sides)), make([][]float64, len(sides))
	wallRatios, cpuRatios := make([][]float64, last), make([][]float64, last)
	for r, t := range times {
		line := fmt.Sprintf("round %2d:", r)
		for i, d := range t {
			wall[i] = append(wall[i], float64(d.Wall.Microseconds()))
			cpu[i] = append(cpu[i], float64(d.CPU.Microseconds()))
			line += fmt.Sprintf(" %s %d µs (CPU %d µs);", sides[i].Name, d.Wall.Microseconds(), d.CPU.Microseconds())
		}
		for i := range last {
			wallRatios[i] = append(wallRatios[i], float64(t[i].Wall)/float64(t[last].Wall))
			cpuRatios[i] = append(cpuRatios[i], float64(t[i].CPU)/float64(t[last].CPU))
			line += fmt.Sprintf(" %s ratio %.2f (CPU %.2f);", sides[i].Name, wallRatios[i][r], cpuRatios[i][r])
		}
		b.Log(line)
	}
	for i, s := range sides {
		b.ReportMetric(dbtest.Median(wall[i]), s.Name+"-µs")
		b.ReportMetric(dbtest.Median(cpu[i]), s.Name+"-cpu-µs")
		if i < last {
			b.ReportMetric(dbtest.Median(wallRatios[i]), s.Name+"-ratio")
			b.ReportMetric(dbtest.Median(cpuRatios[i]), s.Name+"-cpu-ratio")
		}
	}
}
