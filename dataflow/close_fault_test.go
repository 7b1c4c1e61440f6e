package dataflow_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
)

// Close of a database whose file was deleted, renamed or replaced while
// it was open never panics, says why it could not fold the WAL in
// (ErrDatabaseReplaced), and opens nothing at the path: it created an
// empty database where the file had been removed, and checkpointed the
// old WAL into it where the file had been renamed, emptying the WAL the
// renamed file still needed. Put back, a renamed file holds every
// committed row.
func TestCloseDatabaseReplaced(t *testing.T) {
	tests := []struct {
		name    string
		replace func(t *testing.T, path string)
		// after checks the path once Close has returned.
		after func(t *testing.T, path string)
	}{
		{"removed", func(t *testing.T, path string) {
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}, func(t *testing.T, path string) {
			_, err := os.Stat(path)
			assert.ErrorIs(t, err, fs.ErrNotExist, "Close created a database at the path")
		}},
		{"renamed", func(t *testing.T, path string) {
			require.NoError(t, os.Rename(path, path+".moved"))
		}, func(t *testing.T, path string) {
			_, err := os.Stat(path)
			require.ErrorIs(t, err, fs.ErrNotExist, "Close created a database at the path")
			require.NoError(t, os.Rename(path+".moved", path))
			db := open(t, "sqlite:///"+path)
			items := register[frozenItem](t, db)
			n, err := items.Count(testCtx(t, 10*time.Second), dataflow.Filter{})
			require.NoError(t, err)
			assert.Equal(t, 20, n, "rows committed before the rename, after putting it back")
		}},
		// A restore: another database put in place. Close leaves it as
		// it is.
		{"replaced by another database", func(t *testing.T, path string) {
			other := filepath.Join(t.TempDir(), "other.db")
			odb := open(t, "sqlite:///"+other)
			oitems := register[frozenItem](t, odb)
			require.NoError(t, oitems.Create(t.Context(), &frozenItem{ID: 99, Name: "other"}))
			require.NoError(t, odb.Close())
			data, err := os.ReadFile(other)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path+".restore", data, 0o600))
			require.NoError(t, os.Rename(path+".restore", path))
		}, func(t *testing.T, path string) {
			// The restored file is as it was put there (the old WAL
			// beside it was not folded into it).
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(filepath.Dir(path), "restored.copy"))
			require.NoError(t, err)
			assert.True(t, bytes.Equal(got, want), "Close wrote into the restored file")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "test.db")
			// Checkpoints only at Close, so that the rows are still in the
			// WAL when the file goes.
			db := open(t, "sqlite:///"+path, dataflow.WithCheckpointEvery(1<<20))
			items := register[frozenItem](t, db)
			ctx := testCtx(t, 10*time.Second)
			for id := int64(1); id <= 20; id++ {
				require.NoError(t, items.Create(ctx, &frozenItem{ID: id, Name: "a"}))
			}

			tt.replace(t, path)
			if data, err := os.ReadFile(path); err == nil {
				require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(path), "restored.copy"), data, 0o600))
			}
			var err error
			require.NotPanics(t, func() { err = db.Close() })
			require.ErrorIs(t, err, dataflow.ErrDatabaseReplaced)
			assert.Contains(t, err.Error(), path, "the error names the file")
			tt.after(t, path)
		})
	}
}
