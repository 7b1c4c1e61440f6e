package dataflow_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/testutil"
)

func TestRunInTx(t *testing.T) {
	errBoom := errors.New("boom")
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		// A connection left inside a transaction would block the next
		// writer: keep the wait short so that shows up as an error.
		ctx := testCtx(t, time.Minute)
		db, rec := openRec(t, d.URL(t), dataflow.WithBusyTimeout(2*time.Second))
		users := register[user](t, db)
		count := func(t *testing.T) int {
			t.Helper()
			n, err := users.Count(ctx, nil)
			require.NoError(t, err)
			return n
		}

		t.Run("commit", func(t *testing.T) {
			var outside int
			err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				u := users.WithTx(tx)
				a := user{Name: "ann", Created: time.Now()}
				if err := u.Create(ctx, &a); err != nil {
					return err
				}
				a.Age = 5
				if err := u.Update(ctx, &a); err != nil {
					return err
				}
				if err := u.Create(ctx, &user{Name: "bob", Created: time.Now()}); err != nil {
					return err
				}
				got, err := u.Read(ctx, a.ID)
				if err != nil {
					return err
				}
				if got.Age != 5 {
					return errors.New("uncommitted update not visible inside the transaction")
				}
				outside = count(t) // another connection: not visible yet
				return nil
			})
			require.NoError(t, err)
			assert.Zero(t, outside, "uncommitted rows visible outside the transaction")
			assert.Equal(t, 2, count(t))
		})

		t.Run("error rolls back", func(t *testing.T) {
			before := count(t)
			err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				u := users.WithTx(tx)
				if err := u.Create(ctx, &user{Name: "gone", Created: time.Now()}); err != nil {
					return err
				}
				if _, err := u.BulkDelete(ctx, dataflow.Filter{"name": "ann"}); err != nil {
					return err
				}
				return errBoom
			})
			require.ErrorIs(t, err, errBoom)
			assert.Zero(t, db.Bun().DB.Stats().InUse, "a connection is still held by the transaction")
			assert.Equal(t, before, count(t))
			n, err := users.Count(ctx, dataflow.Filter{"name": "ann"})
			require.NoError(t, err)
			assert.Equal(t, 1, n, "a rolled-back delete took effect")
		})

		t.Run("panic rolls back and re-panics", func(t *testing.T) {
			before := count(t)
			for range 3 { // more than once: the connection must come back clean each time
				var recovered any
				func() {
					defer func() { recovered = recover() }()
					_ = db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
						if err := users.WithTx(tx).Create(ctx, &user{Name: "panic", Created: time.Now()}); err != nil {
							return err
						}
						panic(errBoom)
					})
				}()
				require.Equal(t, errBoom, recovered, "the panic did not come through")
				assert.Zero(t, db.Bun().DB.Stats().InUse, "a connection is still held by the transaction")
				assert.Equal(t, before, count(t))
			}
			require.NoError(t, users.Create(ctx, &user{Name: "after", Created: time.Now()}), "write after rolled-back panics")
		})

		t.Run("statements", func(t *testing.T) {
			rec.reset()
			require.NoError(t, db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				u := users.WithTx(tx)
				if err := u.Create(ctx, &user{Name: "s", Created: time.Now()}); err != nil {
					return err
				}
				_, err := u.List(ctx, dataflow.Query{Limit: 1})
				return err
			}))
			c := rec.counts()
			assert.Equal(t, 2, c.Total, "statements (BEGIN/COMMIT not counted): %v", c)
			assert.Zero(t, c.Catalog+c.History+c.DDL, "%v", c)
		})

		t.Run("first use happens before the transaction", func(t *testing.T) {
			type lateTable struct {
				ID int64 `bun:"id,pk"`
			}
			late := register[lateTable](t, db)
			require.NoError(t, db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				return late.WithTx(tx).Create(ctx, &lateTable{ID: 1})
			}))
			_, err := late.Read(ctx, int64(1))
			require.NoError(t, err)
		})

		t.Run("concurrent transactions", func(t *testing.T) {
			before := count(t)
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
						u := users.WithTx(tx)
						n, err := u.Count(ctx, nil) // read, then write: must not fail with "locked"
						if err != nil {
							return err
						}
						return u.Create(ctx, &user{Name: "tx", Age: n, Created: time.Now()})
					})
					assert.NoError(t, err)
				})
			}
			testutil.Wait(t, &wg, 30*time.Second)
			assert.Equal(t, before+8, count(t))
		})

		t.Run("cancelled context", func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			err := db.RunInTx(cctx, func(ctx context.Context, tx *dataflow.Tx) error {
				return users.WithTx(tx).Create(ctx, &user{Name: "cancelled", Created: time.Now()})
			})
			require.ErrorIs(t, err, context.Canceled)
			n, err := users.Count(ctx, dataflow.Filter{"name": "cancelled"})
			require.NoError(t, err)
			assert.Zero(t, n)
			require.NoError(t, users.Create(ctx, &user{Name: "after cancel", Created: time.Now()}))
		})
	})
}

