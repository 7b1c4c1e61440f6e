package dataflow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// Each benchmark runs an operation through dataflow and, beside it, the same
// statement through plain bun on the same database, so the ratio
// dataflow/bun is read from one run:
//
//	go test -run XXX -bench . -benchtime 2000x -count 3 ./dataflow/
//
// PostgreSQL runs too when TURNKEEP_POSTGRES_URL is set.

// benchRow is the model of every benchmark, for dataflow and bun alike: a
// conversation message, the row turnkeep writes most.
type benchRow struct {
	bun.BaseModel `bun:"table:bench_rows"`

	ID      int64     `bun:"id,pk,autoincrement"`
	Session string    `bun:"session,notnull"`
	Seq     int64     `bun:"seq,notnull"`
	Role    string    `bun:"role,notnull"`
	Content string    `bun:"content,notnull"`
	Created time.Time `bun:"created,notnull"`
}

const (
	benchSessions = 10
	benchPerSess  = 100 // seeded rows per session
	benchBulk     = 100 // rows per BulkCreate
)

var (
	benchTime         = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	benchSessionNames = func() (out [benchSessions]string) {
		for i := range out {
			out[i] = fmt.Sprintf("s%d", i)
		}
		return out
	}()
)

func benchNewRow(i int) benchRow {
	return benchRow{
		Session: benchSessionNames[i%benchSessions],
		Seq:     int64(i),
		Role:    "user",
		Content: "a message of ordinary length, say forty-five bytes or so",
		Created: benchTime,
	}
}

// benchEnv is one database with the benchmark table ensured and seeded.
type benchEnv struct {
	bun  *bun.DB // db.Bun(): the same pool dataflow uses
	rows *dataflow.Table[benchRow]
	ids  []int64 // of the seeded rows
}

// benchDialects runs fn as a sub-benchmark per dialect ("sqlite", "pg",
// "mysql"), each on a fresh database; pg is skipped without
// TURNKEEP_POSTGRES_URL, mysql without TURNKEEP_MYSQL_URL.
// The set-up runs once per dialect, outside fn's sub-benchmarks.
func benchDialects(b *testing.B, fn func(b *testing.B, e *benchEnv)) {
	for _, d := range []dbtest.Dialect{{Name: "sqlite", URL: dbtest.SQLiteURL}, {Name: "pg", URL: dbtest.PostgresURL}, {Name: "mysql", URL: dbtest.MySQLURL}} {
		b.Run(d.Name, func(b *testing.B) {
			ctx := context.Background()
			db, err := dataflow.Open(ctx, d.URL(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			rows, err := dataflow.Register[benchRow](db, dataflow.WithIndex("bench_rows_session_idx", "session", "seq"))
			if err != nil {
				b.Fatal(err)
			}
			if err := rows.EnsureTable(ctx); err != nil {
				b.Fatal(err)
			}
			seed := make([]benchRow, benchSessions*benchPerSess)
			for i := range seed {
				seed[i] = benchNewRow(i)
			}
			if err := rows.BulkCreate(ctx, seed); err != nil {
				b.Fatal(err)
			}
			e := &benchEnv{bun: db.Bun(), rows: rows}
			for _, r := range seed {
				e.ids = append(e.ids, r.ID)
			}
			fn(b, e)
		})
	}
}

// benchPair runs the dataflow and the bun variant of one operation as the
// sub-benchmarks "dataflow" and "bun". Each is warmed up (statement caches,
// the pool) before the timer starts.
func benchPair(b *testing.B, dataflowOp, bunOp func(ctx context.Context, i int) error) {
	for _, v := range []struct {
		name string
		op   func(ctx context.Context, i int) error
	}{{"dataflow", dataflowOp}, {"bun", bunOp}} {
		b.Run(v.name, func(b *testing.B) {
			ctx := context.Background()
			for i := range 10 {
				if err := v.op(ctx, i); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if err := v.op(ctx, i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkCreate(b *testing.B) {
	benchDialects(b, func(b *testing.B, e *benchEnv) {
		benchPair(b,
			func(ctx context.Context, i int) error {
				row := benchNewRow(i)
				return e.rows.Create(ctx, &row)
			},
			func(ctx context.Context, i int) error {
				row := benchNewRow(i)
				_, err := e.bun.NewInsert().Model(&row).Exec(ctx)
				return err
			})
	})
}

func BenchmarkRead(b *testing.B) {
	benchDialects(b, func(b *testing.B, e *benchEnv) {
		benchPair(b,
			func(ctx context.Context, i int) error {
				row, err := e.rows.Read(ctx, e.ids[i%len(e.ids)])
				if err == nil && row.ID != e.ids[i%len(e.ids)] {
					err = fmt.Errorf("read id %d; want %d", row.ID, e.ids[i%len(e.ids)])
				}
				return err
			},
			func(ctx context.Context, i int) error {
				var row benchRow
				err := e.bun.NewSelect().Model(&row).Where("id = ?", e.ids[i%len(e.ids)]).Scan(ctx)
				if err == nil && row.ID != e.ids[i%len(e.ids)] {
					err = fmt.Errorf("read id %d; want %d", row.ID, e.ids[i%len(e.ids)])
				}
				return err
			})
	})
}

// BenchmarkList selects ten rows of one session: the shape of loading a
// conversation's context.
func BenchmarkList(b *testing.B) {
	benchDialects(b, func(b *testing.B, e *benchEnv) {
		check := func(n int, err error) error {
			if err == nil && n != 10 {
				err = fmt.Errorf("listed %d rows; want 10", n)
			}
			return err
		}
		benchPair(b,
			func(ctx context.Context, i int) error {
				rows, err := e.rows.List(ctx, dataflow.Query{
					Filter: dataflow.Filter{"session": benchSessionNames[i%benchSessions]},
					Limit:  10,
				})
				return check(len(rows), err)
			},
			func(ctx context.Context, i int) error {
				var rows []benchRow
				err := e.bun.NewSelect().Model(&rows).
					Where("session = ?", benchSessionNames[i%benchSessions]).
					Order("id").Limit(10).Scan(ctx)
				return check(len(rows), err)
			})
	})
}

func BenchmarkBulkCreate(b *testing.B) {
	benchDialects(b, func(b *testing.B, e *benchEnv) {
		batch := func(i int) []benchRow {
			rows := make([]benchRow, benchBulk)
			for j := range rows {
				rows[j] = benchNewRow(i*benchBulk + j)
			}
			return rows
		}
		benchPair(b,
			func(ctx context.Context, i int) error {
				return e.rows.BulkCreate(ctx, batch(i))
			},
			func(ctx context.Context, i int) error {
				rows := batch(i)
				_, err := e.bun.NewInsert().Model(&rows).Exec(ctx)
				return err
			})
	})
}

// BenchmarkEnsureTableHit is the cost every operation pays to ask whether
// its table is ready, once it is. Target: < 10 ns/op, 0 allocs/op, flat
// under RunParallel.
func BenchmarkEnsureTableHit(b *testing.B) {
	ctx := context.Background()
	db, err := dataflow.Open(ctx, dbtest.SQLiteURL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	rows, err := dataflow.Register[benchRow](db)
	if err != nil {
		b.Fatal(err)
	}
	if err := rows.EnsureTable(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if err := rows.Ready(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := rows.Ready(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
