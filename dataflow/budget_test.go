package dataflow_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/testutil"
)

type budgetOp struct {
	name string
	want int // statements
	op   func() error
}

// budgetOps are the operations of the statement budget, each with the
// number of statements it may run once its table is ready.
func budgetOps(ctx context.Context, users *dataflow.Table[user], seed *user) []budgetOp {
	now := time.Now()
	return []budgetOp{
		{"Create", 1, func() error { return users.Create(ctx, &user{Name: "c", Created: now}) }},
		{"Read", 1, func() error { _, err := users.Read(ctx, seed.ID); return err }},
		{"Update", 1, func() error { seed.Age++; return users.Update(ctx, seed) }},
		{"Upsert insert", 1, func() error { return users.Upsert(ctx, &user{ID: 1_000_000 + seed.ID, Name: "u", Created: now}) }},
		{"Upsert update", 1, func() error { return users.Upsert(ctx, &user{ID: seed.ID, Name: "seed", Age: 7, Created: now}) }},
		{"List", 1, func() error {
			_, err := users.List(ctx, dataflow.Query{
				Filter: dataflow.Filter{"age": dataflow.Gte(0), "name": dataflow.In("seed", "c")}, OrderBy: []string{"-age"}, Limit: 5, Offset: 1,
			})
			return err
		}},
		{"Count", 1, func() error { _, err := users.Count(ctx, dataflow.Filter{"name": "seed"}); return err }},
		{"BulkCreate", 1, func() error {
			return users.BulkCreate(ctx, []user{{Name: "b1", Created: now}, {Name: "b2", Created: now}, {Name: "b3", Created: now}})
		}},
		{"BulkUpsert", 1, func() error {
			return users.BulkUpsert(ctx, []user{{ID: seed.ID, Name: "seed", Created: now}, {ID: 2_000_000 + seed.ID, Name: "bu", Created: now}})
		}},
		{"BulkUpdate", 1, func() error {
			_, err := users.BulkUpdate(ctx, dataflow.Filter{"name": dataflow.Like("b%")}, map[string]any{"age": 3})
			return err
		}},
		{"BulkDelete", 1, func() error { _, err := users.BulkDelete(ctx, dataflow.Filter{"name": "c"}); return err }},
		{"Delete", 1, func() error { return users.Delete(ctx, &user{ID: 1_000_000 + seed.ID}) }},
		{"Ready", 0, func() error { return users.Ready(ctx) }},
		{"EnsureTable", 0, func() error { return users.EnsureTable(ctx) }},
	}
}

// After a table is ensured, every operation runs only its own statement:
// no catalog query, no history read, no DDL.
func TestStatementBudgetWarm(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db, rec := openRec(t, d.URL(t))
		users := register[user](t, db, dataflow.WithIndex("users_name_idx", "name"))
		require.NoError(t, users.EnsureTable(ctx))
		seed := &user{Name: "seed", Created: time.Now()}
		require.NoError(t, users.Create(ctx, seed))
		ops := budgetOps(ctx, users, seed)
		for _, tt := range ops {
			t.Run(tt.name, func(t *testing.T) {
				rec.reset()
				require.NoError(t, tt.op())
				c := rec.counts()
				assert.Equal(t, tt.want, c.Total, "statements: got %v; want %d", c, tt.want)
				assert.Zero(t, c.Catalog, "catalog statements: %v", c)
				assert.Zero(t, c.History, "history statements: %v", c)
				assert.Zero(t, c.DDL, "DDL statements: %v", c)
			})
		}
		t.Run("in transaction", func(t *testing.T) {
			for i, tt := range ops {
				rec.reset()
				err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
					return budgetOps(ctx, users.WithTx(tx), seed)[i].op()
				})
				require.NoError(t, err, tt.name)
				c := rec.counts()
				assert.Equal(t, tt.want, c.Total, "%s in tx: got %v; want %d", tt.name, c, tt.want)
				assert.Zero(t, c.Catalog+c.History+c.DDL, "%s in tx: %v", tt.name, c)
			}
		})
		st := db.Stats()
		assert.EqualValues(t, 1, st.EnsureRuns, "ensure runs: %+v", st)
		assert.EqualValues(t, 1, st.MigrationsApplied, "migrations: %+v", st)
		assert.Zero(t, st.Failures, "failures: %+v", st)
		assert.GreaterOrEqual(t, st.FastPathHits, uint64(2*len(ops)-4), "fast path hits: %+v", st)
	})
}

// batchRow has four columns and no database default, so a bulk statement
// holds MaxParams/4 rows.
type batchRow struct {
	ID int64  `bun:"id,pk"`
	A  string `bun:"a,notnull"`
	B  int64  `bun:"b,notnull"`
	C  int64  `bun:"c,notnull"`
}

func batchRows(n int, firstID int64) []batchRow {
	rows := make([]batchRow, n)
	for i := range rows {
		id := firstID + int64(i)
		rows[i] = batchRow{ID: id, A: fmt.Sprint("row", id), B: id * 2, C: id * 3}
	}
	return rows
}

