package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
	"github.com/turnkeep/turnkeep/migrate"
)

const upItems = 300

// upTable makes a table of upItems rows, each with v = its number and
// done = 0: the "old release" rows the test upgrade brings up to date.
func upTable(t *testing.T, e *env) {
	t.Helper()
	ctx := ctxT(t)
	_, err := e.db.ExecContext(ctx, `CREATE TABLE up_items (id VARCHAR(32) PRIMARY KEY, v BIGINT NOT NULL, done SMALLINT NOT NULL DEFAULT 0)`)
	require.NoError(t, err)
	var vals []string
	for i := range upItems {
		vals = append(vals, fmt.Sprintf("('item-%04d', %d, 0)", i, i))
	}
	_, err = e.db.ExecContext(ctx, `INSERT INTO up_items (id, v, done) VALUES `+strings.Join(vals, ", "))
	require.NoError(t, err)
	e.rec.take()
}

// upgrade is a test upgrade: it doubles v and sets done on up to per rows
// after the cursor per batch; onBatch (if set) runs after each batch's
// writes, with the batch's number from 1 and its bound.
func upgrade(per int, batches *atomic.Int32, onBatch func(n int32, until time.Time)) migrate.Upgrade {
	return migrate.Upgrade{
		Name: "test.items", Note: "double v", Tables: []string{"up_items"},
		Batch: func(ctx context.Context, tx migrate.UpgradeTx, cursor string, until time.Time) (string, int64, bool, error) {
			n := batches.Add(1)
			rows, err := tx.QueryContext(ctx, `SELECT id FROM up_items WHERE id > ? AND done = 0 ORDER BY id LIMIT ?`, cursor, per)
			if err != nil {
				return cursor, 0, false, err
			}
			var ids []string
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return cursor, 0, false, err
				}
				ids = append(ids, id)
			}
			if err := rows.Close(); err != nil {
				return cursor, 0, false, err
			}
			for _, id := range ids {
				if _, err := tx.ExecContext(ctx, `UPDATE up_items SET v = v * 2, done = 1 WHERE id = ?`, id); err != nil {
					return cursor, 0, false, err
				}
				cursor = id
			}
			if onBatch != nil {
				onBatch(n, until)
			}
			return cursor, int64(len(ids)), len(ids) < per, nil
		},
	}
}

// upState returns how many rows are done and whether each done row was
// doubled exactly once (v = 2 × its number) and each other row not at all.
func upState(t *testing.T, e *env) (done int, exact bool) {
	t.Helper()
	rows, err := e.db.QueryContext(ctx(t), `SELECT id, v, done FROM up_items`)
	require.NoError(t, err)
	defer rows.Close()
	exact = true
	for rows.Next() {
		var id string
		var v, d int64
		require.NoError(t, rows.Scan(&id, &v, &d))
		var n int64
		_, err := fmt.Sscanf(id, "item-%d", &n)
		require.NoError(t, err)
		if d == 1 {
			done++
			exact = exact && v == 2*n
		} else {
			exact = exact && v == n
		}
	}
	require.NoError(t, rows.Err())
	return done, exact
}

func ctx(t *testing.T) context.Context { return ctxT(t) }