// After Close every operation returns ErrClosed; nothing panics.
func TestClosed(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db := open(t, d.URL(t))
		users := register[user](t, db)
		u := user{Name: "ann", Created: time.Now()}
		require.NoError(t, users.Create(ctx, &u)) // ready before Close
		never := register[batchRow](t, db)        // never ensured
		require.NoError(t, db.Close())
		require.NoError(t, db.Close(), "second Close")

		errs := allOps(ctx, db, users)
		errs["Never ready Count"] = func() error { _, err := never.Count(ctx, nil); return err }()
		errs["Never ready EnsureTable"] = never.EnsureTable(ctx)
		_, errs["Register"] = dataflow.Register[membership](db)
		_, errs["ExecContext"] = db.ExecContext(ctx, "SELECT 1")
		_, errs["QueryContext"] = db.QueryContext(ctx, "SELECT 1")
		for op, err := range errs {
			assert.ErrorIs(t, err, dataflow.ErrClosed, op)
		}
	})
}

// A transaction waiting for a pooled connection gives up when its context
// ends: only the transaction itself, once begun, outlives the context.
func TestRunInTxPoolWaitHonorsContext(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		if d.Name != "pg" {
			t.Skip("WithMaxOpenConns bounds the PostgreSQL pool only")
		}
		db := open(t, d.URL(t), dataflow.WithMaxOpenConns(1))
		users := register[user](t, db)
		require.NoError(t, users.EnsureTable(t.Context()))

		holding, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- db.RunInTx(context.Background(), func(ctx context.Context, tx *dataflow.Tx) error {
				close(holding)
				<-release
				return nil
			})
		}()
		<-holding
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		waited := make(chan error, 1)
		go func() { waited <- db.RunInTx(ctx, func(context.Context, *dataflow.Tx) error { return nil }) }()
		select {
		case err := <-waited:
			require.ErrorIs(t, err, context.DeadlineExceeded)
		case <-time.After(5 * time.Second):
			close(release)
			t.Fatal("RunInTx waited for the pool past its deadline")
		}
		close(release)
		require.NoError(t, <-done)
		require.NoError(t, db.RunInTx(t.Context(), func(context.Context, *dataflow.Tx) error { return nil }),
			"the connection went back to the pool")
	})
}

// A registered table that cannot be made ready does not fail transactions
// that do not use it.
func TestRunInTxUnrelatedBrokenTable(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		url := d.URL(t)
		createUsers[user](t, ctx, url)
		db := open(t, url, dataflow.WithAutoMigrate(false))
		users := register[user](t, db)
		broken := register[event](t, db) // never created: ErrTableMissing
		err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			return users.WithTx(tx).Create(ctx, &user{Name: "in tx", Created: time.Now()})
		})
		require.NoError(t, err)
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, 1, n)

		err = db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			_, err := broken.WithTx(tx).Count(ctx, nil)
			return err
		})
		require.ErrorIs(t, err, dataflow.ErrTableMissing)
	})
}
