package dataflow_test

import (
	"context"
	"strings"
	"testing"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// BenchmarkSQLiteCommit measures a write transaction of one ~400-byte row
// with SQLite's automatic checkpoint, run inside the COMMIT that takes the
// WAL past 1000 pages ("autocheckpoint", WithCheckpointEvery(0)), beside
// the default background checkpoint ("background"), so the ratio is read
// from one run:
//
//	go test -run '^$' -bench BenchmarkSQLiteCommit -benchtime 20000x -count 5 ./dataflow/
func BenchmarkSQLiteCommit(b *testing.B) {
	content := strings.Repeat("a message of ordinary length. ", 13) // 390 bytes
	for _, v := range []struct {
		name string
		opts []dataflow.Option
	}{
		{"autocheckpoint", []dataflow.Option{dataflow.WithCheckpointEvery(0)}},
		{"background", nil},
	} {
		b.Run(v.name, func(b *testing.B) {
			ctx := context.Background()
			db, err := dataflow.Open(ctx, dbtest.SQLiteURL(b), v.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			rows, err := dataflow.Register[benchRow](db, dataflow.WithIndex("bench_rows_session_idx", "session", "seq"))
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			save := func() error {
				row := benchNewRow(i)
				row.Content = content
				i++
				return db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
					return rows.WithTx(tx).Create(ctx, &row)
				}, rows)
			}
			for range 10 { // the table, statement caches, the pool
				if err := save(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := save(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
