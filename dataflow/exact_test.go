package dataflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

type owned struct {
	bun.BaseModel `bun:"table:owned"`

	ID    string `bun:"id,pk,type:varchar(64)"`
	Owner string `bun:"owner,notnull,type:varchar(255)"`
}

// Keys and owners compare exactly on every dialect: case, accents and
// trailing spaces all count. (MySQL's utf8mb4_bin pads: 'bob' = 'bob '
// there, so tables use a NO PAD binary collation.)
func TestExactComparisons(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		db := open(t, d.URL(t))
		rows := register[owned](t, db)
		ids := []string{"bob", "Bob", "bob ", "böb"}
		for _, id := range ids {
			require.NoError(t, rows.Create(ctx, &owned{ID: id, Owner: id}), "id %q", id)
		}
		for _, id := range ids {
			got, err := rows.Read(ctx, id)
			require.NoError(t, err, "id %q", id)
			assert.Equal(t, id, got.ID)
			n, err := rows.Count(ctx, dataflow.Filter{"owner": id})
			require.NoError(t, err)
			assert.Equal(t, 1, n, "owner %q matched %d rows", id, n)
		}
		_, err := rows.Read(ctx, "BOB")
		assert.ErrorIs(t, err, dataflow.ErrNotFound)
	})
}
