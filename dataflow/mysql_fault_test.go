package dataflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A MySQL connection killed by the server (KILL, as a failover or an
// administrator does) inside a transaction: COMMIT's outcome is unknown to
// the client, and says so; the pool then drops the dead connection, and a
// connection killed while idle is replaced without the caller noticing.
func TestMySQLKilledConnection(t *testing.T) {
	url := dbtest.MySQLURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := open(t, url, dataflow.WithMaxOpenConns(2))
	admin := open(t, url)
	users := register[user](t, db)
	require.NoError(t, users.EnsureTable(ctx))

	connID := func(ctx context.Context, tx *dataflow.Tx) int64 {
		rows, err := tx.QueryContext(ctx, "SELECT CONNECTION_ID()")
		require.NoError(t, err)
		var id int64
		require.NoError(t, db.ScanRows(ctx, rows, &id))
		return id
	}
	err := db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		if err := users.WithTx(tx).Create(ctx, &user{Name: "killed", Created: time.Now()}); err != nil {
			return err
		}
		_, err := admin.ExecContext(ctx, "KILL CONNECTION ?", connID(ctx, tx))
		return err
	}, users)
	require.ErrorIs(t, err, dataflow.ErrOutcomeUnknown, "COMMIT on a killed connection")
	assert.True(t, dataflow.Retryable(err), "a lost connection is retryable: %v", err)
	n, err := users.Count(ctx, nil)
	require.NoError(t, err, "the pool kept the dead connection")
	assert.Equal(t, 0, n, "the server rolled the killed transaction back")

	// Killed while idle in the pool: the next operations do not see it.
	var ids []int64
	require.NoError(t, db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		ids = append(ids, connID(ctx, tx))
		return nil
	}, users))
	for _, id := range ids {
		_, err := admin.ExecContext(ctx, "KILL CONNECTION ?", id)
		require.NoError(t, err)
	}
	require.NoError(t, users.Create(ctx, &user{Name: "after", Created: time.Now()}))
	n, err = users.Count(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}
