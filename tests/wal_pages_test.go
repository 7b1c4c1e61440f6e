package tests

// WAL pages per save (issue 17, item 4): how many pages a 2-message save
// appends to the SQLite -wal file, at SQLite's default 4,096-byte page, in
// a database of walSessions sessions of walTurns turns, and which b-tree
// each page belongs to. Deterministic: the same saves on the same database
// append the same frames.
//
//	go test ./tests -run 'TestWALPages' -v -count=1

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // "sqlite", for the page map (dbstat)

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

const (
	walSessions = 1000 // sessions of the measured database
	walTurns    = 50   // turns per session before the measured saves
	walWarmup   = 200  // saves before the measured ones (FTS5 reaches its merge rhythm)
	walMeasured = 400  // measured saves
)

// walFrames returns the page number of every frame of the WAL file path
// whose salts match its header's (frames of the current WAL generation).
func walFrames(path string) ([]uint32, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	if len(data) < 32 {
		return nil, 0, nil
	}
	pageSize := int(binary.BigEndian.Uint32(data[8:12]))
	salt1, salt2 := binary.BigEndian.Uint32(data[16:20]), binary.BigEndian.Uint32(data[20:24])
	var pages []uint32
	for off := 32; off+24+pageSize <= len(data); off += 24 + pageSize {
		h := data[off : off+24]
		if binary.BigEndian.Uint32(h[8:12]) != salt1 || binary.BigEndian.Uint32(h[12:16]) != salt2 {
			break
		}
		pages = append(pages, binary.BigEndian.Uint32(h[0:4]))
	}
	return pages, pageSize, nil
}

// pageOwners maps each page of the database at path to the b-tree that
// holds it (dbstat's name), "page 1" for the header page and "free" for
// what no b-tree holds (freelist pages).
func pageOwners(ctx context.Context, db *sql.DB) (map[uint32]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT name, pageno FROM dbstat`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	owners := map[uint32]string{}
	for rows.Next() {
		var name string
		var page uint32
		if err := rows.Scan(&name, &page); err != nil {
			return nil, err
		}
		owners[page] = name
	}
	owners[1] = "page 1 (header)"
	return owners, rows.Err()
}

// walCount is what a run of saves appended to the WAL.
type walCount struct {
	saves  int
	frames int
	owners map[string]int // frames per b-tree
}

func (c walCount) perSave() float64 { return float64(c.frames) / float64(c.saves) }

// String lists the pages per save of each b-tree, most first.
func (c walCount) String() string {
	names := make([]string, 0, len(c.owners))
	for n := range c.owners {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if c.owners[names[i]] != c.owners[names[j]] {
			return c.owners[names[i]] > c.owners[names[j]]
		}
		return names[i] < names[j]
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%.2f pages per save (%d frames, %d saves)", c.perSave(), c.frames, c.saves)
	for _, n := range names {
		fmt.Fprintf(&b, "\n  %6.2f  %s", float64(c.owners[n])/float64(c.saves), n)
	}
	return b.String()
}

// countWAL checkpoints the database file (truncating its WAL), runs save
// n times, and counts the frames the saves appended, by owner. Nothing
// else may write, or checkpoint, meanwhile: conn is the connection that
// checkpoints and reads the page map, opened with wal_autocheckpoint=0
// beside writers that checkpoint never (dataflow.WithCheckpointEvery high).
func countWAL(ctx context.Context, t testing.TB, file string, conn *sql.DB, n int, save func(i int) error) walCount {
	t.Helper()
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if frames, _, err := walFrames(file + "-wal"); err != nil || len(frames) != 0 {
		t.Fatalf("WAL after TRUNCATE: %d frames, %v", len(frames), err)
	}
	for i := range n {
		if err := save(i); err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
	}
	frames, pageSize, err := walFrames(file + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if pageSize != 4096 {
		t.Fatalf("page size %d; want SQLite's default 4096", pageSize)
	}
	owners, err := pageOwners(ctx, conn)
	if err != nil {
		t.Fatalf("page map: %v", err)
	}
	c := walCount{saves: n, frames: len(frames), owners: map[string]int{}}
	for _, p := range frames {
		name, ok := owners[p]
		if !ok {
			name = "free"
		}
		c.owners[name]++
	}
	return c
}

// openPageMap opens a plain connection on file for checkpoints and the
// page map.
func openPageMap(t testing.TB, file string) *sql.DB {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(5000)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	conn.SetMaxOpenConns(1)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// copyDB copies the (checkpointed) database file src to a new file under
// dir and returns its path.
func copyDB(t testing.TB, src, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// walSaveOrder is the sessions the warm-up and measured saves go to: a
// random session each, the same on every layout.
func walSaveOrder(n int) []int {
	r := rand.New(rand.NewPCG(17, 4))
	order := make([]int, n)
	for i := range order {
		order[i] = r.IntN(walSessions)
	}
	return order
}

// walPrefillOrder yields the prefill's saves turn by turn across sessions,
// as concurrent chats interleave.
func walPrefillOrder(yield func(session int, seq int64) bool) {
	for seq := int64(1); seq <= walTurns; seq++ {
		for s := range walSessions {
			if !yield(s, seq) {
				return
			}
		}
	}
}

// walTurn is the turn the prefill and the measured saves store in session
// s at seq: two messages of about 120 and 400 bytes of varied words.
func walTurn(s int, seq int64) memory.Turn {
	return memory.Turn{ID: scaleTurnID(s, seq), User: scaleUser(s, seq), Agent: scaleAgent(s, seq)}
}

func walSessionID(s int) string { return fmt.Sprintf("wal-%04d", s) }

// openWALBackend opens the backend on file as the measured saves run it:
// default options but search, and no checkpoint but countWAL's.
func openWALBackend(t testing.TB, file string, search bool) *backend.DataFlowBackend {
	t.Helper()
	db, err := dataflow.Open(context.Background(), "sqlite:///"+file, dataflow.WithCheckpointEvery(1<<30))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b, err := backend.NewDataFlowBackend(db, backend.WithSearchIndex(search))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWALPagesBackend counts the WAL pages of the backend's SaveTurn, with
// and without the search index, and says where they go.
func TestWALPagesBackend(t *testing.T) {
	for _, search := range []bool{true, false} {
		t.Run(fmt.Sprintf("search=%t", search), func(t *testing.T) {
			ctx := context.Background()
			file := filepath.Join(t.TempDir(), "wal.db")
			b := openWALBackend(t, file, search)
			next := make([]int64, walSessions)
			start := time.Now()
			for s, seq := range walPrefillOrder {
				if err := b.SaveTurn(ctx, walSessionID(s), walTurn(s, seq)); err != nil {
					t.Fatal(err)
				}
				next[s] = seq + 1
			}
			t.Logf("prefill %v", time.Since(start))
			conn := openPageMap(t, file)
			order := walSaveOrder(walWarmup + walMeasured)
			save := func(i int) error {
				s := order[i]
				seq := next[s]
				next[s]++
				return b.SaveTurn(ctx, walSessionID(s), walTurn(s, seq))
			}
			for i := range walWarmup {
				if err := save(i); err != nil {
					t.Fatal(err)
				}
			}
			c := countWAL(ctx, t, file, conn, walMeasured, func(i int) error { return save(walWarmup + i) })
			t.Logf("backend, search %t: %v", search, c)
		})
	}
}
