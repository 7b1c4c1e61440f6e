package tests

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

// sqliteFull is SQLite's result code for a full disk (SQLITE_FULL).
const sqliteFull = 13

// bigTurn is a turn of about 4 KiB, so that a small disk fills in a few
// hundred saves.
func bigTurn(id string) memory.Turn {
	return memory.Turn{ID: id, User: "u:" + id + ":" + strings.Repeat("x", 4096), Agent: "a:" + id}
}

// storedTurnIDs opens url afresh, as a restarted process would, and returns
// the IDs of the turns session holds, oldest first, and its turn count.
func storedTurnIDs(t *testing.T, url, session string) ([]string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := dataflow.Open(ctx, url)
	require.NoError(t, err, "reopen")
	defer db.Close()
	w, err := memoryOn(t, db, memory.WithCacheTTL(0), memory.WithMaxTurns(1<<20)).LoadContext(ctx, session)
	require.NoError(t, err, "LoadContext after reopening")
	ids := make([]string, len(w.Turns))
	for i, turn := range w.Turns {
		ids[i] = turn.ID
	}
	return ids, w.TurnCount
}

// closeAll closes m and then db as an application does, failing the test
// if either panics or if Close takes longer than the checkpointer's bound
// (5 s to stop, 5 s to fold the WAL in). It returns db.Close's error.
func closeAll(t *testing.T, m *memory.PersistentBufferMemory, db *dataflow.DB) error {
	t.Helper()
	require.NoError(t, callNoPanic(t, "memory Close", m.Close))
	start := time.Now()
	err := callNoPanic(t, "DB Close", db.Close)
	if d := time.Since(start); d > 11*time.Second {
		t.Errorf("DB Close took %v", d)
	}
	require.NoError(t, callNoPanic(t, "DB Close again", db.Close), "a second Close")
	return err
}

// TestCloseDiskFull fills a small tmpfs until saves fail with SQLITE_FULL
// while the final checkpoint of Close cannot grow the database file
// either. Close must not panic (it did: the checkpointer discarded a nil
// connection) and must report the failed checkpoint; a save that failed is
// not stored, and once there is room again every acknowledged turn is.
//
// It needs root, to mount the tmpfs, as CI runs it; otherwise it skips.
func TestCloseDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("TestCloseDiskFull skipped: it mounts a 2 MiB tmpfs, which needs root (CI runs it as root)")
	}
	dir := filepath.Join(t.TempDir(), "small")
	require.NoError(t, os.Mkdir(dir, 0o755))
	if err := run(t, "mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir); err != nil {
		t.Skipf("TestCloseDiskFull skipped: cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := run(t, "umount", dir); err != nil {
			// Files left open (by a Close that failed) keep it busy:
			// detach it all the same.
			t.Errorf("umount %s: %v", dir, err)
			_ = run(t, "umount", "-l", dir)
		}
	})
	path := filepath.Join(dir, "full.db")
	url := "sqlite:///" + path
	ctx := context.Background()

	db := openDB(t, url)
	m := memoryOn(t, db, memory.WithMaxTurns(1<<20))
	var acked, failed []string
	save := func(id string) error {
		sctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		err := callNoPanic(t, "SaveTurn", func() error { return m.SaveTurn(sctx, "s", bigTurn(id)) })
		if err != nil {
			failed = append(failed, id)
		} else {
			acked = append(acked, id)
		}
		return err
	}
	for i := range 5 {
		require.NoError(t, save(fmt.Sprintf("t%04d", i)))
	}

	// A reader holding a snapshot pins what is written after it in the
	// WAL, so that no background checkpoint copies it into the database
	// file: the disk fills with WAL, and Close's checkpoint has to grow
	// the database file on a full disk.
	reader, _ := openChecker(t, url)
	rconn, err := reader.Conn(ctx)
	require.NoError(t, err)
	_, err = rconn.ExecContext(ctx, "BEGIN")
	require.NoError(t, err)
	var n int
	require.NoError(t, rconn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n))

	var full error
	for i := 5; i < 2000 && full == nil; i++ {
		full = save(fmt.Sprintf("t%04d", i))
	}
	require.Error(t, full, "2000 saves of 4 KiB fitted on a 2 MiB disk")
	var serr *sqlite.Error
	require.ErrorAs(t, full, &serr, "a full disk: %v", full)
	require.Equal(t, sqliteFull, serr.Code()&0xff, "got %v; want SQLITE_FULL", full)
	// The disk stays full: the next saves fail too, or are acknowledged
	// (and then must be stored).
	for i := range 3 {
		_ = save(fmt.Sprintf("after%d", i))
	}
	_, err = rconn.ExecContext(ctx, "ROLLBACK")
	require.NoError(t, err)
	require.NoError(t, rconn.Close())
	t.Logf("%d saves acknowledged, %d failed; first failure: %v", len(acked), len(failed), full)

	err = closeAll(t, m, db)
	require.Error(t, err, "Close could not fold the WAL into the database file on a full disk")
	require.ErrorAs(t, err, &serr, "Close's error wraps the driver's: %v", err)
	assert.Equal(t, sqliteFull, serr.Code()&0xff, "got %v; want SQLITE_FULL", err)
	t.Logf("Close: %v", err)

	// Room again: every acknowledged turn is there, and no failed one.
	require.NoError(t, run(t, "mount", "-o", "remount,size=64m", dir))
	ids, count := storedTurnIDs(t, url, "s")
	assert.Equal(t, acked, ids, "the acknowledged turns, in order")
	assert.Equal(t, len(acked), count, "TurnCount")
	for _, id := range failed {
		assert.NotContains(t, ids, id, "a save that failed is stored")
	}
}