// A pending upgrade runs in batches to the end, is recorded done once, and
// is then found done by two statements (the catalog and one history
// lookup) that read nothing of its tables, in this and a new process.
func TestUpgradeRunsOnceInBatches(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newEnv(t, d)
		upTable(t, e)
		var batches atomic.Int32
		u := upgrade(50, &batches, nil)
		pending, err := e.m.UpgradePending(ctx(t), u)
		require.NoError(t, err)
		require.True(t, pending, "an upgrade never run")

		res, err := e.m.RunUpgrade(ctx(t), u, migrate.UpgradeOptions{})
		require.NoError(t, err)
		assert.True(t, res.Ran)
		assert.Equal(t, upItems/50+1, res.Batches, "batches: 6 full, then one finding none left")
		assert.EqualValues(t, upItems, res.Rows)
		done, exact := upState(t, e)
		assert.Equal(t, upItems, done)
		assert.True(t, exact, "a row was upgraded twice, or a row not done was changed")
		h, err := e.m.History(ctx(t), "upgrade:test.items")
		require.NoError(t, err)
		require.Len(t, h, 1, "the upgrade's record")
		assert.Equal(t, "done", h[0].Checksum)
		assert.Equal(t, "double v", h[0].Statements)

		for _, proc := range []string{"same process", "new process"} {
			if proc == "new process" {
				e.reopen(t)
			}
			e.rec.take()
			pending, err = e.m.UpgradePending(ctx(t), u)
			require.NoError(t, err)
			assert.False(t, pending, "%s: pending after it ran", proc)
			stmts := e.rec.take()
			assert.Len(t, stmts, 2, "%s: the check's statements: %q", proc, stmts)
			for _, s := range stmts {
				assert.NotContains(t, strings.ToLower(s), "from up_items", "%s: the check read the upgrade's table", proc)
			}
			before := batches.Load()
			res, err = e.m.RunUpgrade(ctx(t), u, migrate.UpgradeOptions{})
			require.NoError(t, err)
			assert.False(t, res.Ran, "%s: ran again", proc)
			assert.Equal(t, before, batches.Load(), "%s: a batch ran again", proc)
			assert.Empty(t, writes(e.rec.take()), "%s: a run of a done upgrade wrote", proc)
		}
	})
}

// A run that its context ends keeps the batches it committed; the next
// run resumes and upgrades every row exactly once.
func TestUpgradeResumes(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newEnv(t, d)
		upTable(t, e)
		var batches atomic.Int32
		runCtx, cancel := context.WithCancel(ctx(t))
		u := upgrade(40, &batches, func(n int32, _ time.Time) {
			if n == 2 {
				cancel() // the caller gives up during the second batch
			}
		})
		_, err := e.m.RunUpgrade(runCtx, u, migrate.UpgradeOptions{})
		require.ErrorIs(t, err, context.Canceled)
		done, exact := upState(t, e)
		assert.True(t, done == 40 || done == 80, "rows done after a cut-off run: %d; want the first batch's (40), or both batches' if the second committed", done)
		assert.True(t, exact)
		pending, err := e.m.UpgradePending(ctx(t), u)
		require.NoError(t, err)
		assert.True(t, pending, "pending after a cut-off run")

		e.reopen(t)
		res, err := e.m.RunUpgrade(ctx(t), upgrade(40, &batches, nil), migrate.UpgradeOptions{})
		require.NoError(t, err)
		assert.EqualValues(t, upItems-done, res.Rows, "rows the resumed run upgraded")
		done, exact = upState(t, e)
		assert.Equal(t, upItems, done)
		assert.True(t, exact, "a row was upgraded twice")
	})
}

// Each batch is bounded by the run's batch time and by the caller's
// deadline.
func TestUpgradeBatchWithinDeadline(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newEnv(t, d)
		upTable(t, e)
		deadline := time.Now().Add(30 * time.Second)
		dctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		var batches atomic.Int32
		var mu sync.Mutex
		var bounds []time.Duration // until - the batch's start, approximately
		u := upgrade(100, &batches, func(_ int32, until time.Time) {
			mu.Lock()
			bounds = append(bounds, time.Until(until))
			mu.Unlock()
			assert.False(t, until.After(deadline), "a batch bound %v past the caller's deadline %v", until, deadline)
		})
		_, err := e.m.RunUpgrade(dctx, u, migrate.UpgradeOptions{MaxBatch: 2 * time.Second})
		require.NoError(t, err)
		require.NotEmpty(t, bounds)
		for _, b := range bounds {
			assert.LessOrEqual(t, b, 2*time.Second, "a batch bound beyond MaxBatch")
		}

		// A deadline sooner than MaxBatch bounds the batch instead.
		e2 := newEnv(t, d)
		upTable(t, e2)
		soon := time.Now().Add(5 * time.Second)
		sctx, cancel2 := context.WithDeadline(context.Background(), soon)
		defer cancel2()
		var seen []time.Time
		_, err = e2.m.RunUpgrade(sctx, upgrade(100, &batches, func(_ int32, until time.Time) { seen = append(seen, until) }),
			migrate.UpgradeOptions{MaxBatch: time.Hour})
		require.NoError(t, err)
		for _, until := range seen {
			assert.Equal(t, soon, until, "a batch's bound under a deadline sooner than MaxBatch")
		}
	})
}

