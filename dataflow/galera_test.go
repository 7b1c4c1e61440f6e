package dataflow_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

type galeraRow struct {
	bun.BaseModel `bun:"table:galera_rows"`

	ID   string    `bun:"id,pk,type:varchar(64)"`
	Body string    `bun:"body,notnull,type:text"`
	At   time.Time `bun:"at,notnull"`
}

// A three-node Galera cluster on loopback: first use from three servers on
// three nodes at once migrates once (the lease, not GET_LOCK); a row
// written through dataflow on node 1 is read on node 3 (causal reads); and
// after node 2 is SIGKILLed the survivors go on, and node 2 rejoins with
// every row. Runs with TURNKEEP_GALERA=1.
func TestGaleraSmoke(t *testing.T) {
	g := dbtest.NewGalera(t, 3)
	t.Logf("cluster: 3 nodes Synced in %s", g.Synced.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	admin, err := sql.Open("mysql", g.Nodes[0].DSN(""))
	require.NoError(t, err)
	defer admin.Close()
	_, err = admin.ExecContext(ctx, "CREATE DATABASE tk CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
	require.NoError(t, err)

	// First use from three nodes at once: one migration.
	dbs := make([]*dataflow.DB, 3)
	tables := make([]*dataflow.Table[galeraRow], 3)
	for i, n := range g.Nodes {
		dbs[i] = open(t, n.URL("tk"))
		tables[i] = register[galeraRow](t, dbs[i])
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = tables[i].EnsureTable(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "node %d", i+1)
	}
	var migrations int
	require.NoError(t, admin.QueryRowContext(ctx, "SELECT count(*) FROM tk.turnkeep_migrations WHERE table_name = 'galera_rows'").Scan(&migrations))
	assert.Equal(t, 1, migrations, "migrations recorded for one table from three nodes")

	// Written on node 1, read on node 3.
	at := time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.UTC)
	require.NoError(t, tables[0].Create(ctx, &galeraRow{ID: "r1", Body: "from node 1", At: at}))
	got, err := tables[2].Read(ctx, "r1")
	require.NoError(t, err, "node 3 does not see node 1's acknowledged row")
	assert.Equal(t, "from node 1", got.Body)
	assert.True(t, at.Equal(got.At), "time: got %v; want %v", got.At, at)

	// Two writers on two nodes update one row in explicit transactions:
	// certification conflicts come back as retryable errors (1213), and
	// retrying each until it commits loses and doubles no increment.
	type counter struct {
		bun.BaseModel `bun:"table:galera_counter"`
		ID            int64 `bun:"id,pk"`
		N             int64 `bun:"n,notnull"`
	}
	counters := []*dataflow.Table[counter]{register[counter](t, dbs[0]), register[counter](t, dbs[1])}
	require.NoError(t, counters[0].Create(ctx, &counter{ID: 1}))
	const perWriter = 100
	var conflicts atomic.Int64
	for w := range counters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWriter {
				for {
					err := dbs[w].RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
						_, err := tx.ExecContext(ctx, "UPDATE galera_counter SET n = n + 1 WHERE id = 1")
						return err
					}, counters[w])
					if err == nil {
						break
					}
					if !dataflow.Retryable(err) {
						t.Errorf("writer %d: %v", w+1, err)
						return
					}
					conflicts.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	final, err := counters[1].Read(ctx, int64(1))
	require.NoError(t, err)
	assert.EqualValues(t, 2*perWriter, final.N, "increments after retried conflicts")
	t.Logf("conflicts: %d retried certification conflicts or deadlocks for %d transactions on two nodes", conflicts.Load(), 2*perWriter)

	// SIGKILL node 2; the survivors go on.
	require.NoError(t, g.Nodes[1].Kill())
	killed := time.Now()
	var stall time.Duration
	for i := 0; ; i++ {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		err := tables[0].Create(wctx, &galeraRow{ID: fmt.Sprintf("after-%d", i), Body: "survivor write", At: at})
		wcancel()
		if err == nil {
			stall = time.Since(killed)
			break
		}
		require.True(t, dataflow.Retryable(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, dataflow.ErrOutcomeUnknown),
			"a write during the node loss failed with an untyped error: %v", err)
		require.Less(t, time.Since(killed), time.Minute, "no write succeeded within a minute of the node loss: %v", err)
	}
	t.Logf("node loss: first write on a survivor acknowledged %s after SIGKILL", stall.Round(time.Millisecond))
	require.NoError(t, tables[0].Create(ctx, &galeraRow{ID: "r2", Body: "while node 2 was down", At: at}))
	got, err = tables[2].Read(ctx, "r2")
	require.NoError(t, err)
	assert.Equal(t, "while node 2 was down", got.Body)

	// Node 2 rejoins with every acknowledged row.
	start := time.Now()
	require.NoError(t, g.Restart(ctx, 1, 3))
	t.Logf("node 2 rejoined and Synced in %s", time.Since(start).Round(time.Millisecond))
	rejoined := open(t, g.Nodes[1].URL("tk"))
	again := register[galeraRow](t, rejoined)
	for _, id := range []string{"r1", "r2"} {
		row, err := again.Read(ctx, id)
		require.NoError(t, err, "row %s missing on the rejoined node", id)
		assert.Equal(t, id, row.ID)
	}
	n1, err := tables[0].Count(ctx, nil)
	require.NoError(t, err)
	n2, err := again.Count(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, n1, n2, "rows on node 1 and on the rejoined node 2")
}
