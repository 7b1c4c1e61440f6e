package dataflow

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite" // registers "sqlite"
)

// ckptRow is a small message row, about 400 bytes.
type ckptRow struct {
	bun.BaseModel `bun:"table:ckpt_rows"`

	ID      int64  `bun:"id,pk,autoincrement"`
	Session string `bun:"session,notnull"`
	Content string `bun:"content,notnull"`
}

var ckptContent = strings.Repeat("a message of ordinary length. ", 13) // 390 bytes

// ckptOpen opens a SQLite file under t.TempDir() with the ckpt_rows table
// ready, and returns it with the file's path.
func ckptOpen(t *testing.T, opts ...Option) (*DB, *Table[ckptRow], string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	db, err := Open(t.Context(), "sqlite:///"+path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	rows, err := Register[ckptRow](db)
	require.NoError(t, err)
	require.NoError(t, rows.EnsureTable(t.Context()))
	return db, rows, path
}

// ckptWrite commits n transactions of one row each.
func ckptWrite(ctx context.Context, t *testing.T, db *DB, rows *Table[ckptRow], n int) {
	t.Helper()
	ckptWriteFor(ctx, t, db, rows, n, time.Hour)
}

// ckptWriteFor commits up to n transactions of one row each, for at most
// d, and returns how many it committed.
func ckptWriteFor(ctx context.Context, t *testing.T, db *DB, rows *Table[ckptRow], n int, d time.Duration) int {
	t.Helper()
	stop := time.Now().Add(d)
	for i := range n {
		if time.Now().After(stop) {
			return i
		}
		err := db.RunInTx(ctx, func(ctx context.Context, tx *Tx) error {
			return rows.WithTx(tx).Create(ctx, &ckptRow{Session: "s", Content: ckptContent})
		}, rows)
		require.NoError(t, err, "transaction %d", i)
	}
	return n
}

// walSize is the size of the -wal file beside path; 0 if there is none.
func walSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path + "-wal")
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return fi.Size()
}

// holdOpen opens another connection to the file at path, as another
// process would, so that closing the DB is not the last close (which makes
// SQLite checkpoint and delete the WAL by itself).
func holdOpen(t *testing.T, path string) *sql.DB {
	other, err := sql.Open(SQLiteDriver, "file:"+path+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	var n int
	require.NoError(t, other.QueryRow("SELECT count(*) FROM ckpt_rows").Scan(&n))
	return other
}

// Under sustained small transactions with two readers in a loop, the WAL
// file stays within boundFactor×every frames, no COMMIT checkpoints, and Close
// leaves the WAL empty even while another connection keeps the file open.
//
// Each case writes 20,000 transactions (4,000 with -short), or as many as
// it can in 8 s (2 s with -short): the race detector makes SQLite many
// times slower. Every transaction adds at least one frame to the WAL; a
// case that cannot write twice the bound is skipped, saying so.
func TestCheckpointWALBound(t *testing.T) {
	txs, budget := 20000, 8*time.Second
	if testing.Short() {
		txs, budget = 4000, 2*time.Second
	}
	tests := []struct {
		name  string
		opts  []Option
		every int
	}{
		{"default", nil, DefaultCheckpointEvery},
		// Below the default, what writers add while one checkpoint syncs
		// (two fsyncs) outgrows 8×every: see boundFactor.
		{"every 2000", []Option{WithCheckpointEvery(2000)}, 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			db, rows, path := ckptOpen(t, tt.opts...)
			require.NotNil(t, db.ckpt)
			first := &ckptRow{Session: "s", Content: ckptContent}
			require.NoError(t, rows.Create(ctx, first))
			other := holdOpen(t, path)

			var pageSize int64
			require.NoError(t, db.sql.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize))
			bound := int64(walHeaderSize) + boundFactor*int64(tt.every)*(walFrameHeaderSize+pageSize)

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var reads atomic.Int64
			var maxWAL atomic.Int64
			for range 2 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := rows.Read(ctx, first.ID); err != nil {
							t.Errorf("read: %v", err)
							return
						}
						reads.Add(1)
						time.Sleep(time.Millisecond) // on 2 cores, let the writer run
					}
				})
			}
			wg.Go(func() { // the file only grows until a TRUNCATE, which the test rules out below
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for {
					if n := walSize(t, path); n > maxWAL.Load() {
						maxWAL.Store(n)
					}
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			})
			start := time.Now()
			txs := ckptWriteFor(ctx, t, db, rows, txs, budget)
			elapsed := time.Since(start)
			close(stop)
			wg.Wait()

			if written := int64(txs) * (walFrameHeaderSize + pageSize); written <= 2*bound {
				t.Skipf("only %d transactions in %v (race detector, or a busy machine): too few to reach twice the bound of %d bytes", txs, elapsed, bound)
			}
			assert.LessOrEqual(t, maxWAL.Load(), bound, "WAL file grew to %d bytes; want at most %d (%d×%d frames)", maxWAL.Load(), bound, boundFactor, tt.every)
			assert.Greater(t, reads.Load(), int64(0), "the readers never read")
			c := db.ckpt
			assert.Greater(t, c.counts[ckptPassive].Load(), uint64(0), "no PASSIVE checkpoint ran")
			assert.Zero(t, c.counts[ckptTruncate].Load(), "TRUNCATE ran: no long reader should have made the file grow")
			t.Logf("%d transactions in %v; %d reads; WAL at most %d bytes (bound %d); checkpoints: %d passive, %d restart (%d gave up)",
				txs, elapsed, reads.Load(), maxWAL.Load(), bound, c.counts[ckptPassive].Load(), c.counts[ckptRestart].Load(), c.busy[ckptRestart].Load())

			require.NoError(t, db.Close())
			assert.Zero(t, walSize(t, path), "Close left the WAL non-empty")
			var n int
			require.NoError(t, other.QueryRowContext(ctx, "SELECT count(*) FROM ckpt_rows").Scan(&n))
			assert.Equal(t, txs+1, n)
		})
	}
}

