package migrate_test

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/migrate"
)

// Survey answers what Check answers for each model and what
// UpgradePending answers for each upgrade, at every stage of a database's
// life, in one catalog query and at most one read of the history.
func TestSurveyAgreesWithChecks(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newEnv(t, d)
		var batches atomic.Int32
		u := upgrade(1000, &batches, nil)
		models := []migrate.Model{v1, v2}
		survey := func(stage string, wantTables []migrate.Status, want migrate.UpgradeState, wantStmts int) {
			t.Helper()
			e.rec.take()
			s, err := e.m.Survey(ctx(t), models, []migrate.Upgrade{u})
			require.NoError(t, err, stage)
			assert.Len(t, e.rec.take(), wantStmts, "%s: statements", stage)
			assert.Equal(t, wantTables, s.Tables, "%s: tables", stage)
			assert.Equal(t, []migrate.UpgradeState{want}, s.Upgrades, "%s: upgrade", stage)
			for i, m := range models {
				st, err := e.m.Check(ctx(t), m)
				require.NoError(t, err)
				assert.Equal(t, st, s.Tables[i], "%s: model %d: Check says %s", stage, i, st)
			}
			pending, err := e.m.UpgradePending(ctx(t), u)
			require.NoError(t, err)
			assert.Equal(t, pending, want == migrate.UpgradeIsPending, "%s: UpgradePending says %t", stage, pending)
		}
		// No table, no history: the catalog alone answers.
		survey("empty", []migrate.Status{migrate.Missing, migrate.Missing}, migrate.UpgradeNotApplicable, 1)
		// The upgrade's table exists, the history does not.
		upTable(t, e)
		survey("no history", []migrate.Status{migrate.Missing, migrate.Missing}, migrate.UpgradeIsPending, 1)
		// v1's table is made and recorded: v2 (the same table, another
		// model) is changed.
		_, err := e.m.Ensure(ctx(t), v1, false)
		require.NoError(t, err)
		survey("v1 made", []migrate.Status{migrate.UpToDate, migrate.Changed}, migrate.UpgradeIsPending, 2)
		_, err = e.m.RunUpgrade(ctx(t), u, migrate.UpgradeOptions{})
		require.NoError(t, err)
		survey("upgraded", []migrate.Status{migrate.UpToDate, migrate.Changed}, migrate.UpgradeDone, 2)
		// A new process; then v2 applied: v1 is the changed one.
		e.reopen(t)
		_, err = e.m.Ensure(ctx(t), v2, false)
		require.NoError(t, err)
		survey("v2 made", []migrate.Status{migrate.Changed, migrate.UpToDate}, migrate.UpgradeDone, 2)

		// A model that is not a bun model, or an upgrade without a batch,
		// is an error, and nothing runs.
		e.rec.take()
		_, err = e.m.Survey(ctx(t), []migrate.Model{{Value: 42}}, nil)
		assert.ErrorIs(t, err, migrate.ErrInvalidModel)
		_, err = e.m.Survey(ctx(t), nil, []migrate.Upgrade{{Name: "x", Tables: []string{"up_items"}}})
		assert.ErrorIs(t, err, migrate.ErrInvalidOption)
		assert.Empty(t, e.rec.take(), "statements of invalid surveys")
	})
}