func countInserts(rec *recorder) (total, failed int) {
	for _, s := range rec.all() {
		if len(s.Query) >= 6 && s.Query[:6] == "INSERT" {
			total++
			if s.Err != nil {
				failed++
			}
		}
	}
	return total, failed
}

// Bulk inserts run one statement per batch, and a multi-batch insert is
// atomic.
func TestStatementBudgetBulkBatches(t *testing.T) {
	perBatch := dataflow.MaxParams / 4
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, 2*time.Minute)
		db, rec := openRec(t, d.URL(t))
		rows := register[batchRow](t, db)
		require.NoError(t, rows.EnsureTable(ctx))

		t.Run("three batches", func(t *testing.T) {
			in := batchRows(2*perBatch+7, 1)
			rec.reset()
			require.NoError(t, rows.BulkCreate(ctx, in))
			c := rec.counts()
			inserts, _ := countInserts(rec)
			assert.Equal(t, 3, inserts, "INSERT statements for %d rows: got %d; want 3", len(in), inserts)
			assert.Equal(t, 3, c.Total, "statements: %d", c.Total)
			assert.Zero(t, c.Catalog+c.History+c.DDL, "catalog/history/DDL: %d/%d/%d", c.Catalog, c.History, c.DDL)
			n, err := rows.Count(ctx, nil)
			require.NoError(t, err)
			assert.Equal(t, len(in), n)
			last, err := rows.Read(ctx, in[len(in)-1].ID)
			require.NoError(t, err)
			assert.Equal(t, in[len(in)-1], *last)
		})

		t.Run("upsert three batches", func(t *testing.T) {
			in := batchRows(2*perBatch+7, 1)
			for i := range in {
				in[i].A = "upserted"
			}
			rec.reset()
			require.NoError(t, rows.BulkUpsert(ctx, in))
			inserts, _ := countInserts(rec)
			assert.Equal(t, 3, inserts, "INSERT … ON CONFLICT statements: got %d; want 3", inserts)
			n, err := rows.Count(ctx, dataflow.Filter{"a": "upserted"})
			require.NoError(t, err)
			assert.Equal(t, len(in), n)
		})

		t.Run("failure in second batch stores nothing", func(t *testing.T) {
			in := batchRows(2*perBatch+7, 1_000_000)
			in[perBatch+3].ID = in[0].ID // duplicate key, in the second batch
			rec.reset()
			err := rows.BulkCreate(ctx, in)
			require.Error(t, err)
			inserts, failed := countInserts(rec)
			assert.Equal(t, 2, inserts, "INSERT statements: got %d; want 2 (the second fails, the third never runs)", inserts)
			assert.Equal(t, 1, failed, "failed INSERT statements")
			n, err := rows.Count(ctx, dataflow.Filter{"id": dataflow.Gte(1_000_000)})
			require.NoError(t, err)
			assert.Zero(t, n, "rows of the first batch left behind")
		})

		t.Run("failure inside caller's transaction stores nothing", func(t *testing.T) {
			in := batchRows(2*perBatch+7, 2_000_000)
			errBoom := fmt.Errorf("boom")
			err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				if err := rows.WithTx(tx).BulkCreate(ctx, in); err != nil {
					return err
				}
				n, err := rows.WithTx(tx).Count(ctx, dataflow.Filter{"id": dataflow.Gte(2_000_000)})
				if err != nil {
					return err
				}
				if n != len(in) {
					return fmt.Errorf("in tx: got %d rows; want %d", n, len(in))
				}
				return errBoom
			})
			require.ErrorIs(t, err, errBoom)
			n, err := rows.Count(ctx, dataflow.Filter{"id": dataflow.Gte(2_000_000)})
			require.NoError(t, err)
			assert.Zero(t, n)
		})

		t.Run("independent of other tables", func(t *testing.T) {
			// A multi-batch insert into a ready table must not fail
			// because some other registered table cannot be ensured.
			register[brokenDefault](t, db)
			in := batchRows(perBatch+1, 3_000_000)
			rec.reset()
			require.NoError(t, rows.BulkCreate(ctx, in))
			assert.Zero(t, rec.createTables("broken_defaults"), "ensured an unrelated table: %v", rec.counts())
			n, err := rows.Count(ctx, dataflow.Filter{"id": dataflow.Gte(3_000_000)})
			require.NoError(t, err)
			assert.Equal(t, len(in), n)
		})

		t.Run("empty", func(t *testing.T) {
			rec.reset()
			require.NoError(t, rows.BulkCreate(ctx, nil))
			require.NoError(t, rows.BulkUpsert(ctx, []batchRow{}))
			assert.Empty(t, rec.all())
		})
	})
}