// TestCloseDatabaseDeleted closes a memory whose SQLite file was deleted or
// renamed while it was open. Writes fail with ErrDatabaseReplaced; Close
// must not panic, must not create a new database at the path (it did: its
// final checkpoint opened a connection there, which also folded the old
// WAL into that new, empty file, so a renamed database put back lost every
// acknowledged turn not yet checkpointed), and says why it could not fold
// the WAL in.
func TestCloseDatabaseDeleted(t *testing.T) {
	tests := []struct {
		name string
		// remove takes the database file at path away.
		remove func(t *testing.T, path string)
		// restore, if set, puts it back after Close: every acknowledged
		// turn must be there.
		restore func(t *testing.T, path string)
	}{
		{"removed with its WAL", func(t *testing.T, path string) {
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}, nil},
		{"renamed", func(t *testing.T, path string) {
			require.NoError(t, os.Rename(path, path+".moved"))
		}, func(t *testing.T, path string) {
			require.NoError(t, os.Rename(path+".moved", path))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "test.db")
			url := "sqlite:///" + path
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// Checkpoints only at Close, so that the acknowledged turns
			// are still in the WAL when the file goes.
			db := openDB(t, url, dataflow.WithCheckpointEvery(1<<20))
			m := memoryOn(t, db, memory.WithMaxTurns(1<<20))
			var acked []string
			for i := range 20 {
				id := fmt.Sprintf("t%02d", i)
				require.NoError(t, m.SaveTurn(ctx, "s", idTurn(id)))
				acked = append(acked, id)
			}

			tt.remove(t, path)
			err := callNoPanic(t, "SaveTurn", func() error { return m.SaveTurn(ctx, "s", idTurn("late")) })
			require.ErrorIs(t, err, dataflow.ErrDatabaseReplaced)

			err = closeAll(t, m, db)
			assert.ErrorIs(t, err, dataflow.ErrDatabaseReplaced, "Close says why the WAL was not folded in")
			_, statErr := os.Stat(path)
			assert.ErrorIs(t, statErr, fs.ErrNotExist, "Close created a database at %s", path)

			if tt.restore == nil {
				return
			}
			tt.restore(t, path)
			ids, count := storedTurnIDs(t, url, "s")
			assert.Equal(t, acked, ids, "the acknowledged turns, in order")
			assert.Equal(t, len(acked), count, "TurnCount")
			assert.False(t, slices.Contains(ids, "late"), "the refused save is stored")
		})
	}
}
