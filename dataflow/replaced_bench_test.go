package dataflow_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/turnkeep/turnkeep/dataflow"
)

// BenchmarkRunInTxSQLite is a write transaction of one statement on a
// SQLite file: its cost bounds what the per-transaction check that the
// file is still in place (one stat, see ErrDatabaseReplaced) may add.
// "stat" is that check alone.
func BenchmarkRunInTxSQLite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.db")
	db := open(b, "sqlite:///"+path)
	items := register[frozenItem](b, db)
	ctx := context.Background()
	if err := items.EnsureTable(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("tx", func(b *testing.B) {
		b.ReportAllocs()
		row := frozenItem{ID: 1, Name: "a"}
		for b.Loop() {
			err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				return items.WithTx(tx).Upsert(ctx, &row)
			}, items)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := os.Stat(path); err != nil {
				b.Fatal(err)
			}
		}
	})
}