// First use on a database whose schema already matches runs at most two
// statements besides the operation's own, none of them DDL, and a restart
// with an unchanged model runs no DDL at all.
func TestStatementBudgetFirstUseMatchingSchema(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		url := d.URL(t)
		ix := dataflow.WithIndex("users_name_idx", "name")

		first := open(t, url)
		users := register[user](t, first, ix)
		require.NoError(t, users.Create(ctx, &user{Name: "ann", Created: time.Now()}))
		require.EqualValues(t, 1, first.Stats().MigrationsApplied)

		t.Run("first operation", func(t *testing.T) {
			db, rec := openRec(t, url)
			users := register[user](t, db, ix)
			n, err := users.Count(ctx, nil)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			c := rec.counts()
			assert.LessOrEqual(t, c.Total, 3, "first Count: at most 2 ensure statements + 1: %v", c)
			assert.Zero(t, c.DDL, "DDL on first use: %v", c)
			own := 0
			for _, s := range c.Stmts {
				if !dbtest.IsCatalog(s.Query) && !dbtest.IsHistory(s.Query) {
					own++
				}
			}
			assert.Equal(t, 1, own, "statements of the operation itself: %v", c)
			st := db.Stats()
			assert.EqualValues(t, 1, st.EnsureRuns, "%+v", st)
			assert.Zero(t, st.MigrationsApplied, "%+v", st)

			rec.reset()
			_, err = users.Count(ctx, nil)
			require.NoError(t, err)
			assert.Equal(t, 1, rec.counts().Total, "second Count: %v", rec.counts())
		})

		t.Run("explicit EnsureTable", func(t *testing.T) {
			db, rec := openRec(t, url)
			users := register[user](t, db, ix)
			require.NoError(t, users.EnsureTable(ctx))
			c := rec.counts()
			assert.LessOrEqual(t, c.Total, 2, "EnsureTable on a matching schema: %v", c)
			assert.Zero(t, c.DDL, "%v", c)
		})

		t.Run("restart runs no DDL", func(t *testing.T) {
			require.NoError(t, first.Close())
			db, rec := openRec(t, url)
			users := register[user](t, db, ix)
			for _, op := range budgetOps(ctx, users, &user{ID: 1, Name: "ann", Created: time.Now()}) {
				require.NoError(t, op.op(), op.name)
			}
			c := rec.counts()
			assert.Zero(t, c.DDL, "DDL after restart: %v", c)
			assert.Zero(t, db.Stats().MigrationsApplied)
			hist, err := db.Migrator().History(ctx, "users")
			require.NoError(t, err)
			assert.Len(t, hist, 1, "history of users: %+v", hist)
		})
	})
}

// 64 goroutines making their first call at once on a fresh database share
// one ensure run: CREATE TABLE runs once and every goroutine succeeds.
func TestFirstUseConcurrent(t *testing.T) {
	const workers = 64
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db, rec := openRec(t, d.URL(t))
		users := register[user](t, db)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var ok, creates atomic.Int64
		errs := make(chan error, workers)
		for i := range workers {
			wg.Go(func() {
				<-start
				var err error
				switch i % 4 {
				case 0, 1:
					err = users.Create(ctx, &user{Name: fmt.Sprint("w", i), Created: time.Now()})
					if err == nil {
						creates.Add(1)
					}
				case 2:
					_, err = users.List(ctx, dataflow.Query{Limit: 3})
				default:
					_, err = users.Count(ctx, nil)
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", i, err)
					return
				}
				ok.Add(1)
			})
		}
		close(start)
		testutil.Wait(t, &wg, 45*time.Second)
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		assert.EqualValues(t, workers, ok.Load(), "goroutines that succeeded")
		assert.Equal(t, 1, rec.createTables("users"), "CREATE TABLE users statements")
		st := db.Stats()
		assert.EqualValues(t, 1, st.EnsureRuns, "ensure runs: %+v", st)
		assert.EqualValues(t, 1, st.MigrationsApplied, "%+v", st)
		assert.EqualValues(t, workers, st.EnsureCalls, "%+v", st)
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.EqualValues(t, creates.Load(), n)
	})
}

// Several DB handles (as several processes would) ensuring one table on a
// fresh database all succeed, and the history records one migration.
func TestFirstUseConcurrentHandles(t *testing.T) {
	const handles = 6
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		url := d.URL(t)
		tables := make([]*dataflow.Table[user], handles)
		recs := make([]*recorder, handles)
		for i := range tables {
			var db *dataflow.DB
			db, recs[i] = openRec(t, url)
			tables[i] = register[user](t, db)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var ok atomic.Int64
		for i, users := range tables {
			wg.Go(func() {
				<-start
				if err := users.Create(ctx, &user{Name: fmt.Sprint("h", i), Created: time.Now()}); err != nil {
					t.Errorf("handle %d: %v", i, err)
					return
				}
				ok.Add(1)
			})
		}
		close(start)
		testutil.Wait(t, &wg, 45*time.Second)
		assert.EqualValues(t, handles, ok.Load())
		creates := 0
		for _, r := range recs {
			creates += r.createTables("users")
		}
		assert.Equal(t, 1, creates, "CREATE TABLE users across handles")
		hist, err := tables[0].DB().Migrator().History(ctx, "users")
		require.NoError(t, err)
		assert.Len(t, hist, 1, "history: %+v", hist)
	})
}
