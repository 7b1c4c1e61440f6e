package dataflow_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
	"github.com/turnkeep/turnkeep/internal/testutil"
)

// brokenDefault has a column default that both dialects reject, so its
// CREATE TABLE always fails.
type brokenDefault struct {
	ID int64  `bun:"id,pk"`
	X  string `bun:"x,default:bogus("`
}

// A failed ensure is returned to every caller and retried no more often
// than the backoff allows.
func TestEnsureFailureBackoff(t *testing.T) {
	const callers, burst = 50, 1000
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		// A backoff far longer than the test: every call after the first
		// failure falls inside it.
		db, rec := openRec(t, d.URL(t), dataflow.WithEnsureBackoff(time.Hour, time.Hour))
		broken := register[brokenDefault](t, db)

		start := make(chan struct{})
		var wg sync.WaitGroup
		var typed atomic.Int64
		for i := range callers {
			wg.Go(func() {
				<-start
				err := broken.Create(ctx, &brokenDefault{ID: int64(i + 1)})
				if isErr(err, dataflow.ErrEnsureFailed) {
					typed.Add(1)
				} else {
					t.Errorf("caller %d: got %v; want ErrEnsureFailed", i, err)
				}
			})
		}
		close(start)
		testutil.Wait(t, &wg, 30*time.Second)
		assert.EqualValues(t, callers, typed.Load(), "callers with ErrEnsureFailed")

		var burstTyped atomic.Int64
		for g := range 10 {
			wg.Go(func() {
				for i := range burst / 10 {
					var err error
					switch i % 3 {
					case 0:
						_, err = broken.Read(ctx, int64(g))
					case 1:
						_, err = broken.Count(ctx, nil)
					default:
						err = broken.EnsureTable(ctx)
					}
					if isErr(err, dataflow.ErrEnsureFailed) {
						burstTyped.Add(1)
					}
				}
			})
		}
		testutil.Wait(t, &wg, 30*time.Second)
		assert.EqualValues(t, burst, burstTyped.Load(), "burst calls with ErrEnsureFailed")

		creates := rec.createTables("broken_defaults")
		assert.GreaterOrEqual(t, creates, 1, "the DDL never ran")
		assert.LessOrEqual(t, creates, 2, "CREATE TABLE broken_defaults ran %d times for %d calls", creates, callers+burst)
		st := db.Stats()
		assert.LessOrEqual(t, st.EnsureRuns, uint64(2), "%+v", st)
		assert.Equal(t, st.EnsureRuns, st.Failures, "%+v", st)
		assert.Zero(t, st.MigrationsApplied, "%+v", st)

		err := broken.Create(ctx, &brokenDefault{ID: 1})
		require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
		assert.Contains(t, err.Error(), "broken_defaults", "the error names the table")
	})
}

func isErr(err, target error) bool { return err != nil && errors.Is(err, target) }

// recoverItem's table is blocked by a conflicting object until the test
// drops it.
type recoverItem struct {
	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name"`
}

