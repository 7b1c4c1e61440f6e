package backend

import (
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A process's first use of a database that is up to date (its tables
// migrated, its data upgrade recorded done) runs two statements before
// the operation's own, whatever the operation: one catalog query for the
// tables it needs and the migration history, and one read of the history
// (the tables' checksums and the upgrade's record; dataflow.DB.Survey).
// No DDL, no migration lock, no scan of the sessions. Both name the
// history table. Before the survey it ran eight: a catalog query and a
// history read for the upgrade, for each table, and for the upgrade again.
func TestFirstUseStatements(t *testing.T) {
	ctx := context.Background()
	const load = `^WITH RECURSIVE h AS \(SELECT s\.id, `
	ops := []struct {
		name     string
		run      func(b *DataFlowBackend) error
		wantData []string // regexps of the operation's statements
	}{
		{"LoadWindow", func(b *DataFlowBackend) error {
			w, err := readWindow(ctx, b, "s", 10)
			if err == nil && len(w.Turns) != 1 {
				t.Errorf("first load: %d turns; want 1", len(w.Turns))
			}
			return err
		}, []string{load}},
		{"SessionInfo", func(b *DataFlowBackend) error {
			_, err := b.SessionInfo(ctx, "s")
			return err
		}, []string{`^SELECT .* FROM "?turnkeep_sessions"? WHERE`}},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		// An earlier process made the tables and saved a turn.
		db, _ := openDB(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "u", Agent: "a"}))
		require.NoError(t, db.Close())

		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				for round := range 2 { // the count is the same in every new process
					db, rec := openDB(t, url)
					b, err := NewDataFlowBackend(db)
					require.NoError(t, err)
					require.NoError(t, o.run(b))
					kinds := byKind(rec.take())
					assert.Len(t, kinds[kindHistory], 2, "round %d: catalog and history statements: %q", round, kinds[kindHistory])
					assert.Empty(t, kinds[kindCatalog], "round %d: catalog statements besides the survey", round)
					assert.Empty(t, kinds[kindDDL], "round %d: DDL statements", round)
					assert.Empty(t, kinds[kindTx], "round %d: transaction statements (the migration lock)", round)
					if assert.Len(t, kinds[kindData], len(o.wantData), "round %d: the operation's statements: %q", round, kinds[kindData]) {
						for i, re := range o.wantData {
							assert.Regexp(t, regexp.MustCompile(`(?s)`+re), oneLine(kinds[kindData][i]), "round %d: statement %d", round, i)
						}
					}
					// Warm: nothing but the operation.
					require.NoError(t, o.run(b))
					kinds = byKind(rec.take())
					assert.Empty(t, kinds[kindHistory], "round %d, warm", round)
					assert.Len(t, kinds[kindData], len(o.wantData), "round %d, warm", round)
					require.NoError(t, db.Close())
				}
			})
		}
	})
}
