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

// roundTrips returns how many requests the connection of db (a pool of one)
// has made that the server answered: statements (COM_QUERY and
// COM_STMT_EXECUTE, which MariaDB counts as Questions) and prepares. The
// SHOW that reads them is one of them.
func roundTrips(t *testing.T, ctx context.Context, db *dataflow.DB) int {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('Questions', 'Com_stmt_prepare')")
	require.NoError(t, err)
	defer rows.Close()
	total := 0
	for rows.Next() {
		var name string
		var n int
		require.NoError(t, rows.Scan(&name, &n))
		total += n
	}
	require.NoError(t, rows.Err())
	return total
}

// The round trips of each CRUD operation on MySQL, counted by the server
// on the pool's one connection: a statement with arguments is one round
// trip (the driver interpolates them: no prepare, execute and close), an
// operation in a transaction adds START TRANSACTION and COMMIT.
func TestMySQLRoundTrips(t *testing.T) {
	url := dbtest.MySQLURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := open(t, url, dataflow.WithMaxOpenConns(1))
	users := register[user](t, db)
	require.NoError(t, users.EnsureTable(ctx))
	nick := "n"
	seed := []user{{Name: "a", Created: time.Now()}, {Name: "b", Created: time.Now()}}
	require.NoError(t, users.BulkCreate(ctx, seed))

	for _, tt := range []struct {
		name string
		want int
		op   func() error
	}{
		{"Create", 1, func() error { return users.Create(ctx, &user{Name: "c", Nick: &nick, Created: time.Now()}) }},
		{"Read", 1, func() error { _, err := users.Read(ctx, seed[0].ID); return err }},
		{"Update", 1, func() error { return users.Update(ctx, &user{ID: seed[0].ID, Name: "a2", Created: time.Now()}) }},
		{"Upsert", 1, func() error { return users.Upsert(ctx, &user{ID: seed[1].ID, Name: "b2", Created: time.Now()}) }},
		{"List", 1, func() error { _, err := users.List(ctx, dataflow.Query{Limit: 10}); return err }},
		{"Count", 1, func() error { _, err := users.Count(ctx, nil); return err }},
		{"BulkCreate", 1, func() error {
			return users.BulkCreate(ctx, []user{{Name: "d", Created: time.Now()}, {Name: "e", Created: time.Now()}})
		}},
		{"Delete", 1, func() error { return users.Delete(ctx, &user{ID: seed[1].ID}) }},
		{"RunInTx (one insert)", 3, func() error {
			return db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				return users.WithTx(tx).Create(ctx, &user{Name: "f", Created: time.Now()})
			}, users)
		}},
	} {
		before := roundTrips(t, ctx, db)
		require.NoError(t, tt.op(), tt.name)
		got := roundTrips(t, ctx, db) - before - 1 // the second SHOW
		assert.Equal(t, tt.want, got, "%s: round trips", tt.name)
		t.Logf("%-22s %d round trip(s)", tt.name, got)
	}
}
