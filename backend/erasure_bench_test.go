package backend

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// BenchmarkErasureCost is what erasure costs on SQLite (issue 16, item 4):
// each operation with the previous release's settings ("old": PRAGMA
// secure_delete off, the search index's secure-delete option off) beside
// the new ones ("new": both on), and with the PRAGMA alone
// ("pragma-only") and the search index's option alone ("fts5-only"), in
// one run. It reports ns/op and the WAL pages (frames) an operation
// appends. A clear or delete-user operation removes two sessions of ten
// turns (40 messages).
//
//	go test -run '^$' -bench BenchmarkErasureCost -benchtime 100x ./backend
//
// The databases are opened as Open opens them (WAL, synchronous=NORMAL,
// BEGIN IMMEDIATE) but through dataflow.New, whose connections are the
// caller's, so that the old setting can be had; checkpoints run between
// batches of operations, off the clock, so that both variants pay the
// same.
func BenchmarkErasureCost(b *testing.B) {
	for _, op := range []string{"save", "clear", "delete-user"} {
		for _, v := range []struct {
			name         string
			pragma, fts5 bool
		}{{"old", false, false}, {"pragma-only", true, false}, {"fts5-only", false, true}, {"new", true, true}} {
			b.Run(op+"/"+v.name, func(b *testing.B) {
				ctx := context.Background()
				m, db, path := erasureBenchOpen(b, v.pragma, v.fts5)
				turn := func(i int) driver.Turn {
					return driver.Turn{
						User:  fmt.Sprintf("question %d about %s", i, strings.Repeat("lantern harbour velvet orchard ", 6)),
						Agent: fmt.Sprintf("answer %d: %s", i, strings.Repeat("copper meadow saffron glacier thimble ", 10)),
					}
				}
				// A database that holds something: 200 sessions of 5 turns.
				for s := range 200 {
					for j := range 5 {
						require.NoError(b, m.SaveTurn(ctx, fmt.Sprint("base-", s), turn(j)))
					}
				}
				// Frames appended since the last checkpoint: the -wal
				// file only grows between them (no automatic checkpoint).
				var frames int64
				walFrames := func() int64 {
					fi, err := os.Stat(path + "-wal")
					require.NoError(b, err)
					return max(0, (fi.Size()-32)/(24+4096))
				}
				checkpoint := func() {
					frames += walFrames()
					rows, err := db.QueryContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
					require.NoError(b, err)
					var busy, log, done int64
					require.NoError(b, scanOne(rows, &busy, &log, &done))
					require.Zero(b, busy)
				}
				checkpoint()
				frames = 0
				var deleted int64 // frames the clears or deletions appended
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					switch op {
					case "save":
						require.NoError(b, m.SaveTurn(ctx, fmt.Sprint("base-", i%200), turn(i)))
					case "clear", "delete-user":
						b.StopTimer()
						user := fmt.Sprint("u", i)
						for s := range 2 {
							id := fmt.Sprintf("gone-%d-%d", i, s)
							require.NoError(b, m.CreateSession(ctx, driver.SessionInfo{ID: id, User: user}))
							for j := range 10 {
								require.NoError(b, m.SaveTurn(ctx, id, turn(j)))
							}
						}
						checkpoint()
						frames = 0
						b.StartTimer()
						if op == "clear" {
							require.NoError(b, m.Clear(ctx, fmt.Sprintf("gone-%d-0", i)))
							require.NoError(b, m.Clear(ctx, fmt.Sprintf("gone-%d-1", i)))
						} else {
							_, err := m.DeleteUser(ctx, user)
							require.NoError(b, err)
						}
						b.StopTimer()
						deleted += walFrames()
						b.StartTimer()
					}
					if op == "save" && (i+1)%200 == 0 {
						b.StopTimer()
						checkpoint()
						b.StartTimer()
					}
				}
				b.StopTimer()
				if op == "save" {
					checkpoint()
					deleted = frames
				}
				b.ReportMetric(float64(deleted)/float64(b.N), "wal-pages/op")
			})
		}
	}
}

// erasureBenchOpen opens a new SQLite file with Open's settings, PRAGMA
// secure_delete on or off, and returns a memory on it (its search index
// made, with its secure-delete option on or off), the DB and the file.
func erasureBenchOpen(b *testing.B, pragma, fts5 bool) (*memory.PersistentBufferMemory, *dataflow.DB, string) {
	b.Helper()
	ctx := context.Background()
	onOff := map[bool]string{false: "0", true: "1"}
	on := onOff[pragma]
	path := filepath.Join(b.TempDir(), "bench.db")
	sqldb, err := sql.Open(dataflow.SQLiteDriver, "file://"+path+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)"+
		"&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(0)&_pragma=secure_delete("+on+")&_txlock=immediate")
	require.NoError(b, err)
	b.Cleanup(func() { sqldb.Close() })
	_, err = sqldb.ExecContext(ctx, "PRAGMA journal_mode=WAL")
	require.NoError(b, err)
	db, err := dataflow.New(bun.NewDB(sqldb, sqlitedialect.New()))
	require.NoError(b, err)
	b.Cleanup(func() { db.Close() })
	be, err := NewDataFlowBackend(db)
	require.NoError(b, err)
	require.NoError(b, be.EnsureSearchIndex(ctx))
	_, err = db.ExecContext(ctx, `INSERT INTO `+SearchTable+`(`+SearchTable+`, rank) VALUES ('secure-delete', `+onOff[fts5]+`)`)
	require.NoError(b, err)
	m, err := memory.NewPersistentBufferMemory(be)
	require.NoError(b, err)
	return m, db, path
}
