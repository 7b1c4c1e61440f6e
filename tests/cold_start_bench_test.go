package tests

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// Cold start (issue 17, item 7): a new process opens an existing SQLite
// database, already migrated and holding peerSessions sessions of
// peerTurns turns, and loads one session's window. Each round starts one
// process per side (this test binary again, running TestColdStartChild)
// and times open + first load inside it:
//
//   - turnkeep: turnkeep.Open, then LoadContext: the window of 10 turns;
//   - langchaingo-style-modernc: langchaingo's constructor (sql.Open and
//     its CREATE TABLE IF NOT EXISTS, on the driver turnkeep uses,
//     modernc.org/sqlite), then its first Messages read: 20 messages.
//
// The order of the sides alternates by round. It reports the median time
// of each side and the median of the per-round ratios:
//
//	go test ./tests -run '^$' -bench BenchmarkColdStart -benchtime 21x -count 1
//
// The same against langchaingo on mattn/go-sqlite3 (cgo) is in the module
// tests/sqlite3peer.
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

// coldSides returns the sides of the cold-start measurement. With tb (the
// parent) it first makes their databases and closes them; without (a
// child) the path comes from the child's environment.
func coldSides(tb testing.TB) []dbtest.ColdSide {
	sides := []dbtest.ColdSide{
		{Name: "turnkeep", Start: coldTurnkeep},
		{Name: "langchaingo-style-modernc", Start: func(ctx context.Context, path string) (func() error, error) {
			return coldLangchaingo(ctx, "sqlite", sqliteModerncDSN, path)
		}},
	}
	if tb == nil {
		return sides
	}
	dir := tb.TempDir()
	ids := sessionIDs("peer", peerSessions)
	sides[0].Path = filepath.Join(dir, "turnkeep.db")
	prefillTurnkeep(tb, "sqlite:///"+sides[0].Path, ids)
	sides[1].Path = filepath.Join(dir, "langchaingo.db")
	if err := prefillSQLiteLangchaingo(tb, "sqlite", sqliteModerncDSN, sides[1].Path, ids).Close(); err != nil {
		tb.Fatal(err)
	}
	return sides
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

// coldLangchaingo is langchaingo's NewSqliteChatMessageHistory on an
// existing file (sql.Open, then its schema's CREATE … IF NOT EXISTS) and
// its first Messages.
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
// µs, and the medians of the per-round ratios of the first side to the
// last, and logs every round.
func reportColdStart(b *testing.B, sides []dbtest.ColdSide, times [][]dbtest.ColdTime) {
	b.Helper()
	last := len(sides) - 1
	wall, cpu := make([][]float64, len(sides)), make([][]float64, len(sides))
	var wallRatios, cpuRatios []float64
	for r, t := range times {
		line := fmt.Sprintf("round %2d:", r)
		for i, d := range t {
			wall[i] = append(wall[i], float64(d.Wall.Microseconds()))
			cpu[i] = append(cpu[i], float64(d.CPU.Microseconds()))
			line += fmt.Sprintf(" %s %d µs (CPU %d µs);", sides[i].Name, d.Wall.Microseconds(), d.CPU.Microseconds())
		}
		wallRatios = append(wallRatios, float64(t[0].Wall)/float64(t[last].Wall))
		cpuRatios = append(cpuRatios, float64(t[0].CPU)/float64(t[last].CPU))
		b.Logf("%s ratio %.2f (CPU %.2f)", line, wallRatios[r], cpuRatios[r])
	}
	for i, s := range sides {
		b.ReportMetric(dbtest.Median(wall[i]), s.Name+"-µs")
		b.ReportMetric(dbtest.Median(cpu[i]), s.Name+"-cpu-µs")
	}
	b.ReportMetric(dbtest.Median(wallRatios), "ratio")
	b.ReportMetric(dbtest.Median(cpuRatios), "cpu-ratio")
}