// blockTable makes CREATE TABLE name fail on d, and returns what undoes it.
func blockTable(t *testing.T, ctx context.Context, db *dataflow.DB, d dbtest.Dialect, name string) (unblock func()) {
	t.Helper()
	var do, undo []string
	if d.Name == "mysql" {
		// CREATE TABLE IF NOT EXISTS only notes a view or table of the
		// name, and MySQL has no other namespace a table shares.
		t.Skip("MySQL: no object makes CREATE TABLE IF NOT EXISTS fail")
	}
	if d.Name == "pg" {
		// A table's row type takes its name: an existing type conflicts.
		do = []string{fmt.Sprintf(`CREATE TYPE %q AS ENUM ('a')`, name)}
		undo = []string{fmt.Sprintf(`DROP TYPE %q`, name)}
	} else {
		// Tables and indexes share one namespace.
		do = []string{`CREATE TABLE blocker (x INTEGER)`, fmt.Sprintf(`CREATE INDEX %q ON blocker (x)`, name)}
		undo = []string{fmt.Sprintf(`DROP INDEX %q`, name)}
	}
	for _, q := range do {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	return func() {
		for _, q := range undo {
			_, err := db.ExecContext(ctx, q)
			require.NoError(t, err, q)
		}
	}
}

// Once the cause of a failure is gone, the table works after the backoff,
// without a restart.
func TestEnsureRecoversAfterBackoff(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		url := d.URL(t)
		admin := open(t, url)
		unblock := blockTable(t, ctx, admin, d, "recover_items")

		db, rec := openRec(t, url, dataflow.WithEnsureBackoff(10*time.Millisecond, 20*time.Millisecond))
		items := register[recoverItem](t, db)
		err := items.Create(ctx, &recoverItem{Name: "first"})
		require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
		require.Equal(t, 1, rec.createTables("recover_items"))

		// Still blocked: retries after the backoff fail again, no storm.
		time.Sleep(30 * time.Millisecond)
		require.ErrorIs(t, items.EnsureTable(ctx), dataflow.ErrEnsureFailed)
		require.GreaterOrEqual(t, db.Stats().Failures, uint64(2))

		unblock()
		var ok bool
		deadline := time.Now().Add(10 * time.Second)
		for !ok && time.Now().Before(deadline) {
			err = items.Create(ctx, &recoverItem{Name: "second"})
			ok = err == nil
			if !ok {
				require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
				time.Sleep(5 * time.Millisecond)
			}
		}
		require.True(t, ok, "table still failing after the cause was removed: %v", err)
		got, err := items.List(ctx, dataflow.Query{})
		require.NoError(t, err)
		assert.Equal(t, []recoverItem{{ID: got[0].ID, Name: "second"}}, got)

		st := db.Stats()
		assert.EqualValues(t, 1, st.MigrationsApplied, "%+v", st)
		assert.Equal(t, st.Failures+1, st.EnsureRuns, "%+v", st)
		// Bounded: with 10–20 ms backoff over the loop above the runs stay
		// few (roughly elapsed/20ms), not one per call.
		assert.Less(t, st.EnsureRuns, uint64(600), "%+v", st)

		rec.reset()
		require.NoError(t, items.Create(ctx, &recoverItem{Name: "third"}))
		assert.Equal(t, 1, rec.counts().Total, "warm create after recovery: %v", rec.counts())
	})
}

// The shared first-use run does not die with the first caller's context:
// a caller that gives up returns its own error, the others still succeed.
func TestEnsureSharedRunOutlivesCaller(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		url := d.URL(t)
		admin := open(t, url)
		db := open(t, url) // Open takes the SQLite write lock briefly: before the holder
		// Hold the lock a migration needs, from another handle.
		if d.Name == "pg" || d.Name == "mysql" {
			require.NoError(t, register[recoverItem](t, admin).EnsureTable(ctx)) // creates the history table (and MySQL's lease row)
		}
		locked, release := make(chan struct{}), make(chan struct{})
		holder := make(chan error, 1)
		go func() {
			holder <- admin.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				if d.Name == "pg" {
					if _, err := tx.ExecContext(ctx, `LOCK TABLE turnkeep_migrations IN ACCESS EXCLUSIVE MODE`); err != nil {
						return err
					}
				}
				if d.Name == "mysql" { // the lease is free, but its row stays locked until release
					if _, err := tx.ExecContext(ctx, "SELECT owner FROM `"+sqlcore.LockTable+"` FOR UPDATE"); err != nil {
						return err
					}
				} // SQLite: RunInTx holds BEGIN IMMEDIATE
				close(locked)
				<-release
				return nil
			})
		}()
		select {
		case <-locked:
		case err := <-holder:
			t.Fatalf("lock holder: %v", err)
		}

		users := register[user](t, db)
		impatient, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		patient := make(chan error, 1)
		go func() {
			err := users.EnsureTable(impatient) // starts the shared run
			if !assert.ErrorIs(t, err, context.DeadlineExceeded) {
				patient <- nil
				return
			}
			patient <- users.Create(ctx, &user{Name: "patient", Created: time.Now()})
		}()
		time.Sleep(300 * time.Millisecond) // the impatient caller gave up meanwhile
		close(release)
		require.NoError(t, <-holder)
		select {
		case err := <-patient:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("patient caller still waiting")
		}
		st := db.Stats()
		assert.EqualValues(t, 1, st.EnsureRuns, "%+v", st)
		assert.Zero(t, st.Failures, "the shared run failed with its first caller: %+v", st)
	})
}
