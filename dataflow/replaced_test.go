package dataflow_test

import (
	"context"
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

// A write into a SQLite file that was deleted, renamed or replaced while
// the database was open fails with ErrDatabaseReplaced and writes nothing,
// instead of being acknowledged into a file no path names.
func TestRunInTxDatabaseReplaced(t *testing.T) {
	removeAll := func(t *testing.T, path string) {
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name    string
		replace func(t *testing.T, path string)
	}{
		{"removed", removeAll},
		{"renamed", func(t *testing.T, path string) {
			require.NoError(t, os.Rename(path, path+".moved"))
		}},
		// A copy put in place, as a restore does: copied beside the path,
		// then renamed over it.
		{"replaced by another database", func(t *testing.T, path string) {
			other := filepath.Join(t.TempDir(), "other.db")
			odb := open(t, "sqlite:///"+other)
			oitems := register[frozenItem](t, odb)
			require.NoError(t, oitems.Create(t.Context(), &frozenItem{ID: 9, Name: "other"}))
			require.NoError(t, odb.Close()) // checkpoints the WAL into the file
			data, err := os.ReadFile(other)
			require.NoError(t, err)
			tmp := path + ".restore"
			require.NoError(t, os.WriteFile(tmp, data, 0o600))
			removeAll(t, path)
			require.NoError(t, os.Rename(tmp, path))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "test.db")
			db := open(t, "sqlite:///"+path)
			items := register[frozenItem](t, db)
			ctx := testCtx(t, 10*time.Second)
			save := func(id int64) error {
				return db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
					return items.WithTx(tx).Create(ctx, &frozenItem{ID: id, Name: "a"})
				}, items)
			}
			require.NoError(t, save(1))

			tt.replace(t, path)
			err := save(2)
			require.ErrorIs(t, err, dataflow.ErrDatabaseReplaced)
			assert.Contains(t, err.Error(), path, "the error names the file")
			_, err = items.Read(ctx, int64(2))
			assert.ErrorIs(t, err, dataflow.ErrNotFound, "row 2, in the file the process still holds")
			assert.ErrorIs(t, save(3), dataflow.ErrDatabaseReplaced, "every later write")
		})
	}
}

// A database whose file stays in place writes as usual, and so does an
// in-memory database, which has no file to check.
func TestRunInTxDatabaseInPlace(t *testing.T) {
	for _, url := range []string{"sqlite:///" + filepath.Join(t.TempDir(), "test.db"), ":memory:"} {
		db := open(t, url)
		items := register[frozenItem](t, db)
		ctx := testCtx(t, 10*time.Second)
		for id := int64(1); id <= 3; id++ {
			require.NoError(t, db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				return items.WithTx(tx).Create(ctx, &frozenItem{ID: id, Name: "a"})
			}, items), "%s: row %d", url, id)
		}
	}
}