// A reader holding a snapshot pins the WAL: it grows past the bound while
// the reader lasts, nothing blocks, and once the reader ends a TRUNCATE
// shrinks the file back.
func TestCheckpointLongReader(t *testing.T) {
	const every = 100
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db, rows, path := ckptOpen(t, WithCheckpointEvery(every))
	require.NoError(t, rows.Create(ctx, &ckptRow{Session: "s", Content: ckptContent}))
	var pageSize int64
	require.NoError(t, db.sql.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize))
	bound := int64(walHeaderSize) + boundFactor*every*(walFrameHeaderSize+pageSize)

	reader, err := db.sql.Conn(ctx)
	require.NoError(t, err)
	defer reader.Close()
	_, err = reader.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	var n int
	require.NoError(t, reader.QueryRowContext(ctx, "SELECT count(*) FROM ckpt_rows").Scan(&n))

	start := time.Now()
	ckptWrite(ctx, t, db, rows, 4*boundFactor*every)
	pinned := walSize(t, path)
	assert.Greater(t, pinned, bound, "the WAL did not grow while a reader pinned it")
	// A RESTART waiting for the reader would hold each writer up for
	// restartBusyTimeout (80 s for the 3,200); none is tried while
	// PASSIVE cannot copy all. The bound is half that: the writes take
	// 12 s under -race here, 5 s of it the throttle's waits, and a loaded
	// 2-core machine runs them over twice as slowly.
	assert.Less(t, time.Since(start), 4*boundFactor*every*restartBusyTimeout/2, "writers were held up by the pinned WAL")
	require.NoError(t, reader.QueryRowContext(ctx, "SELECT count(*) FROM ckpt_rows").Scan(&n))
	assert.Equal(t, 1, n, "the reader lost its snapshot")

	_, err = reader.ExecContext(ctx, "COMMIT")
	require.NoError(t, err)
	deadline := time.Now().Add(20 * time.Second)
	for walSize(t, path) > bound && time.Now().Before(deadline) {
		ckptWrite(ctx, t, db, rows, 10)
	}
	assert.LessOrEqual(t, walSize(t, path), bound, "the WAL file did not shrink back after the reader ended (it was %d bytes)", pinned)
	assert.Greater(t, db.ckpt.counts[ckptTruncate].Load(), uint64(0), "no TRUNCATE ran")
}

// Close returns within its bound even when another connection's reader
// keeps the WAL from being folded in, and loses nothing.
func TestCheckpointCloseBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db, rows, path := ckptOpen(t)
	ckptWrite(ctx, t, db, rows, 50)
	other := holdOpen(t, path)
	tx, err := other.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	require.NoError(t, err)
	defer tx.Rollback()
	var n int
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT count(*) FROM ckpt_rows").Scan(&n))
	ckptWrite(ctx, t, db, rows, 50)

	start := time.Now()
	require.NoError(t, db.Close())
	assert.Less(t, time.Since(start), closeBusyTimeout+2*time.Second, "Close took too long")
	assert.Positive(t, walSize(t, path), "the WAL was folded in under a reader's snapshot")
	require.NoError(t, tx.Rollback())

	require.NoError(t, other.QueryRowContext(ctx, "SELECT count(*) FROM ckpt_rows").Scan(&n))
	assert.Equal(t, 100, n)
}

// Open sets wal_autocheckpoint=0 on every connection while it checkpoints
// in the background, and leaves SQLite's default with
// WithCheckpointEvery(0); the option is validated, ignored for in-memory
// databases, and refused by New.
func TestCheckpointOption(t *testing.T) {
	tests := []struct {
		name       string
		opts       []Option
		autoPages  int64
		background bool
	}{
		{"default", nil, 0, true},
		{"every 5000", []Option{WithCheckpointEvery(5000)}, 0, true},
		{"automatic", []Option{WithCheckpointEvery(0)}, 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			db, _, _ := ckptOpen(t, tt.opts...)
			assert.Equal(t, tt.background, db.ckpt != nil, "background checkpointer")
			for i := range 3 { // held at once, so each is another connection
				conn, err := db.sql.Conn(ctx)
				require.NoError(t, err)
				defer conn.Close()
				var pages int64
				require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages))
				assert.Equal(t, tt.autoPages, pages, "conn %d wal_autocheckpoint", i)
			}
		})
	}
	t.Run("negative", func(t *testing.T) {
		_, err := Open(t.Context(), "sqlite:///"+filepath.Join(t.TempDir(), "x.db"), WithCheckpointEvery(-1))
		require.ErrorIs(t, err, ErrInvalidOption)
	})
	t.Run("memory", func(t *testing.T) {
		db, err := Open(t.Context(), ":memory:", WithCheckpointEvery(10))
		require.NoError(t, err)
		defer db.Close()
		assert.Nil(t, db.ckpt)
	})
	t.Run("New is refused", func(t *testing.T) {
		bdb := bun.NewDB(&sql.DB{}, sqlitedialect.New()) // never used for I/O
		_, err := New(bdb, WithCheckpointEvery(DefaultCheckpointEvery))
		require.ErrorIs(t, err, ErrInvalidOption)
		assert.Contains(t, err.Error(), "Open-only")
		_, err = New(bdb, WithCheckpointEvery(0))
		require.ErrorIs(t, err, ErrInvalidOption, "even 0: New cannot honour it")
	})
}