// Two processes running the upgrade at once take turns batch by batch:
// every row is upgraded once, and it is recorded done once.
func TestUpgradeConcurrentProcesses(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newEnv(t, d)
		upTable(t, e)
		var batches atomic.Int32
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			m, err := migrate.New(openBun(t, e.url))
			require.NoError(t, err)
			wg.Go(func() {
				_, errs[i] = m.RunUpgrade(ctx(t), upgrade(25, &batches, nil), migrate.UpgradeOptions{})
			})
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		done, exact := upState(t, e)
		assert.Equal(t, upItems, done)
		assert.True(t, exact, "a row was upgraded twice")
		h, err := e.m.History(ctx(t), "upgrade:test.items")
		require.NoError(t, err)
		assert.Len(t, h, 1, "records of the upgrade")
	})
}

// Where the upgrade's table does not exist there is nothing to upgrade;
// under NoDDL a run on a database without a history table upgrades the
// rows but creates nothing, so it stays pending (on the MySQL family, where
// the lock's lease table is missing too, it fails with ErrTableMissing and
// upgrades nothing until a client that may change the schema made it); an
// upgrade without a name, tables or batch is an invalid option.
func TestUpgradeEdges(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newEnv(t, d)
		var batches atomic.Int32
		u := upgrade(50, &batches, nil)
		pending, err := e.m.UpgradePending(ctx(t), u)
		require.NoError(t, err)
		assert.False(t, pending, "pending without its table")
		res, err := e.m.RunUpgrade(ctx(t), u, migrate.UpgradeOptions{})
		require.NoError(t, err)
		assert.False(t, res.Ran)
		assert.Zero(t, batches.Load())

		upTable(t, e)
		if e.mysql() {
			// MySQL's migration lock is a lease row (Galera has no
			// GET_LOCK), in a table made on first use, but not under
			// NoDDL: the run says the table is missing, and upgrades
			// nothing.
			_, err = e.m.RunUpgrade(ctx(t), u, migrate.UpgradeOptions{NoDDL: true})
			require.ErrorIs(t, err, migrate.ErrTableMissing)
			assert.ErrorContains(t, err, sqlcore.LockTable)
			assert.Zero(t, batches.Load(), "batches run without the lock")
			for _, s := range writes(e.rec.take()) {
				assert.NotRegexp(t, `(?i)^\s*(CREATE|ALTER|DROP)`, s, "DDL under NoDDL")
			}
			// A client that may change the schema makes it.
			require.NoError(t, sqlcore.MySQL.Locked(ctx(t), e.db, "a first use", func(bun.IConn) error { return nil }))
			e.rec.take()
		}
		res, err = e.m.RunUpgrade(ctx(t), u, migrate.UpgradeOptions{NoDDL: true})
		require.NoError(t, err)
		assert.True(t, res.Ran)
		for _, s := range writes(e.rec.take()) {
			assert.NotRegexp(t, `(?i)^\s*(CREATE|ALTER|DROP)`, s, "DDL under NoDDL")
		}
		done, _ := upState(t, e)
		assert.Equal(t, upItems, done)
		pending, err = e.m.UpgradePending(ctx(t), u)
		require.NoError(t, err)
		assert.True(t, pending, "recorded without a history table under NoDDL")

		for _, bad := range []migrate.Upgrade{{}, {Name: "x", Tables: []string{"up_items"}}, {Name: "x", Batch: u.Batch}} {
			_, err := e.m.RunUpgrade(ctx(t), bad, migrate.UpgradeOptions{})
			assert.ErrorIs(t, err, migrate.ErrInvalidOption)
			_, err = e.m.UpgradePending(ctx(t), bad)
			assert.ErrorIs(t, err, migrate.ErrInvalidOption)
		}
	})
}
